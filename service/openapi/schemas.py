"""The shared JSON Schemas (OpenAPI 3.1, JSON Schema 2020-12) of every door's bodies.

They describe what the codecs really write: output numbers may be null, because JSON has no
NaN and the server writes a model's NaN or infinity as null.
"""

from __future__ import annotations

from typing import Any

from service.codecs.v2 import DATATYPES
from service.repository.manager import STATES

Schema = dict[str, Any]

NUMBER_OR_NULL: Schema = {"type": ["number", "null"]}
B64: Schema = {"type": "object", "required": ["b64"], "additionalProperties": False,
               "properties": {"b64": {"type": "string", "contentEncoding": "base64"}},
               "description": "binary data, base64-encoded"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: list[str] | None = None, *,
        additional: bool | Schema = False, description: str | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": additional}
    if required:
        schema["required"] = required
    if description:
        schema["description"] = description
    return schema


def array(items: Schema, min_items: int | None = None, max_items: int | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if min_items is not None:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


_STRING = {"type": "string"}
_TENSOR_INFO = obj({
    "dtype": _STRING,
    "tensor_shape": obj({
        "dim": array(obj({"size": _STRING, "name": _STRING}, ["size", "name"])),
        "unknown_rank": {"type": "boolean"},
    }, ["dim", "unknown_rank"]),
    "name": _STRING,
}, ["dtype", "tensor_shape", "name"])
_V2_PARAMETER_VALUE: Schema = {"type": ["string", "number", "boolean"]}

COMPONENTS: dict[str, Schema] = {
    "Error": obj({"error": {"type": "string", "description": "what is wrong, and where"}}, ["error"]),
    # Health and readiness.
    "Live": obj({"live": {"const": True}}, ["live"]),
    "Ready": obj({"ready": {"const": True}}, ["ready"]),
    # TensorFlow Serving (/v1).
    "TFServingStatus": obj({"model_version_status": array(obj({
        "version": {"type": "string", "pattern": "^[0-9]+$"},
        "state": {"enum": list(STATES)},
        "status": obj({"error_code": _STRING, "error_message": _STRING}, ["error_code", "error_message"]),
    }, ["version", "state", "status"]))}, ["model_version_status"]),
    "TFServingMetadata": obj({
        "model_spec": obj({"name": _STRING, "signature_name": _STRING, "version": _STRING},
                          ["name", "signature_name", "version"]),
        "metadata": obj({"signature_def": obj({"signature_def": {
            "type": "object",
            "additionalProperties": obj({
                "inputs": {"type": "object", "additionalProperties": _TENSOR_INFO},
                "outputs": {"type": "object", "additionalProperties": _TENSOR_INFO},
                "method_name": _STRING,
                "defaults": {"type": "object"},
            }, ["inputs", "outputs", "method_name", "defaults"]),
        }}, ["signature_def"])}, ["signature_def"]),
    }, ["model_spec", "metadata"]),
    "TFServingPredictRequest": {
        **obj({
            "signature_name": {"type": "string", "description": "default: serving_default"},
            "instances": {"type": "array", "minItems": 1, "description": "row format: one entry per instance"},
            "inputs": {"description": "columnar format: one batch per input (an object by input name)"},
        }),
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    },
    "TFServingPredictResponse": {"anyOf": [
        obj({"predictions": {"type": "array"}}, ["predictions"]),
        obj({"outputs": {}}, ["outputs"]),
    ]},
    "TFServingExamplesRequest": obj({
        "signature_name": _STRING,
        "context": {"type": "object", "description": "features shared by every example"},
        "examples": array({"type": "object"}, 1),
    }, ["examples"]),
    "TFServingClassifyResponse": obj({"result": array(array({
        **array({"type": ["string", "number", "null"]}, 2, 2), "description": "[label, score]"}))}, ["result"]),
    "TFServingRegressResponse": obj({"result": array(NUMBER_OR_NULL)}, ["result"]),
    # The friendly API (/api).
    "ModelList": obj({"models": array(ref("ModelSummary"))}, ["models"]),
    "ModelSummary": obj({
        "name": _STRING,
        "versions": array(obj({"version": {"type": "integer"}, "state": {"enum": list(STATES)},
                               "error": {"type": ["string", "null"]}}, ["version", "state", "error"])),
        "labels": {"type": "object", "additionalProperties": {"type": "integer"}},
        "default_version": {"type": ["integer", "null"]},
        "task": {"enum": ["classification", "regression", "tensor"]},
        "description": _STRING,
        "input": {"enum": ["features", "image", "tensor"]},
        "classes": array(_STRING),
        "test_accuracy": NUMBER_OR_NULL,
        "card": {"type": "string", "description": "path of the model card"},
    }, ["name", "versions", "labels", "default_version"]),
    "ModelCard": obj({
        "served_version": {"type": "integer"},
        "plots": {"type": "object", "additionalProperties": {"type": "string"}},
        "example_request": {"type": "object"},
    }, ["served_version", "plots", "example_request"], additional=True,
        description="the card as published with the model (model_card.json), plus what this server adds"),
    "FriendlyPredictRequest": obj({"instances": array({"type": ["object", "array", "number"]}, 1)}, ["instances"]),
    "FriendlyPredictResponse": obj({
        "model": _STRING,
        "version": {"type": "integer"},
        "predictions": array(ref("FriendlyPrediction")),
    }, ["model", "version", "predictions"]),
    "FriendlyPrediction": obj({
        "label": _STRING,
        "label_es": _STRING,
        "class_id": {"type": "integer", "minimum": 0},
        "probability": NUMBER_OR_NULL,
        "probabilities": {"type": "object", "additionalProperties": NUMBER_OR_NULL},
        "value": NUMBER_OR_NULL,
        "outputs": {"type": "object"},
        "file": _STRING,
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "preview": {"type": "string", "description": "what the model saw, as a PNG data URL"},
    }, description="classification: label..probabilities; regression: value; other models: outputs; "
                   "uploads add file, width, height (and preview when asked for)"),
    # Open Inference Protocol (/v2).
    "V2ServerMetadata": obj({"name": _STRING, "version": _STRING, "extensions": array(_STRING)},
                            ["name", "version", "extensions"]),
    "V2TensorMetadata": obj({
        "name": _STRING,
        "datatype": {"enum": [*DATATYPES, "BF16"]},
        "shape": {**array({"type": "integer", "minimum": -1}), "description": "-1: any size"},
    }, ["name", "datatype", "shape"]),
    "V2ModelMetadata": obj({
        "name": _STRING,
        "versions": array(_STRING),
        "platform": {"const": "tensorflow_savedmodel"},
        "inputs": array(ref("V2TensorMetadata")),
        "outputs": array(ref("V2TensorMetadata")),
    }, ["name", "versions", "platform", "inputs", "outputs"]),
    "V2ModelReady": obj({"name": _STRING, "ready": {"const": True}}, ["name", "ready"]),
    "V2Parameters": {"type": "object", "additionalProperties": _V2_PARAMETER_VALUE},
    "V2TensorData": {
        "type": "array",
        "description": "row-major; flat, or nested exactly as the shape",
        "items": {"anyOf": [{"$ref": "#/components/schemas/V2TensorData"},
                            {"type": ["number", "string", "boolean"]}, B64]},
    },
    "V2RequestInput": {
        **obj({
            "name": {"type": "string", "minLength": 1},
            "shape": array({"type": "integer", "minimum": 0}),
            "datatype": {"enum": list(DATATYPES)},
            "parameters": ref("V2Parameters"),
            "data": ref("V2TensorData"),
        }, ["name", "shape", "datatype"]),
        "anyOf": [{"required": ["data"]},
                  {"required": ["parameters"], "properties": {"parameters": {"required": ["binary_data_size"]}}}],
    },
    "V2RequestOutput": obj({"name": {"type": "string", "minLength": 1}, "parameters": ref("V2Parameters")}, ["name"]),
    "V2InferenceRequest": obj({
        "id": _STRING,
        "parameters": ref("V2Parameters"),
        "inputs": array(ref("V2RequestInput"), 1),
        "outputs": array(ref("V2RequestOutput")),
    }, ["inputs"]),
    "V2ResponseOutput": obj({
        "name": _STRING,
        "shape": array({"type": "integer", "minimum": 0}),
        "datatype": {"enum": [*DATATYPES, "BF16"]},
        "parameters": ref("V2Parameters"),
        "data": array({"type": ["number", "string", "boolean", "null"]}),
    }, ["name", "shape", "datatype"]),
    "V2InferenceResponse": obj({
        "model_name": _STRING,
        "model_version": _STRING,
        "id": _STRING,
        "parameters": ref("V2Parameters"),
        "outputs": array(ref("V2ResponseOutput")),
    }, ["model_name", "model_version", "outputs"]),
}
