"""The friendly JSON format: named features in; labels, probabilities by name, values out."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from service.codecs.arrays import to_array
from service.codecs.checks import require_names
from service.codecs.images import PreparedImage, prepare_image
from service.errors import InvalidInput, UnsupportedMediaType
from service.repository.servable import ModelCard, Servable, Signature

# The door's readers: the JSON body, or the uploaded files as (file name, bytes).
BodyReader = Callable[[], Any]
FilesReader = Callable[[], list[tuple[str, bytes]]]


class FeatureRows:
    """`{"instances": [...]}` for the default signature, read once the version is known."""

    signature_name = None

    def __init__(self, read_body: BodyReader) -> None:
        self._read_body = read_body

    def decode(self, signature: Signature, servable: Servable) -> dict[str, np.ndarray]:
        card = servable.card
        return {card.input_name: parse_instances(self._read_body(), signature, card)}

    def encode(self, servable: Servable, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"model": servable.name, "version": servable.version, "predictions": describe(servable, outputs)}


class ImageUpload:
    """Image files for an image model's default signature; each answer names its file."""

    signature_name = None

    def __init__(self, read_files: FilesReader, max_image_pixels: int, preview: bool) -> None:
        self._read_files = read_files
        self.max_image_pixels = max_image_pixels
        self.preview = preview
        self._prepared: list[tuple[str, PreparedImage]] = []

    def decode(self, signature: Signature, servable: Servable) -> dict[str, np.ndarray]:
        card = servable.card
        if card.input_kind != "image":
            raise UnsupportedMediaType(f"model {servable.name!r} takes {card.input_kind}, not images; "
                                       "send application/json")
        self._prepared = [(filename, prepare_image(data, card.image_pipeline, self.max_image_pixels,
                                                   f"file {filename!r}"))
                          for filename, data in self._read_files()]
        arrays = [image.array for _, image in self._prepared]
        # One upload needs no copy: a view with the batch dimension.
        return {card.input_name: arrays[0][np.newaxis] if len(arrays) == 1 else np.stack(arrays)}

    def encode(self, servable: Servable, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
        predictions = describe(servable, outputs)
        for entry, (filename, image) in zip(predictions, self._prepared, strict=True):
            entry.update({"file": filename, "width": image.width, "height": image.height})
            if self.preview:
                entry["preview"] = "data:image/png;base64," + base64.b64encode(image.preview_png).decode()
        return {"model": servable.name, "version": servable.version, "predictions": predictions}


def parse_instances(body: Any, signature: Signature, card: ModelCard) -> np.ndarray:
    """`{"instances": [...]}`: objects of named features (in any order) or raw arrays."""
    if not isinstance(body, dict) or set(body) != {"instances"}:
        raise InvalidInput('send {"instances": [...]}: a list of objects of named features, or of arrays')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list")
    spec = signature.inputs[card.input_name]
    if card.feature_names and all(isinstance(item, dict) for item in instances):
        rows = [_named_row(item, index, card.feature_names) for index, item in enumerate(instances)]
        return to_array(rows, spec, f"input {card.input_name!r}")
    if any(isinstance(item, dict) for item in instances):
        expected = ", ".join(card.feature_names) if card.feature_names else "arrays"
        raise InvalidInput(f"instances must all be objects with {expected}, or all arrays")
    return to_array(instances, spec, f"input {card.input_name!r}")


def _named_row(item: dict[str, Any], index: int, names: tuple[str, ...]) -> list[Any]:
    require_names(item, names, f"instance {index}")
    return [item[name] for name in names]


def describe(servable: Servable, outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One entry per instance, in the vocabulary of the card."""
    card = servable.card
    values = outputs.get(card.output_name)
    if card.task == "classification" and values is not None:
        return [_classification(row, card) for row in values]
    if card.task == "regression" and values is not None:
        return [{"value": row.reshape(-1)[0]} for row in values]
    batch = len(next(iter(outputs.values())))
    return [{"outputs": {name: array[i] for name, array in outputs.items()}} for i in range(batch)]


def _classification(row: np.ndarray, card: ModelCard) -> dict[str, Any]:
    top = int(row.argmax())
    names = card.class_names or tuple(str(i) for i in range(len(row)))
    entry: dict[str, Any] = {
        "label": names[top],
        "class_id": top,
        # numpy float32 scalars: orjson writes them as the same short numbers as /v1 does.
        "probability": row[top],
        "probabilities": dict(zip(names, row, strict=True)),
    }
    if card.class_names_es:
        entry["label_es"] = card.class_names_es[top]
    return entry
