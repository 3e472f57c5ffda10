"""The Open Inference Protocol (KServe V2) REST API (/v2), for Triton's, KServe's and MLServer's clients.

Health (/v2/health/live, /v2/health/ready) lives in service/api/health.py.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, request

from service.api.http import data_plane, read_body, read_json
from service.codecs import v2
from service.responses import json_response
from service.version import NAME
from service.version import version as server_version

blueprint = Blueprint("v2", __name__, url_prefix="/v2")

_SELECTORS = ("/models/<name>", "/models/<name>/versions/<version>")


@blueprint.get("")
def server_metadata() -> Response:
    return json_response(v2.server_metadata(NAME, server_version()))


def model_metadata(name: str, version: str | None = None) -> Response:
    plane = data_plane()
    servable = plane.servable(name, version)
    versions = plane.available_versions(name) if version is None else [servable.version]
    return json_response(v2.model_metadata(servable, versions))


def model_ready(name: str, version: str | None = None) -> Response:
    # Not loaded answers 404 and still loading 503 (the data plane's errors), as KServe's own server does.
    servable = data_plane().servable(name, version)
    return json_response({"name": servable.name, "ready": True})


def infer(name: str, version: str | None = None) -> Response:
    plane = data_plane()
    payload = v2.InferPayload(_read_request, plane.config.max_image_pixels)
    answer = plane.infer(name, payload, version)
    body, binary = payload.encode(answer.servable, answer.outputs)
    if not binary:
        return json_response(body)
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    response = Response(header + binary, mimetype="application/octet-stream")
    response.headers[v2.HEADER_LENGTH] = str(len(header))
    return response


def _read_request() -> tuple[Any, bytes]:
    """The JSON header and the binary part of Triton's binary_tensor_data extension, if any."""
    header_length = request.headers.get(v2.HEADER_LENGTH)
    if header_length is None:
        return read_json(), b""
    return v2.split_binary(read_body(), header_length)


for _selector in _SELECTORS:
    blueprint.add_url_rule(_selector, view_func=model_metadata, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}/ready", view_func=model_ready, methods=["GET"])
    blueprint.add_url_rule(f"{_selector}/infer", view_func=infer, methods=["POST"])
