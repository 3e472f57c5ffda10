"""The web page at `/`: try the models from a browser, through the friendly API (/api).

Thin on purpose: one HTML page, one stylesheet and one script, all served from the package
(service/templates/web, service/static/web); every prediction is a call to /api from the browser.
No external assets, and a strict Content-Security-Policy (service/middleware/page_headers.py).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, render_template

from service.middleware.page_headers import add_page_headers

_PACKAGE = Path(__file__).resolve().parent.parent

blueprint = Blueprint(
    "web",
    __name__,
    static_folder=str(_PACKAGE / "static" / "web"),
    static_url_path="/web",
    template_folder=str(_PACKAGE / "templates"),
)

@blueprint.get("/")
def index() -> Response:
    response = Response(render_template("web/index.html"), mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


# On the page and on its assets (the blueprint's static route is part of the blueprint).
blueprint.after_request(add_page_headers)
