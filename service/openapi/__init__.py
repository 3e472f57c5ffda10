"""The OpenAPI 3.1 document of the running app, built from its url_map and the models it serves.

Generated on request rather than written by hand, so it cannot drift from the routes or the
models: every rule becomes an operation (rules with `any(...)` one per alternative), and each
served model adds concrete inference paths whose schemas carry its real tensor names, shapes,
dtypes, value ranges and classes, with its card's golden instance as the example.
"""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import quote

from flask import Flask
from werkzeug.routing import Rule

from service.core.dataplane import DataPlane
from service.errors import ServingError
from service.openapi import models, operations
from service.openapi.models import Examples, Limits
from service.openapi.operations import Context
from service.openapi.schemas import COMPONENTS
from service.repository.servable import Servable
from service.version import NAME, version

__all__ = ["build_spec"]

_IGNORED_METHODS = {"HEAD", "OPTIONS"}
_VARIABLE = re.compile(r"<(?:(?P<converter>[a-zA-Z_]\w*)(?:\((?P<args>[^)]*)\))?:)?(?P<name>[a-zA-Z_]\w*)>")
_CONVERTERS = {"int": {"type": "integer"}, "float": {"type": "number"}, "uuid": {"type": "string", "format": "uuid"}}
# The app's default converter: one segment without ':' (service/api/http.py, SegmentConverter).
_DEFAULT_PARAMETER = {"type": "string", "minLength": 1, "pattern": "^[^/:]+$"}
_PARAMETER_TEXT = {
    "name": "model name",
    "version": "model version number (default: the highest loaded)",
    "label": "version label from the model config (e.g. stable, canary)",
    "filename": "file name",
}


def build_spec(app: Flask) -> dict[str, Any]:
    core: DataPlane = app.extensions["data_plane"]
    config = app.extensions["config"]
    limits = Limits(config.max_instances, config.max_files)
    served = _served(core)
    golden = {s.name: models.examples(s) for s in served}
    example = _example_model(served, golden)
    ctx = Context(limits, example, golden.get(example.name) if example else None)
    values = _parameter_examples(core, example)

    paths: dict[str, dict[str, Any]] = {}
    endpoints = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        endpoints.add(rule.endpoint)
        for path, variant, names in _expand(rule):
            for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
                operation = _describe(app, rule.endpoint, ctx, variant)
                parameters = [_path_parameter(rule, name, values.get((rule.endpoint, name), values.get(name)))
                              for name in names]
                _finish(operation, method, path, parameters)
                paths.setdefault(path, {})[method.lower()] = operation
    tags = list(operations.TAGS)
    for servable in served:
        tag = f"Model: {servable.name}"
        tags.append({"name": tag, "description": servable.card.raw.get("description", "")})
        for path, method, operation in _model_operations(servable, golden[servable.name], limits, tag, endpoints):
            _finish(operation, method, path, [])
            paths.setdefault(path, {})[method.lower()] = operation
    spec = {
        "openapi": "3.1.0",
        "info": {
            "title": NAME,
            "version": version(),
            "description": "Keras/TensorFlow SavedModels over HTTP: the Open Inference Protocol (/v2), "
                           "TensorFlow Serving's REST API (/v1) and a friendly JSON and image API (/api). "
                           f"Serving now: {', '.join(f'{s.name} v{s.version}' for s in served) or 'no models'}.",
        },
        "tags": tags,
        "paths": paths,
        "components": {"schemas": COMPONENTS},
    }
    security = app.extensions.get("security")   # service/middleware/security.py: bearer keys and their 401s
    return security.document(spec) if security is not None else spec


def _expand(rule: Rule) -> list[tuple[str, dict[str, str], list[str]]]:
    """(path, fixed any() values, path parameter names) for each alternative of the rule."""
    parts: list[list[tuple[str, dict[str, str]]]] = []
    names: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(rule.rule):
        literal = rule.rule[position:match.start()]
        position = match.end()
        name = match["name"]
        if match["converter"] == "any":
            choices = [c.strip().strip("'\"") for c in (match["args"] or "").split(",") if c.strip()]
            parts.append([(literal + choice, {name: choice}) for choice in choices])
        else:
            parts.append([(literal + "{" + name + "}", {})])
            names.append(name)
    parts.append([(rule.rule[position:], {})])
    expanded = []
    for combination in itertools.product(*parts):
        variant: dict[str, str] = {}
        for _, fixed in combination:
            variant.update(fixed)
        expanded.append(("".join(text for text, _ in combination), variant, names))
    return expanded


