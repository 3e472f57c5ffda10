"""What one request learned on its way through: id, model, version, and phase timestamps.

The data plane and the batcher write here; the middleware (service/middleware/observe.py) reads it once,
at the end of the request, for the metrics and the access log. It lives in a ContextVar,
not in flask.g, so the data plane stays free of Flask and a call outside a request (tests,
a background thread) is a cheap no-op instead of a RuntimeError.
"""

from __future__ import annotations

from contextvars import ContextVar
from time import perf_counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.repository.servable import Servable


class RequestContext:
    __slots__ = ("infer_end", "infer_start", "model", "queue_seconds", "request_id", "started", "version")

    def __init__(self, request_id: str, started: float) -> None:
        self.request_id = request_id
        self.started = started                     # perf_counter() when the app saw the request
        self.model: str | None = None              # set once a servable was resolved: bounded label values
        self.version: int | None = None
        self.infer_start: float | None = None      # first model call began (decode ends here)
        self.infer_end: float | None = None        # last model call ended (encode starts here)
        self.queue_seconds = 0.0                   # part of [infer_start, infer_end] spent in a batch queue


_current: ContextVar[RequestContext | None] = ContextVar("request_context", default=None)


def current() -> RequestContext | None:
    return _current.get()


def begin(ctx: RequestContext) -> None:
    _current.set(ctx)


def end() -> None:
    # A connection's greenlet (a thread, in-process) serves its requests one after another: nothing may leak.
    _current.set(None)


def note_servable(servable: Servable) -> None:
    """The request resolved this version: it becomes the request's model and version labels."""
    ctx = _current.get()
    if ctx is not None:
        ctx.model = servable.name
        ctx.version = servable.version


def note_inference(servable: Servable, started: float) -> None:
    """A model call that began at `started` (perf_counter) has just ended."""
    ctx = _current.get()
    if ctx is not None:
        ctx.model = servable.name
        ctx.version = servable.version
        if ctx.infer_start is None:
            ctx.infer_start = started
        ctx.infer_end = perf_counter()


def note_queue(seconds: float) -> None:
    """Time this request waited in a batch queue (inside the model call's span)."""
    ctx = _current.get()
    if ctx is not None:
        ctx.queue_seconds += seconds
