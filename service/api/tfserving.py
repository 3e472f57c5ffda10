"""TensorFlow Serving's REST API (/v1), so its existing clients work unchanged."""

from __future__ import annotations

from flask import Blueprint, Response

from service.api.http import data_plane, read_json
from service.codecs import tfserving
from service.codecs.signature_def import model_metadata
from service.responses import json_response

blueprint = Blueprint("tfserving", __name__, url_prefix="/v1/models")

_VERBS = "<any(predict,classify,regress):verb>"
# Variables are one segment without ':' (service/api/http.py, SegmentConverter), so that
# `/v1/models/iris:predict` is only ever the predict route, never the status of "iris:predict".
_SELECTORS = ("/<name>", "/<name>/versions/<version>", "/<name>/labels/<label>")


def status(name: str, version: str | None = None, label: str | None = None) -> Response:
    return json_response({"model_version_status": [
        {
            "version": str(s.version),
            "state": s.state,
            "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error or ""},
        }
        for s in data_plane().version_states(name, version, label)
    ]})


def metadata(name: str, version: str | None = None, label: str | None = None) -> Response:
    return json_response(model_metadata(data_plane().servable(name, version, label)))


def call(name: str, verb: str, version: str | None = None, label: str | None = None) -> Response:
    plane = data_plane()
    if verb == "predict":
        predict = tfserving.PredictRequest(read_json, plane.config.max_image_pixels)
        return json_response(predict.encode(plane.infer(name, predict, version, label).outputs))
    examples = tfserving.ExamplesRequest(read_json, verb)
    answer = plane.infer(name, examples, version, label)
    return json_response(examples.encode(answer.outputs, answer.servable.card))


for _selector in _SELECTORS:
    blueprint.add_url_rule(_selector, view_func=status, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}/metadata", view_func=metadata, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}:{_VERBS}", view_func=call, methods=["POST"])
