"""Liveness and readiness, at the Open Inference Protocol's paths."""

from __future__ import annotations

from flask import Blueprint, Response

from service.api.http import data_plane
from service.responses import error_response, json_response

blueprint = Blueprint("health", __name__, url_prefix="/v2/health")


@blueprint.get("/live")
def live() -> Response:
    return json_response({"live": True})


@blueprint.get("/ready")
def ready() -> Response:
    if data_plane().manager.ready():
        return json_response({"ready": True})
    return error_response("not ready: a model has no loaded, self-tested version", 503)
