"""Checks every wire format makes of a JSON object, with the same words in every door."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from service.errors import InvalidInput


def refuse_unknown_keys(obj: dict[str, Any], allowed: Collection[str], where: str | None = None) -> None:
    unknown = sorted(obj.keys() - allowed)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise InvalidInput(f"{prefix}unknown key(s) {', '.join(map(repr, unknown))}; "
                           f"expected {', '.join(sorted(allowed))}")


def require_names(given: Collection[str], names: Collection[str], where: str) -> None:
    """`given` must be exactly `names`; the message lists what is missing and what is unknown."""
    missing, extra = set(names) - set(given), set(given) - set(names)
    if not (missing or extra):
        return
    parts = [f"missing {', '.join(sorted(missing))}"] if missing else []
    parts += [f"unknown {', '.join(sorted(extra))}"] if extra else []
    raise InvalidInput(f"{where}: {'; '.join(parts)} (expected {', '.join(names)})")


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
