"""JSON responses, as every door and the middleware write them."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload, option=_JSON_OPTIONS), status=status, mimetype="application/json")


def error_response(message: str, status: int) -> Response:
    return json_response({"error": message}, status)
