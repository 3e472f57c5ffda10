"""What runs around every route, whichever door: request context, metrics and access log
(observe.py); API keys, CORS and security headers (security.py)."""

from __future__ import annotations

from flask import Flask

from service.config import Config
from service.middleware import observe, security


def install(app: Flask, config: Config) -> None:
    observe.install(app)
    # After observe, so that a 401 is logged and counted.
    security.install(app, config)
