"""What every door shares: the core of this app, JSON in and out, and JSON errors."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from service.core.inference import InferenceCore
from service.errors import InvalidInput, ServingError, UnsupportedMediaType

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# curl -d sends form-urlencoded by default, and TensorFlow Serving's own examples rely on it.
_JSON_LIKE = {"", "application/json", "application/x-www-form-urlencoded", "text/plain"}


def inference_core() -> InferenceCore:
    return current_app.extensions["inference_core"]


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload, option=_JSON_OPTIONS), status=status, mimetype="application/json")


def error_response(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


def read_json() -> Any:
    """The request body parsed as JSON; the wire's NaN/Infinity tokens are refused."""
    if request.mimetype not in _JSON_LIKE:
        raise UnsupportedMediaType(f"content type {request.mimetype!r} is not supported here; send application/json")
    body = request.get_data(cache=False)
    if not body:
        raise InvalidInput("request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = "; NaN and Infinity are not accepted" if b"NaN" in body or b"Infinity" in body else ""
        raise InvalidInput(f"malformed JSON: {exc}{hint}") from None


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError) -> Response:
        return error_response(exc.message, exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = error_response(exc.description or exc.name, exc.code or 500)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # The detail goes to the log; the client never sees a stack trace or a path.
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("internal server error", 500)
