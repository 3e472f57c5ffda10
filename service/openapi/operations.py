"""What each endpoint does, takes and answers, keyed by its Flask endpoint name.

The builder asks here for every rule it finds in the app's url_map; an endpoint not listed
still gets an operation (from its view's docstring), so a new route is never missing from
the document, only less well described until it is added here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.codecs.v2 import HEADER_LENGTH
from service.openapi.models import Examples, Limits
from service.openapi.schemas import Schema, ref
from service.repository.servable import Servable

Operation = dict[str, Any]

TAG_V1 = "TensorFlow Serving (v1)"
TAG_V2 = "Open Inference Protocol (v2)"
TAG_FRIENDLY = "Friendly API"
TAG_HEALTH = "Health"
TAG_DOCS = "Documentation"
TAG_OTHER = "Other"
TAGS = [
    {"name": TAG_V2, "description": "KServe V2 / Triton / MLServer REST protocol, with Triton's binary tensor "
                                    "extension."},
    {"name": TAG_V1, "description": "TensorFlow Serving's REST API: existing TF Serving clients work unchanged."},
    {"name": TAG_FRIENDLY, "description": "Model cards, named features, image uploads, labels by name."},
    {"name": TAG_HEALTH, "description": "Liveness and readiness probes (Open Inference Protocol paths)."},
    {"name": TAG_DOCS, "description": "This document and its browsable page."},
]

_ERRORS = {
    "400": "invalid request: the message says what is wrong and where",
    "404": "no such model, version, label or file",
    "413": "request too large: body, instances, files or image pixels over the limit",
    "415": "unsupported content type or image format",
    "503": "not ready, or the model is still loading",
}
_MODEL_GET = ("404", "503")
_MODEL_POST = ("400", "404", "413", "415", "503")


@dataclass(frozen=True)
class Context:
    limits: Limits
    example: Servable | None           # the model the generic operations' examples use
    example_data: Examples | None


def errors(*codes: str) -> dict[str, Any]:
    return {code: {"description": _ERRORS[code], "content": {"application/json": {"schema": ref("Error")}}}
            for code in codes}


def json_content(schema: Schema, examples: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = {key: {"value": value} for key, value in examples.items()}
    return {"application/json": media}


def ok(schema: Schema, description: str = "OK", examples: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"200": {"description": description, "content": json_content(schema, examples)}}


def _named(ctx: Context, value: Any) -> dict[str, Any] | None:
    return {ctx.example.name: value} if ctx.example is not None and value is not None else None


def _pick(pair: tuple[Any, Any] | None, index: int) -> Any:
    return None if pair is None else pair[index]


# --------------------------------------------------------------------------- health and metadata


def _live(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_HEALTH], "summary": "Server live",
            "description": "200 while the process can answer requests (Kubernetes livenessProbe).",
            "responses": ok(ref("Live"))}


def _ready(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_HEALTH], "summary": "Server ready",
            "description": "200 when every model has a loaded, self-tested version (Kubernetes readinessProbe).",
            "responses": {**ok(ref("Ready")), **errors("503")}}


def _v2_server(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_V2], "summary": "Server metadata",
            "description": "Name, version and the protocol extensions this server supports.",
            "responses": ok(ref("V2ServerMetadata"))}


def _v2_model(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_V2], "summary": "Model metadata",
            "description": "Platform, versions and the default signature's input and output tensors "
                           "(-1: any size, the first dimension being the batch).",
            "responses": {**ok(ref("V2ModelMetadata")), **errors(*_MODEL_GET)}}


def _v2_model_ready(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_V2], "summary": "Model ready",
            "description": "200 when the model (or the version given) is loaded and can infer.",
            "responses": {**ok(ref("V2ModelReady")), **errors(*_MODEL_GET)}}


def v2_infer_operation(request_schema: Schema, response_schema: Schema,
                       request_examples: dict[str, Any] | None, response_examples: dict[str, Any] | None,
                       tags: list[str]) -> Operation:
    # The binary extension is described in words only: its framing (a header naming the JSON length)
    # cannot be put in a schema, and fuzzers sending the header or the bytes alone only find 400s.
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "tags": tags, "summary": "Inference",
        "description": (
            "Input tensors in, output tensors out. `data` is row-major, flat or nested as `shape`; its element "
            "count must match `shape`, and `datatype` the model's. An image model also takes its image input as "
            "BYTES: encoded image files (PNG, JPEG, ...), base64 with `parameters.content_type` = `base64`. "
            "`outputs` selects outputs (in that order); `id` is echoed. Parameter `signature_name` runs another "
            f"SavedModel signature. Triton's binary tensor data: send the JSON header, then the tensor bytes, "
            f"with header `{HEADER_LENGTH}`; outputs with `binary_data` (or request `binary_data_output`) come "
            "back the same way."),
        "requestBody": {"required": True, "content": json_content(request_schema, request_examples)},
        "responses": {
            "200": {"description": "the output tensors",
                    "headers": {HEADER_LENGTH: {"description": "present when binary output follows the JSON header",
                                                "schema": {"type": "integer"}}},
                    "content": {**json_content(response_schema, response_examples),
                                "application/octet-stream": binary}},
            **errors(*_MODEL_POST),
        },
    }


def _v2_infer(ctx: Context, variant: dict[str, str]) -> Operation:
    data = ctx.example_data
    return v2_infer_operation(ref("V2InferenceRequest"), ref("V2InferenceResponse"),
                              _named(ctx, _pick(data and data.v2, 0)), _named(ctx, _pick(data and data.v2, 1)),
                              [TAG_V2])


# --------------------------------------------------------------------------- TensorFlow Serving (/v1)


def _tfs_status(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_V1], "summary": "Model version status",
            "description": "Every version the server knows of, with its state (TF Serving's GetModelStatus).",
            "responses": {**ok(ref("TFServingStatus")), **errors(*_MODEL_GET)}}


def _tfs_metadata(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_V1], "summary": "Model metadata",
            "description": "The SavedModel's SignatureDefs, as TF Serving shows them.",
            "responses": {**ok(ref("TFServingMetadata")), **errors(*_MODEL_GET)}}


def tfserving_operation(verb: str, request_schema: Schema, response_schema: Schema,
                        request_examples: dict[str, Any] | None, response_examples: dict[str, Any] | None,
                        tags: list[str]) -> Operation:
    descriptions = {
        "predict": "Row (`instances`) or columnar (`inputs`) format; `signature_name` picks a signature. "
                   'An image model\'s input also takes {"b64": ...} encoded image files.',
        "classify": "Named features (`examples`, shared ones in `context`) to [label, score] pairs; "
                    "classification models only.",
        "regress": "Named features (`examples`, shared ones in `context`) to one value each; regression models only.",
    }
    return {"tags": tags, "summary": verb.capitalize(), "description": descriptions[verb],
            "requestBody": {"required": True, "content": json_content(request_schema, request_examples)},
            "responses": {**ok(response_schema, examples=response_examples), **errors(*_MODEL_POST)}}


def _tfs_call(ctx: Context, variant: dict[str, str]) -> Operation:
    verb = variant["verb"]
    data = ctx.example_data
    schemas = {
        "predict": (ref("TFServingPredictRequest"), ref("TFServingPredictResponse"), data and data.tfserving_predict),
        "classify": (ref("TFServingExamplesRequest"), ref("TFServingClassifyResponse"), data and data.classify),
        "regress": (ref("TFServingExamplesRequest"), ref("TFServingRegressResponse"), data and data.regress),
    }
    request_schema, response_schema, pair = schemas[verb]
    return tfserving_operation(verb, request_schema, response_schema, _named(ctx, _pick(pair, 0)),
                               _named(ctx, _pick(pair, 1)), [TAG_V1])


# --------------------------------------------------------------------------- the friendly API (/api)


def _list_models(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_FRIENDLY], "summary": "List models",
            "description": "Every model, its versions and states, and a summary of its card.",
            "responses": ok(ref("ModelList"))}


def _card(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_FRIENDLY], "summary": "Model card",
            "description": "The served version's card: task, inputs, classes, training, evaluation, plots, "
                           "and a runnable example request.",
            "responses": {**ok(ref("ModelCard")), **errors(*_MODEL_GET)}}


def _plot(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_FRIENDLY], "summary": "Model card plot",
            "description": "A PNG the card names (training curves, confusion matrix).",
            "responses": {"200": {"description": "the plot",
                                  "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
                          **errors(*_MODEL_GET)}}


def friendly_predict_operation(json_schema: Schema, response_schema: Schema, request_examples: dict[str, Any] | None,
                               response_examples: dict[str, Any] | None, tags: list[str], *, images: bool,
                               max_files: int) -> Operation:
    content = json_content(json_schema, request_examples)
    if images:
        binary = {"type": "string", "format": "binary", "contentMediaType": "image/*"}
        content["multipart/form-data"] = {
            "schema": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "array", "items": binary, "minItems": 1, "maxItems": max_files}}},
            "encoding": {"image": {"contentType": "image/*"}},
        }
        content["image/*"] = {"schema": {"type": "string", "format": "binary"}}
    return {
        "tags": tags, "summary": "Predict",
        "description": "JSON `instances` (objects of named features, or arrays); an image model also takes "
                       "uploads: form field `image` (one or more files) or a raw image body. Answers in the "
                       "card's vocabulary: labels, probabilities by class name, values.",
        "parameters": [
            {"name": "preview", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "1, true or yes: add each upload as the model saw it (a PNG data URL)"},
            {"name": "filename", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "name to report for a raw image body"},
        ],
        "requestBody": {"required": True, "content": content},
        "responses": {**ok(response_schema, examples=response_examples), **errors(*_MODEL_POST)},
    }


def _friendly_predict(ctx: Context, variant: dict[str, str]) -> Operation:
    pair = ctx.example_data and ctx.example_data.friendly
    return friendly_predict_operation(ref("FriendlyPredictRequest"), ref("FriendlyPredictResponse"),
                                      _named(ctx, _pick(pair, 0)), _named(ctx, _pick(pair, 1)), [TAG_FRIENDLY],
                                      images=True, max_files=ctx.limits.max_files)


# --------------------------------------------------------------------------- documentation and pages


def _openapi(ctx: Context, variant: dict[str, str]) -> Operation:
    return {"tags": [TAG_DOCS], "summary": "OpenAPI document",
            "description": "This document (OpenAPI 3.1), generated from the running server's routes and models.",
            "responses": ok({"type": "object", "required": ["openapi", "info", "paths"]})}


def _html(tag: str, summary: str, description: str) -> Callable[[Context, dict[str, str]], Operation]:
    def describe(ctx: Context, variant: dict[str, str]) -> Operation:
        return {"tags": [tag], "summary": summary, "description": description,
                "responses": {"200": {"description": "an HTML page",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}}}
    return describe


def _static(tag: str) -> Callable[[Context, dict[str, str]], Operation]:
    def describe(ctx: Context, variant: dict[str, str]) -> Operation:
        return {"tags": [tag], "summary": "Static file", "description": "A script, stylesheet or image of the page.",
                "responses": {"200": {"description": "the file", "content": {"*/*": {"schema": {}}}},
                              **errors("404")}}
    return describe


def generic(summary: str, description: str) -> Operation:
    return {"tags": [TAG_OTHER], "summary": summary, "description": description,
            "responses": {"200": {"description": "OK", "content": {"*/*": {"schema": {}}}}}}


OPERATIONS: dict[str, Callable[[Context, dict[str, str]], Operation]] = {
    "health.live": _live,
    "health.ready": _ready,
    "v2.server_metadata": _v2_server,
    "v2.model_metadata": _v2_model,
    "v2.model_ready": _v2_model_ready,
    "v2.infer": _v2_infer,
    "tfserving.status": _tfs_status,
    "tfserving.metadata": _tfs_metadata,
    "tfserving.call": _tfs_call,
    "friendly.list_models": _list_models,
    "friendly.card": _card,
    "friendly.plot": _plot,
    "friendly.predict": _friendly_predict,
    "docs.openapi": _openapi,
    "docs.page": _html(TAG_DOCS, "API documentation", "This documentation, browsable, with runnable examples."),
    "docs.static": _static(TAG_DOCS),
    "web.index": _html(TAG_OTHER, "Web page", "Try the models from a browser."),
    "metrics": lambda ctx, variant: {
        "tags": [TAG_HEALTH], "summary": "Prometheus metrics",
        "description": "Requests, latencies, model loads and queues, in Prometheus' text format.",
        "responses": {"200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
    "web.static": _static(TAG_OTHER),
}
