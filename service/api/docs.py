"""The API's documentation: /openapi.json (generated from the live app) and /docs (a page that renders it).

The page is three files served from the package (service/static/docs), with no CDN and no
inline script or style, so it works offline and under a strict Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, send_from_directory

from service.api.http import data_plane
from service.errors import ServingError
from service.middleware.page_headers import add_page_headers
from service.openapi import build_spec
from service.repository.manager import ModelManager
from service.responses import json_response

_STATIC = Path(__file__).resolve().parent.parent / "static" / "docs"

blueprint = Blueprint("docs", __name__, static_folder=str(_STATIC), static_url_path="/docs")

@blueprint.get("/openapi.json")
def openapi() -> Response:
    response = json_response(_spec(current_app))
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("/docs")
def page() -> Response:
    return add_page_headers(send_from_directory(_STATIC, "index.html", mimetype="text/html", max_age=0))


def _spec(app: Flask) -> dict[str, Any]:
    """Rebuilt only when the routes or the served versions change (the watcher may load new ones)."""
    key = (len(list(app.url_map.iter_rules())), _served_state(data_plane().manager))
    cached = app.extensions.get("openapi")
    if cached is not None and cached[0] == key:
        return cached[1]
    spec = build_spec(app)
    app.extensions["openapi"] = (key, spec)  # one assignment: concurrent requests see old or new, whole
    return spec


def _served_state(manager: ModelManager) -> tuple[Any, ...]:
    state = []
    for name in manager.model_names():
        try:
            state.append((name, manager.servable(name).version, tuple(sorted(manager.labels(name).items()))))
        except ServingError:
            state.append((name, None, ()))
    return tuple(state)
