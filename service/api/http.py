"""What every HTTP door shares: the data plane, the request body read and checked, JSON errors."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, Response, current_app, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from service.core.dataplane import DataPlane
from service.errors import InvalidInput, PayloadTooLarge, ServingError, UnsupportedMediaType
from service.responses import error_response

# curl -d sends form-urlencoded by default, and TensorFlow Serving's own examples rely on it.
_JSON_LIKE = {"", "application/json", "application/x-www-form-urlencoded", "text/plain"}


class SegmentConverter(BaseConverter):
    """The app's default converter for `<variable>`s in routes: one path segment without ':'.

    No model name, version, label or file name holds a ':'. With Werkzeug's own default,
    `/v1/models/iris:predict` also matched the GET route `/v1/models/<name>` (a model named
    "iris:predict"): a GET answered 404 instead of 405, and OPTIONS listed GET among its methods.
    """

    regex = "[^/:]+"
    # Werkzeug guesses from the '/' in the regex that a value may span segments, and would
    # then try every rule under /v1/models/ as one regex over the rest of the path, in turn.
    part_isolating = True


def data_plane() -> DataPlane:
    return current_app.extensions["data_plane"]


def read_body() -> bytes:
    """The whole request body, checked against its framing and refused (413) over MAX_BODY_BYTES.

    A Content-Length over the limit is refused before any byte is read, and a body within it is
    read straight from the server's stream (Werkzeug's wrappers around it cost 17 us a request).
    The rest is checked here, because the server (gunicorn sets `wsgi.input_terminated`) hands
    over a stream it trusts to end in the right place:
    - a chunked body has no Content-Length, so Werkzeug stops reading at the limit and returns
      what it read as if it were all: an oversize upload would be judged as truncated JSON or a
      corrupt image (400); one more byte from the server's stream tells the two apart;
    - a body that ends (the client closed its side) before its Content-Length comes back short,
      without an error, and a short body that happens to parse would be served;
    - malformed chunked framing raises the server's own exception type, which would be a 500.
    """
    req = request._get_current_object()  # one context lookup, not one per attribute
    announced = req.content_length   # parsed from the header on every access: once here
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    stream = req.environ["wsgi.input"]
    try:
        if announced is not None:
            if limit is not None and announced > limit:
                raise RequestEntityTooLarge()
            body = stream.read(announced)
        else:
            body = req.get_data(cache=False)
            if limit is not None and len(body) >= limit and stream.read(1):
                raise PayloadTooLarge(f"request body is over the limit of {limit:,} bytes")
    except (HTTPException, ServingError):
        raise
    except Exception as exc:  # gunicorn's InvalidChunkSize, ChunkMissingTerminator, ...
        raise InvalidInput(f"the request body could not be read ({type(exc).__name__}): "
                           "malformed chunked encoding?") from None
    if announced is not None and len(body) < announced:
        raise InvalidInput(f"the request body ended after {len(body):,} of the {announced:,} bytes "
                           "its Content-Length announced")
    return body


def read_json() -> Any:
    """The request body parsed as JSON; the wire's NaN/Infinity tokens are refused."""
    req = request._get_current_object()
    # The header as clients send it is taken as is; anything else is parsed (parameters, case).
    if req.environ.get("CONTENT_TYPE", "") not in _JSON_LIKE and req.mimetype not in _JSON_LIKE:
        raise UnsupportedMediaType(f"content type {req.mimetype!r} is not supported here; send application/json")
    body = read_body()
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
        response = error_response(_describe(exc), exc.code or 500)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # The detail goes to the log; the client never sees a stack trace or a path.
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("internal server error", 500)


def _describe(exc: HTTPException) -> str:
    """Werkzeug's generic texts, said in this API's terms where a client can act on them."""
    if isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        size = request.content_length
        if size is not None and limit is not None:
            return f"request body of {size:,} bytes is over the limit of {limit:,} bytes"
    if isinstance(exc, ClientDisconnected):
        return "the request body ended before it was complete"
    return exc.description or exc.name
