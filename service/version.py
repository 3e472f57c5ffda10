"""The server's name and version, as the /v2 metadata and the OpenAPI document report them."""

from __future__ import annotations

import functools
import tomllib
from importlib import metadata
from pathlib import Path

NAME = "keras-serving"
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@functools.cache
def version() -> str:
    """The installed distribution's version; from a source checkout, pyproject.toml's."""
    try:
        return metadata.version(NAME)
    except metadata.PackageNotFoundError:
        pass
    try:
        return str(tomllib.loads(_PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"
