"""JSON values to numpy arrays, strictly: wrong shapes, strings, booleans and ragged lists
are refused with a message that says which instance and which position."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import orjson

from service.codecs.checks import short_repr
from service.core.validation import shape_text
from service.errors import InvalidInput
from service.repository.servable import TensorSpec

_NUMERIC_KINDS = {"f", "i", "u"}
_NUMBER_TEXT = b"0123456789.e+-[],"


def to_array(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    """Convert the batch `value` (a list of instances) for input `spec`."""
    try:
        return _to_array(value, spec, where)
    except RecursionError:
        raise InvalidInput(f"{where}: lists are nested too deeply") from None


def _to_array(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    if spec.dtype == "object":
        return _to_bytes_array(value, where)
    if not isinstance(value, list):
        value = [value]
    # 1e300 becomes inf in float32: the core refuses it, with the input's name.
    with np.errstate(over="ignore"):
        if spec.dtype.startswith("float") and _only_numbers(value):
            # Straight to the model's dtype: no float64 copy, no second pass to cast it.
            try:
                return np.array(value, dtype=spec.dtype)
            except ValueError:
                raise InvalidInput(f"{where}: {_ragged_detail(value)}") from None
        array = _strict_array(value, where, {"b"} if spec.dtype == "bool" else _NUMERIC_KINDS)
        return array.astype(spec.dtype, copy=False)


def _only_numbers(value: list[Any]) -> bool:
    """Every leaf a number: orjson writes nested lists of numbers back with nothing but digits,
    '.', 'e', signs, brackets and commas, and true, false, null, strings and objects all need
    other characters. JSON values decoded by orjson are never NaN or infinite."""
    try:
        return not orjson.dumps(value).translate(None, _NUMBER_TEXT)
    except orjson.JSONEncodeError:   # nested too deeply: the general path says so
        return False


def _strict_array(value: list[Any], where: str, kinds: set[str]) -> np.ndarray:
    try:
        array = np.array(value)
    except ValueError:
        raise InvalidInput(f"{where}: {_ragged_detail(value)}") from None
    if array.dtype.kind not in kinds or (kinds is _NUMERIC_KINDS and _holds_booleans(value)):
        raise InvalidInput(f"{where}: {_wrong_kind_detail(value, kinds)}")
    return array


def _holds_booleans(value: list[Any]) -> bool:
    """numpy turns [false, 1.5] into [0.0, 1.5]; orjson re-encodes the lists in microseconds,
    far faster than walking them in Python, and a numeric array holds no strings."""
    text = orjson.dumps(value)
    return b"true" in text or b"false" in text


def decode_b64(value: Any, where: str) -> bytes:
    if not isinstance(value, dict) or set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise InvalidInput(f'{where}: binary values must be {{"b64": "<base64 string>"}}')
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: b64 value is not valid base64") from None


def _to_bytes_array(value: Any, where: str) -> np.ndarray:
    items = value if isinstance(value, list) else [value]
    converted = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            converted.append(item.encode())
        elif isinstance(item, dict):
            converted.append(decode_b64(item, f"{where}, instance {index}"))
        else:
            raise InvalidInput(f"{where}, instance {index}: expected a string or {{\"b64\": ...}}")
    return np.array(converted, dtype=object)


def _ragged_detail(value: list[Any]) -> str:
    """Name the first instance whose nesting differs from the first one's."""
    reference = _nested_shape(value[0]) if value else None
    for index, item in enumerate(value):
        shape = _nested_shape(item)
        if shape != reference:
            return (f"instances are ragged: instance 0 has shape {shape_text(reference or ())}, "
                    f"instance {index} has {shape_text(shape) if shape is not None else 'an irregular shape'}")
    return "instances are ragged (nested lists of different lengths)"


def _nested_shape(item: Any) -> tuple[int, ...] | None:
    if not isinstance(item, list):
        return ()
    inner = {_nested_shape(element) for element in item}
    if len(inner) > 1:
        return None
    sub = inner.pop() if inner else ()
    return None if sub is None else (len(item), *sub)


def _wrong_kind_detail(value: Any, kinds: set[str]) -> str:
    wanted = "booleans" if kinds == {"b"} else "numbers"
    found = _first_wrong_leaf(value, kinds, ())
    if found is None:
        return f"expected {wanted}"
    path, bad = found
    location = f"instance {path[0]}" + (f", position {path[1:]}" if len(path) > 1 else "")
    return f"{location}: expected {wanted}, got {type(bad).__name__} {short_repr(bad)}"


def _first_wrong_leaf(value: Any, kinds: set[str], path: tuple[int, ...]) -> tuple[list[int], Any] | None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_wrong_leaf(item, kinds, (*path, index))
            if found is not None:
                return found
        return None
    is_bool = isinstance(value, bool)
    ok = is_bool if kinds == {"b"} else (isinstance(value, int | float) and not is_bool)
    return None if ok else (list(path), value)

