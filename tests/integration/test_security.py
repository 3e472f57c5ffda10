"""Security: optional API keys on every model route, CORS off unless configured, never debug,
security headers; all installed by service/middleware/security.py."""

from __future__ import annotations

import hmac
import re
from contextlib import contextmanager

import pytest
from flask import Flask

from service.config import Config
from service.middleware import security
from service.middleware.security import Policy

KEY, OTHER_KEY = "test-key-0123456789abcdef", "second-key-0123456789"
BEARER = {"Authorization": f"Bearer {KEY}"}
SETOSA = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
SAMPLE_VALUES = {"name": "iris", "version": "1", "label": "stable", "verb": "predict", "filename": "x.png"}


@contextmanager
def policy(app, **settings):
    """The session app with other security settings for the duration (the policy is read per request)."""
    previous = app.extensions["security"]
    app.extensions["security"] = Policy.from_config(Config(**settings))
    try:
        yield app.extensions["security"]
    finally:
        app.extensions["security"] = previous


# --------------------------------------------------------------------------- settings

def test_everything_is_off_by_default(app, client):
    assert not app.extensions["security"].auth_required
    response = client.post("/v1/models/iris:predict", json=SETOSA, headers={"Origin": "https://elsewhere.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("settings", "complaint"), [
    ({"api_keys": "short"}, "shorter than 16"),
    ({"api_keys": f"{KEY}, tiny"}, "1 key(s) shorter"),
    ({"auth_open_paths": "metrics"}, "must start with '/'"),
    ({"cors_origins": "example.com"}, "https://host"),
])
def test_bad_settings_stop_the_server_from_starting(settings, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        Policy.from_config(Config(**settings))


def test_settings_come_from_the_environment_and_keys_stay_out_of_logs():
    config = Config.from_env({"API_KEYS": f" {KEY} ,{OTHER_KEY},", "AUTH_OPEN_PATHS": "/v2/health",
                              "CORS_ORIGINS": "https://app.example/"})
    parsed = Policy.from_config(config)
    assert len(parsed.key_digests) == 2
    assert parsed.open_paths == ("/v2/health",)
    assert parsed.cors_origins == {"https://app.example"}
    assert KEY not in repr(config) and KEY not in repr(parsed)
    assert Policy.from_config(Config(api_keys=KEY, auth_open_paths="none")).open_paths == ()


# --------------------------------------------------------------------------- API keys

def test_a_prediction_needs_a_valid_key(app, client):
    with policy(app, api_keys=f"{KEY},{OTHER_KEY}"):
        missing = client.post("/v1/models/iris:predict", json=SETOSA)
        assert missing.status_code == 401
        assert missing.get_json() == {"error": "missing API key: send 'Authorization: Bearer <key>'"}
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="model-server"'

        wrong = client.post("/v1/models/iris:predict", json=SETOSA, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.get_json() == {"error": "invalid API key"}
        assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="model-server", error="invalid_token"'

        for header in (f"Basic {KEY}", KEY, "Bearer ", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}"):
            assert client.post("/v1/models/iris:predict", json=SETOSA,
                               headers={"Authorization": header}).status_code == 401, header

        for key in (KEY, OTHER_KEY):
            assert client.post("/v1/models/iris:predict", json=SETOSA,
                               headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.post("/v1/models/iris:predict", json=SETOSA,
                           headers={"Authorization": f"bearer  {KEY} "}).status_code == 200


def _sample_path(rule) -> str:
    path = rule.rule
    for variable in re.findall(r"<(?:[^:>]+:)?([^>]+)>", path):
        path = re.sub(rf"<(?:[^:>]+:)?{variable}>", SAMPLE_VALUES.get(variable, "x"), path)
    return path


def test_every_route_but_the_open_ones_needs_a_key(app, client):
    """Each route of the live app, with its first method: 401 without a key unless its path is open."""
    with policy(app, api_keys=KEY) as current:
        checked = {"open": 0, "closed": 0}
        for rule in app.url_map.iter_rules():
            method = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})[0]
            path = _sample_path(rule)
            status = client.open(path, method=method).status_code
            if current.is_open(path):
                assert status != 401, path
                checked["open"] += 1
            else:
                assert status == 401, (method, path, status)
                checked["closed"] += 1
        assert checked["closed"] >= 20 and checked["open"] >= 5
        # Unknown paths need a key too: without one, nobody can enumerate the routes.
        assert client.get("/v1/models/nope/nothing/here").status_code == 401


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", "/metrics", "/", "/docs", "/openapi.json",
                                  "/web/app.js"])
