"""The friendly API (/api): model cards, named features, image upload, labels by name."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from flask import Blueprint, Response, request, send_file, url_for

from service.api.http import inference_core, json_response, read_body, read_json
from service.codecs import friendly
from service.codecs.images import prepare_image
from service.codecs.multipart import parse_multipart
from service.errors import InvalidInput, NotFound, PayloadTooLarge, Unavailable, UnsupportedMediaType
from service.repository.servable import Servable

blueprint = Blueprint("friendly", __name__, url_prefix="/api")

_SELECTORS = ("/models/<name>", "/models/<name>/versions/<version>", "/models/<name>/labels/<label>")


@blueprint.get("/models")
def list_models() -> Response:
    core = inference_core()
    return json_response({"models": [_summary(name) for name in core.manager.model_names()]})


def _summary(name: str) -> dict[str, Any]:
    manager = inference_core().manager
    states = manager.version_states(name)
    entry: dict[str, Any] = {
        "name": name,
        "versions": [{"version": s.version, "state": s.state, "error": s.error} for s in states],
        "labels": manager.labels(name),
        "default_version": None,
    }
    try:
        servable = manager.servable(name)
    except (NotFound, Unavailable):
        return entry
    card = servable.card
    metrics = card.raw.get("evaluation", {})
    entry.update({
        "default_version": servable.version,
        "task": card.task,
        "description": card.raw.get("description", ""),
        "input": card.input_kind,
        "classes": list(card.class_names),
        "test_accuracy": metrics.get("accuracy"),
        "card": url_for("friendly.card", name=name, version=str(servable.version)),
    })
    return entry


def card(name: str, version: str | None = None, label: str | None = None) -> Response:
    servable = inference_core().servable(name, version, label)
    plots = {
        key: url_for("friendly.plot", name=name, version=str(servable.version), filename=filename)
        for key, filename in servable.card.raw.get("plots", {}).items()
    }
    return json_response({
        **servable.card.raw,
        "served_version": servable.version,
        "plots": plots,
        "example_request": _example_request(servable),
    })


def _example_request(servable: Servable) -> dict[str, Any]:
    card = servable.card
    path = url_for("friendly.predict", name=servable.name)
    if card.input_kind == "image":
        return {
            "method": "POST", "path": path, "content_type": "multipart/form-data",
            "curl": f"curl -F image=@shirt.jpg http://127.0.0.1:8501{path}",
        }
    golden = (card.golden or {}).get("inputs", {}).get(card.input_name)
    if card.feature_names and golden:
        body: dict[str, Any] = {"instances": [dict(zip(card.feature_names, golden[0], strict=True))]}
    else:
        body = {"instances": golden[:1] if golden else []}
    return {"method": "POST", "path": path, "content_type": "application/json", "body": body}


@blueprint.get("/models/<name>/versions/<version>/plots/<filename>")
def plot(name: str, version: str, filename: str) -> Response:
    servable = inference_core().servable(name, version)
    files = set(servable.card.raw.get("plots", {}).values())
    # Only files the card names, so a crafted filename cannot reach anything else.
    if filename not in files or servable.card.extra_dir is None:
        raise NotFound(f"model {name!r} version {servable.version} has no plot {filename!r}")
    try:
        return send_file(servable.card.extra_dir / filename, mimetype="image/png", max_age=3600)
    except OSError:
        # Read on request, unlike the model: its folder may be away for a while (or the version
        # deleted, and unloaded at the next scan). Not a server fault, and no path in the answer.
        raise Unavailable(f"model {name!r} version {servable.version}: plot {filename!r} "
                          "cannot be read right now; try again shortly") from None


def predict(name: str, version: str | None = None, label: str | None = None) -> Response:
    core = inference_core()
    servable = core.servable(name, version, label)
    card = servable.card
    signature = servable.signature(None)
    files: list[dict[str, Any]] = []
    mimetype = request.mimetype
    if mimetype == "multipart/form-data" or mimetype.startswith("image/"):
        if card.input_kind != "image":
            raise UnsupportedMediaType(f"model {name!r} takes {card.input_kind}, not images; send application/json")
        prepared = [(filename, prepare_image(data, card.image_pipeline, core.config.max_image_pixels,
                                             f"file {filename!r}"))
                    for filename, data in _uploaded_images(mimetype, core.config.max_files)]
        arrays = [p.array for _, p in prepared]
        # One upload needs no copy: a view with the batch dimension.
        inputs = {card.input_name: arrays[0][np.newaxis] if len(arrays) == 1 else np.stack(arrays)}
        want_preview = request.args.get("preview", "").lower() in ("1", "true", "yes")
        for filename, image in prepared:
            entry: dict[str, Any] = {"file": filename, "width": image.width, "height": image.height}
            if want_preview:
                entry["preview"] = "data:image/png;base64," + base64.b64encode(image.preview_png).decode()
            files.append(entry)
    else:
        inputs = {card.input_name: friendly.parse_instances(read_json(), signature, card)}
    outputs = core.infer(servable, inputs, signature.name)
    predictions = friendly.describe(servable, outputs)
    for entry, file_info in zip(predictions, files, strict=False):
        entry.update(file_info)
    return json_response({"model": servable.name, "version": servable.version, "predictions": predictions})


def _uploaded_images(mimetype: str, max_files: int) -> list[tuple[str, bytes]]:
    if mimetype.startswith("image/"):
        data = read_body()
        if not data:
            raise InvalidInput("request body is empty; send the image bytes")
        return [(request.args.get("filename", "upload"), data)]
    # Other form fields are tolerated, but not without bound.
    parts = parse_multipart(read_body(), request.headers.get("Content-Type", ""), max_files + 16)
    uploads = [part for part in parts if part.name == "image"]
    if not uploads:
        fields = sorted({part.name for part in parts})
        raise InvalidInput(f"no file in form field 'image' (got fields: {', '.join(fields) or 'none'})")
    if len(uploads) > max_files:
        raise PayloadTooLarge(f"{len(uploads)} files in one upload; the limit is {max_files}")
    return [(part.filename or f"image{i}", part.data) for i, part in enumerate(uploads)]


for _selector in _SELECTORS:
    blueprint.add_url_rule(_selector, view_func=card, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}/predict", view_func=predict, methods=["POST"])
