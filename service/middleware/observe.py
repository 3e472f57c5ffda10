"""The Flask side of operations: request id, metrics, access log, `/metrics`, readiness while draining.

Three hooks per request and nothing in the protocol doors: `before_request` opens the request
context, the data plane notes the resolved version and times the model call (service/ops/context.py),
and `after_request` turns that into metrics and one access line. The phase split follows from
those timestamps: decode is request start to model call, encode is model call end to response.
"""

from __future__ import annotations

import logging
import uuid
from time import perf_counter

from flask import Flask, Response, request

from service.ops import context, lifecycle, logs, metrics
from service.responses import error_response

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID = 128


def install(app: Flask) -> None:
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])
    if metrics.MULTIPROCESS:
        # Under gunicorn: keep this worker's gauges fresh between scrapes.
        batcher = getattr(app.extensions.get("data_plane"), "batcher", None)
        metrics.start_sampler(batcher.queue_depths if batcher is not None else None)


def request_id(incoming: str | None) -> str:
    """The client's X-Request-ID when it is safe to log and echo (printable ASCII, at most
    128 characters), else a new uuid4: a bad id must not break a log line or a header."""
    if incoming and len(incoming) <= MAX_REQUEST_ID and incoming.isascii() and incoming.isprintable():
        return incoming
    return uuid.uuid4().hex


def _before() -> Response | None:
    ctx = context.RequestContext(request_id(request.headers.get(REQUEST_ID_HEADER)), perf_counter())
    context.begin(ctx)
    if lifecycle.draining() and request.endpoint in lifecycle.READINESS_ENDPOINTS:
        return error_response("not ready: the server is shutting down", 503)
    return None


def _after(response: Response) -> Response:
    ctx = context.current()
    ended = perf_counter()
    rule = request.url_rule
    route = rule.rule if rule is not None else "unmatched"
    status = response.status_code
    metrics.observe_request(route, status, ctx, ended)
    if ctx is None:  # before_request did not run (an exception before it); nothing more to say
        return response
    response.headers[REQUEST_ID_HEADER] = ctx.request_id
    if logs.ACCESS.isEnabledFor(logging.INFO):  # checked first: no fields built when access logs are off
        logs.access({
            "request_id": ctx.request_id,
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": status,
            "duration_ms": round((ended - ctx.started) * 1000, 3),
            "model": ctx.model,
            "version": ctx.version,
            "bytes_in": request.content_length or 0,
            "bytes_out": response.content_length or 0,
            "remote_addr": request.remote_addr,
        })
    return response


def _teardown(_exc: BaseException | None) -> None:
    context.end()


def _metrics() -> Response:
    body, content_type = metrics.exposition(request.headers.get("Accept"))
    return Response(body, content_type=content_type)
