"""The web page at `/`: try the models from a browser, through the friendly API (/api).

Thin on purpose: one HTML page, one stylesheet and one script, all served from the package
(service/templates/web, service/static/web); every prediction is a call to /api from the browser.
No external assets, and a strict Content-Security-Policy: no inline script or style.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, render_template

_PACKAGE = Path(__file__).resolve().parent.parent

blueprint = Blueprint(
    "web",
    __name__,
    static_folder=str(_PACKAGE / "static" / "web"),
    static_url_path="/web",
    template_folder=str(_PACKAGE / "templates"),
)

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",   # blob: plots fetched with the API key
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@blueprint.get("/")
def index() -> Response:
    response = Response(render_template("web/index.html"), mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.after_request
def security_headers(response: Response) -> Response:
    """On the page and on its assets (the blueprint's static route is part of the blueprint)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
