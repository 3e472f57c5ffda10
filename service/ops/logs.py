"""JSON logs: one line per request on `service.access`, and the app's own messages as JSON too.

gunicorn's plain access log is off (service/gunicorn_conf.py); the app writes the access line
itself because only it knows the route, model, version and request id. `configure_logging`
runs in each gunicorn worker; the in-process test app leaves logging alone, so pytest's
capture works as usual.

Environment: ACCESS_LOG "-" (default) writes access lines to stdout, a path appends them to
that file, "" turns them off; LOG_LEVEL sets the app's level (access lines are always INFO).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson
from gunicorn import glogging

from service.ops import context

ACCESS = logging.getLogger("service.access")
_ACCESS_FIELDS = "fields"


_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds. strftime is most of a line's cost, and a busy worker logs
    many lines per second, so the formatted second is kept (one tuple: swapped atomically)."""
    global _second  # noqa: PLW0603 - a one-entry cache
    whole = int(created)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, then the access fields or the
    message, the request id when logged during a request, and the traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _timestamp(record.created), "level": record.levelname, "logger": record.name,
                               "pid": record.process}  # which worker: several write to one stream
        fields = getattr(record, _ACCESS_FIELDS, None)
        if fields is not None:
            out.update(fields)
        else:
            out["message"] = record.getMessage()
            ctx = context.current()
            if ctx is not None:
                out["request_id"] = ctx.request_id
            if record.exc_info:
                out["exception"] = self.formatException(record.exc_info)
            elif record.exc_text:
                out["exception"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def access(fields: Mapping[str, Any]) -> None:
    """Write one access line. Builds the record directly: Logger.info would walk the stack to
    find the caller (findCaller), which is most of logging's cost per call."""
    if ACCESS.isEnabledFor(logging.INFO):
        record = ACCESS.makeRecord(ACCESS.name, logging.INFO, __file__, 0, "access", (), None,
                                   extra={_ACCESS_FIELDS: fields})
        ACCESS.handle(record)


def configure_logging(environ: Mapping[str, str] | None = None) -> None:
    """JSON to stdout for every `service.*` logger (app errors included); called once per worker."""
    environ = os.environ if environ is None else environ
    formatter = JsonFormatter()
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(formatter)

    app = logging.getLogger("service")
    app.handlers = [stdout]
    app.setLevel(environ.get("LOG_LEVEL", "info").upper())
    app.propagate = False  # not again through the root logger's plain handlers

    target = environ.get("ACCESS_LOG", "-")
    ACCESS.propagate = False
    ACCESS.disabled = target == ""
    if target in ("", "-"):
        ACCESS.handlers = [stdout]
    else:
        to_file = logging.FileHandler(target)
        to_file.setFormatter(formatter)
        ACCESS.handlers = [to_file]
    ACCESS.setLevel(logging.INFO)  # like gunicorn's access log: independent of LOG_LEVEL


class GunicornJsonLogger(glogging.Logger):
    """gunicorn's own messages (boot, worker exits, timeouts) as JSON too: one log format.

    Its access log stays unused: `accesslog` is None in service/gunicorn_conf.py.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
