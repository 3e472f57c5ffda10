"""Errors a request can meet, each with the HTTP status it maps to.

Every protocol door renders them as `{"error": "..."}`; messages say what is wrong and
where, and never carry a stack trace or a file path.
"""

from __future__ import annotations


class ServingError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServingError):
    status = 400


class Unauthorized(ServingError):
    status = 401


class NotFound(ServingError):
    status = 404


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class Unavailable(ServingError):
    status = 503
