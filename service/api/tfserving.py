"""TensorFlow Serving's REST API (/v1), so its existing clients work unchanged."""

from __future__ import annotations

from flask import Blueprint, Response

from service.api.http import inference_core, json_response, read_json
from service.codecs import tfserving
from service.codecs.images import prepare_image
from service.codecs.signature_def import model_metadata
from service.errors import InvalidInput

blueprint = Blueprint("tfserving", __name__, url_prefix="/v1/models")

_VERBS = "<any(predict,classify,regress):verb>"
# Variables are one segment without ':' (service/api/http.py, SegmentConverter), so that
# `/v1/models/iris:predict` is only ever the predict route, never the status of "iris:predict".
_SELECTORS = ("/<name>", "/<name>/versions/<version>", "/<name>/labels/<label>")


def status(name: str, version: str | None = None, label: str | None = None) -> Response:
    core = inference_core()
    states = core.manager.version_states(name)
    if version is not None or label is not None:
        wanted = core.servable(name, version, label).version
        states = [s for s in states if s.version == wanted]
    return json_response({"model_version_status": [
        {
            "version": str(s.version),
            "state": s.state,
            "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error or ""},
        }
        for s in states
    ]})


def metadata(name: str, version: str | None = None, label: str | None = None) -> Response:
    return json_response(model_metadata(inference_core().servable(name, version, label)))


def call(name: str, verb: str, version: str | None = None, label: str | None = None) -> Response:
    core = inference_core()
    servable = core.servable(name, version, label)
    body = read_json()
    if verb == "predict":
        signature = servable.signature(tfserving.signature_name(body))
        max_pixels = core.config.max_image_pixels
        inputs, fmt = tfserving.parse_predict(
            body, signature, servable.card,
            lambda data, where: prepare_image(data, servable.card.image_pipeline, max_pixels, where).array,
        )
        outputs = core.infer(servable, inputs, signature.name)
        return json_response(tfserving.encode_predict(outputs, fmt))
    task = "classification" if verb == "classify" else "regression"
    if servable.card.task != task:
        raise InvalidInput(f"model {name!r} is not a {task} model; use :predict")
    features = tfserving.parse_examples(body, servable.card)
    outputs = core.infer(servable, {servable.card.input_name: features}, tfserving.signature_name(body))
    values = outputs[servable.card.output_name]
    if verb == "classify":
        return json_response(tfserving.encode_classify(values, servable.card.class_names))
    return json_response(tfserving.encode_regress(values))


for _selector in _SELECTORS:
    blueprint.add_url_rule(_selector, view_func=status, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}/metadata", view_func=metadata, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}:{_VERBS}", view_func=call, methods=["POST"])