def _path_parameter(rule: Rule, name: str, example: str | None) -> dict[str, Any]:
    converter = next((m["converter"] for m in _VARIABLE.finditer(rule.rule) if m["name"] == name), None)
    parameter: dict[str, Any] = {
        "name": name, "in": "path", "required": True,
        "schema": dict(_CONVERTERS.get(converter or "", _DEFAULT_PARAMETER)),
    }
    if name in _PARAMETER_TEXT:
        parameter["description"] = _PARAMETER_TEXT[name]
    if example is not None:
        parameter["example"] = example
    return parameter


def _describe(app: Flask, endpoint: str, ctx: Context, variant: dict[str, str]) -> dict[str, Any]:
    known = operations.OPERATIONS.get(endpoint)
    if known is not None:
        return known(ctx, variant)
    if endpoint.endswith(".static"):
        return operations.OPERATIONS["web.static"](ctx, variant)
    doc = (app.view_functions[endpoint].__doc__ or "").strip()
    summary = doc.splitlines()[0] if doc else endpoint
    return operations.generic(summary, doc or f"the {endpoint} endpoint")


def _finish(operation: dict[str, Any], method: str, path: str, parameters: list[dict[str, Any]]) -> None:
    operation["operationId"] = re.sub(r"[^A-Za-z0-9]+", "_", f"{method.lower()}{path}").strip("_")
    operation["parameters"] = parameters + operation.get("parameters", [])
    if not operation["parameters"]:
        del operation["parameters"]
    if any(p["in"] == "path" and "example" not in p for p in operation.get("parameters", [])):
        # An example body is only worth showing with a path it can be sent to.
        for media in operation.get("requestBody", {}).get("content", {}).values():
            media.pop("examples", None)


def _served(core: DataPlane) -> list[Servable]:
    served = []
    for name in core.manager.model_names():
        try:
            served.append(core.manager.servable(name))
        except ServingError:
            continue  # loading or failed: nothing to describe until a version is served
    return served


def _example_model(served: list[Servable], golden: dict[str, Examples | None]) -> Servable | None:
    """A model with a golden set, one of named features first: its examples read best on every door."""
    ranked = sorted(served, key=lambda s: (golden[s.name] is None, s.card.input_kind != "features", s.name))
    return ranked[0] if ranked else None


def _parameter_examples(core: DataPlane, example: Servable | None) -> dict[Any, str]:
    values: dict[Any, str] = {("docs.static", "filename"): "docs.js"}
    if example is None:
        return values
    values.update({"name": example.name, "version": str(example.version)})
    labels = [label for label, v in sorted(core.manager.labels(example.name).items()) if v == example.version]
    if labels:
        values["label"] = labels[0]
    plots = sorted(example.card.raw.get("plots", {}).values())
    if plots:
        values[("friendly.plot", "filename")] = plots[0]
    return values


def _model_operations(servable: Servable, golden: Examples | None, limits: Limits, tag: str,
                      endpoints: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """The concrete inference paths of one model, for the doors the app has."""
    name = quote(servable.name, safe="")
    card = servable.card

    def example(field: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        pair = getattr(golden, field, None) if golden is not None else None
        return (None, None) if pair is None else ({servable.name: pair[0]}, {servable.name: pair[1]})

    found: list[tuple[str, str, dict[str, Any]]] = []
    if "tfserving.call" in endpoints:
        verbs = [("predict", models.tfserving_predict_request(servable, limits),
                  models.tfserving_predict_response(servable), "tfserving_predict")]
        if card.feature_names and card.task == "classification" and card.class_names:
            verbs.append(("classify", models.tfserving_examples_request(servable, limits),
                          models.tfserving_classify_response(servable), "classify"))
        if card.feature_names and card.task == "regression":
            verbs.append(("regress", models.tfserving_examples_request(servable, limits),
                          models.tfserving_regress_response(), "regress"))
        for verb, request, response, field in verbs:
            found.append((f"/v1/models/{name}:{verb}", "POST",
                          operations.tfserving_operation(verb, request, response, *example(field), [tag])))
    if "friendly.predict" in endpoints:
        found.append((f"/api/models/{name}/predict", "POST", operations.friendly_predict_operation(
            models.friendly_json_request(servable, limits), models.friendly_response(servable),
            *example("friendly"), [tag], images=card.input_kind == "image", max_files=limits.max_files)))
    if "v2.infer" in endpoints:
        requests, responses = example("v2")
        if requests is not None and golden is not None and golden.v2_image is not None:
            requests[f"{servable.name}-png"] = golden.v2_image
        found.append((f"/v2/models/{name}/infer", "POST", operations.v2_infer_operation(
            models.v2_request(servable, limits), models.v2_response(servable), requests, responses, [tag])))
    return found