def test_health_metrics_and_pages_are_open_by_default(app, client, path):
    with policy(app, api_keys=KEY):
        assert client.get(path).status_code in (200, 404), path
        assert client.get(path).status_code != 401


def test_health_and_metrics_can_be_closed_too(app, client):
    with policy(app, api_keys=KEY, auth_open_paths="/v2/health/live"):
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=BEARER).status_code == 200


def test_keys_are_compared_in_constant_time(monkeypatch):
    """Every known key is compared (no early exit), through equal-length digests."""
    current = Policy.from_config(Config(api_keys=f"{KEY},{OTHER_KEY},third-key-0123456789"))
    lengths: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a, b):
        lengths.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented in (KEY, "x", "y" * 1000, OTHER_KEY):
        lengths.clear()
        current.key_is_valid(presented)
        assert lengths == [(32, 32)] * 3, presented


def test_the_openapi_document_says_which_operations_need_a_key(app, client):
    with policy(app, api_keys=KEY):
        app.extensions.pop("openapi", None)   # the cached document was built without keys
        spec = client.get("/openapi.json").get_json()
    app.extensions.pop("openapi", None)
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "one of the keys in the server's API_KEYS"}
    predict = spec["paths"]["/v1/models/iris:predict"]["post"]
    assert predict["security"] == [{"bearer": []}]
    assert "401" in predict["responses"]
    assert "security" not in spec["paths"]["/v2/health/ready"]["get"]


# --------------------------------------------------------------------------- CORS

def test_cors_is_off_by_default(client):
    preflight = client.options("/v1/models/iris:predict", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert set(preflight.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


def test_cors_for_the_configured_origins(app, client):
    with policy(app, cors_origins="https://app.example, https://admin.example", api_keys=KEY):
        preflight = client.options("/v1/models/iris:predict", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        # A preflight carries no credentials, so it needs no key.
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert preflight.headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        assert preflight.headers["Access-Control-Max-Age"] == "600"
        assert "Access-Control-Allow-Credentials" not in preflight.headers
        assert "Origin" in preflight.headers["Vary"]

        answer = client.post("/v1/models/iris:predict", json=SETOSA, headers={**BEARER, "Origin": "https://app.example"})
        assert answer.status_code == 200
        assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]

        for origin in ("https://evil.example", "https://app.example.evil.example", "null"):
            other = client.post("/v1/models/iris:predict", json=SETOSA, headers={**BEARER, "Origin": origin})
            assert "Access-Control-Allow-Origin" not in other.headers, origin
            refused = client.options("/v1/models/iris:predict", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})
            assert "Access-Control-Allow-Origin" not in refused.headers, origin


def test_cors_for_any_origin(app, client):
    with policy(app, cors_origins="*"):
        answer = client.get("/api/models", headers={"Origin": "https://anywhere.example"})
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        assert answer.headers["Access-Control-Expose-Headers"] == "Inference-Header-Content-Length, X-Request-ID"
        assert "Access-Control-Allow-Credentials" not in answer.headers


def test_cors_preflight_allows_the_headers_of_every_api(app, client):
    with policy(app, cors_origins="https://app.example"):
        preflight = client.options("/v2/models/iris/infer", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Inference-Header-Content-Length, X-Request-ID"})
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Headers"] == \
            "Authorization, Content-Type, Inference-Header-Content-Length, X-Request-ID"
        assert preflight.get_data() == b""


def test_cors_answers_vary_on_origin_even_without_cors_headers(app, client):
    """A shared cache must not hand an answer made without CORS headers to an allowed origin."""
    with policy(app, cors_origins="https://app.example"):
        for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "https://app.example"}):
            answer = client.get("/api/models", headers=headers)
            assert answer.headers.getlist("Vary") == ["Origin"], headers
        assert "Access-Control-Allow-Origin" not in client.get("/api/models").headers


# --------------------------------------------------------------------------- debug and headers

def test_the_server_never_runs_in_debug_mode(app, monkeypatch):
    assert app.debug is False
    monkeypatch.setenv("FLASK_DEBUG", "1")
    bare = Flask("debug-check")
    assert bare.debug is True               # what Flask would do with FLASK_DEBUG=1
    security.install(bare, Config())
    assert bare.debug is False


def test_the_web_page_sends_its_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    docs = client.get("/docs")
    assert "unsafe-inline" not in docs.headers["Content-Security-Policy"]


def test_every_answer_says_nosniff(client):
    for response in (client.get("/v2/health/live"), client.get("/v1/models/nope"),
                     client.post("/v1/models/iris:predict", data=b"{")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
