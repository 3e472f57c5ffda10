"""The Open Inference Protocol (KServe V2) REST API (/v2), for Triton's, KServe's and MLServer's clients.

Health (/v2/health/live, /v2/health/ready) lives in service/api/health.py.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, request

from service.api.http import inference_core, json_response, read_body, read_json
from service.codecs import v2
from service.codecs.images import prepare_image
from service.repository.manager import AVAILABLE
from service.version import NAME
from service.version import version as server_version

blueprint = Blueprint("v2", __name__, url_prefix="/v2")

_SELECTORS = ("/models/<name>", "/models/<name>/versions/<version>")


@blueprint.get("")
def server_metadata() -> Response:
    return json_response(v2.server_metadata(NAME, server_version()))


def model_metadata(name: str, version: str | None = None) -> Response:
    core = inference_core()
    servable = core.servable(name, version)
    if version is None:
        versions = [s.version for s in core.manager.version_states(name) if s.state == AVAILABLE]
    else:
        versions = [servable.version]
    return json_response(v2.model_metadata(servable, versions))


def model_ready(name: str, version: str | None = None) -> Response:
    # Not loaded answers 404 and still loading 503 (the core's errors), as KServe's own server does.
    servable = inference_core().servable(name, version)
    return json_response({"name": servable.name, "ready": True})


def infer(name: str, version: str | None = None) -> Response:
    core = inference_core()
    servable = core.servable(name, version)
    wanted = _read_request()
    signature = servable.signature(wanted.signature_name)
    names = v2.requested_outputs(wanted, signature)
    max_pixels = core.config.max_image_pixels
    inputs = v2.decode_inputs(
        wanted, signature, servable.card,
        lambda data, where: prepare_image(data, servable.card.image_pipeline, max_pixels, where).array,
    )
    outputs = core.infer(servable, inputs, signature.name)
    body, binary = v2.encode_response(servable, wanted, outputs, names)
    if not binary:
        return json_response(body)
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    response = Response(header + binary, mimetype="application/octet-stream")
    response.headers[v2.HEADER_LENGTH] = str(len(header))
    return response


def _read_request() -> v2.InferenceRequest:
    header_length = request.headers.get(v2.HEADER_LENGTH)
    if header_length is None:
        return v2.parse_request(read_json())
    header, binary = v2.split_binary(read_body(), header_length)
    return v2.parse_request(header, binary)


for _selector in _SELECTORS:
    blueprint.add_url_rule(_selector, view_func=model_metadata, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}/ready", view_func=model_ready, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}/infer", view_func=infer, methods=["POST"])
