"""Security for every door at once: API keys, CORS, and no debug mode in production.

Installed by the app factory with one call (`install`); nothing in the protocol doors knows
about it. All of it is off until configured, so a local `make serve` stays as simple as before.

- API keys (`API_KEYS="key1,key2"`): every route needs `Authorization: Bearer <key>` except the
  paths in `AUTH_OPEN_PATHS` (health, metrics, the web page and the API docs by default; a
  probe or a Prometheus scraper has no key). Unknown paths need a key too, so that routes
  cannot be enumerated without one. Keys are compared in constant time, through their SHA-256
  digests, so neither the content nor the length of a key leaks through timing.
- CORS (`CORS_ORIGINS="https://app.example.com"` or `*`): off by default, so browsers keep
  other sites' pages from calling the API; listed origins get the CORS headers and their
  preflight (OPTIONS) requests are answered here. A preflight never carries credentials, so
  OPTIONS needs no key.
- Debug: Flask reads FLASK_DEBUG when an app is created, and in debug mode it shows more of its
  errors; the server is never in debug mode, whatever the environment says.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, request

from service.api.http import error_response
from service.config import Config

log = logging.getLogger(__name__)

REALM = "model-server"
MIN_KEY_LENGTH = 16             # a short key is guessable; refuse to start with one
# What a browser page may send and read across origins: what the API's clients use.
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Inference-Header-Content-Length, X-Request-ID"
CORS_EXPOSE_HEADERS = "Inference-Header-Content-Length, X-Request-ID"
CORS_MAX_AGE = "600"            # seconds a browser may cache a preflight answer


@dataclass(frozen=True)
class Policy:
    """The security settings of one app, parsed and checked once at start-up."""

    key_digests: tuple[bytes, ...] = ()
    open_paths: tuple[str, ...] = ()
    cors_origins: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        keys = _split(config.api_keys)
        short = [key for key in keys if len(key) < MIN_KEY_LENGTH]
        if short:
            raise ValueError(f"API_KEYS: {len(short)} key(s) shorter than {MIN_KEY_LENGTH} characters")
        open_paths = _split(config.auth_open_paths)
        if open_paths == ["none"]:   # the environment cannot say "empty": an empty variable means the default
            open_paths = []
        relative = [path for path in open_paths if not path.startswith("/")]
        if relative:
            raise ValueError(f"AUTH_OPEN_PATHS: paths must start with '/': {', '.join(relative)}")
        origins = _split(config.cors_origins)
        bad = [origin for origin in origins if origin != "*" and "://" not in origin]
        if bad:
            raise ValueError(f"CORS_ORIGINS: origins look like https://host[:port] or '*': {', '.join(bad)}")
        return cls(
            key_digests=tuple(_digest(key) for key in keys),
            open_paths=tuple(path.rstrip("/") or "/" for path in open_paths),
            cors_origins=frozenset(origin.rstrip("/") for origin in origins),
        )

    @property
    def auth_required(self) -> bool:
        return bool(self.key_digests)

    def is_open(self, path: str) -> bool:
        """Whether `path` is served without a key: an open path itself or anything below it."""
        return any(path == open_path or (open_path != "/" and path.startswith(open_path + "/"))
                   for open_path in self.open_paths)

    def key_is_valid(self, presented: str) -> bool:
        digest = _digest(presented)
        # Every key is compared, whatever matched: the time taken says nothing about which.
        matched = False
        for known in self.key_digests:
            matched |= hmac.compare_digest(digest, known)
        return matched

    def allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for `origin`, or None when it is not allowed."""
        if not origin or not self.cors_origins:
            return None
        if "*" in self.cors_origins:
            return "*"
        return origin if origin in self.cors_origins else None

    def document(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add the bearer scheme and the 401 answer to the OpenAPI operations that need a key."""
        if not self.auth_required:
            return spec
        spec.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer", "description": "one of the keys in the server's API_KEYS",
        }
        for path, item in spec.get("paths", {}).items():
            if self.is_open(path):
                continue
            for operation in item.values():
                operation["security"] = [{"bearer": []}]
                operation.setdefault("responses", {})["401"] = {
                    "description": "missing or invalid API key",
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
        return spec


def install(app: Flask, config: Config) -> Policy:
    """Check the settings (raising ValueError for bad ones) and hook them into `app`."""
    policy = Policy.from_config(config)
    if app.debug:
        log.warning("FLASK_DEBUG is set; ignored: the model server never runs in debug mode")
    app.debug = False
    app.extensions["security"] = policy
    app.before_request(_before)
    app.after_request(_after)
    if policy.auth_required:
        log.info("API keys required (%d key(s)); open without a key: %s", len(policy.key_digests),
                 ", ".join(policy.open_paths) or "nothing")
    if policy.cors_origins:
        log.info("CORS allowed for %s", ", ".join(sorted(policy.cors_origins)))
    return policy


def _policy() -> Policy:
    return current_app.extensions["security"]


def _before() -> Response | None:
    policy = _policy()
    if request.method == "OPTIONS":
        return _preflight(policy)
    if not policy.auth_required or policy.is_open(request.path):
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("missing API key: send 'Authorization: Bearer <key>'", None)
    if not policy.key_is_valid(token.strip()):
        return _unauthorized("invalid API key", "invalid_token")
    return None


def _preflight(policy: Policy) -> Response | None:
    """A CORS preflight from an allowed origin to an existing route: 204 with the CORS headers.

    Anything else falls through to Flask's own OPTIONS answer (the route's Allow header, and
    no CORS headers, which is how a browser learns that the origin is not allowed)."""
    if request.url_rule is None or "Access-Control-Request-Method" not in request.headers:
        return None
    allowed = policy.allowed_origin(request.headers.get("Origin"))
    if allowed is None:
        return None
    response = Response(status=204)
    response.headers["Access-Control-Allow-Origin"] = allowed
    response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(request.url_rule.methods or ()))
    response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return response


def _after(response: Response) -> Response:
    # Every answer, API or page: a browser must never guess a JSON error into HTML.
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    policy = _policy()
    if not policy.cors_origins:
        return response
    response.vary.add("Origin")  # the answer depends on Origin: caches must keep them apart
    allowed = policy.allowed_origin(request.headers.get("Origin"))
    if allowed is not None:
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    return response


def _unauthorized(message: str, error: str | None) -> Response:
    response = error_response(message, 401)
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}"'
    response.headers["WWW-Authenticate"] = challenge
    return response


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _split(raw: str | Iterable[str]) -> list[str]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [item.strip() for item in items if item.strip()]
