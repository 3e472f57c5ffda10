"""Checks every door's decoded inputs against the signature and the card before inference."""

from __future__ import annotations

import math

import numpy as np

from service.codecs.arrays import shape_text
from service.errors import InvalidInput, PayloadTooLarge
from service.repository.servable import ModelCard, Signature


def validate_inputs(inputs: dict[str, np.ndarray], signature: Signature, card: ModelCard,
                    max_instances: int) -> tuple[dict[str, np.ndarray], int]:
    """The inputs cast to the signature's dtypes, and their batch size; or InvalidInput saying
    what is wrong and where."""
    expected, given = set(signature.inputs), set(inputs)
    if expected != given:
        raise InvalidInput(
            f"signature {signature.name!r} takes input(s) {', '.join(sorted(expected))}; "
            f"got {', '.join(sorted(given)) or 'none'}"
        )
    batch_sizes = set()
    for name, array in inputs.items():
        where = f"input {name!r}"
        if array.ndim == 0 or array.shape[0] == 0:
            raise InvalidInput(f"{where}: no instances")
        got = array.shape[1:]
        wanted = signature.inputs[name].instance_shape
        if len(got) != len(wanted) or any(w is not None and w != g for w, g in zip(wanted, got, strict=True)):
            raise InvalidInput(f"{where}: each instance must have shape {shape_text(wanted)}, got {shape_text(got)}")
        batch_sizes.add(array.shape[0])
    if len(batch_sizes) > 1:
        raise InvalidInput(f"inputs have different numbers of instances: {sorted(batch_sizes)}")
    batch = batch_sizes.pop()
    if batch > max_instances:
        raise PayloadTooLarge(f"{batch} instances in one request; the limit is {max_instances}")
    typed = {name: _cast(array, signature.inputs[name].dtype) for name, array in inputs.items()}
    for name, array in typed.items():
        _check_values(array, _value_range(card) if name == card.input_name else None, f"input {name!r}")
    return typed, batch


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    if array.dtype == dtype:
        return array
    # 1e300 becomes inf in float32: _check_values refuses it, with the input's name.
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def _value_range(card: ModelCard) -> tuple[float, float] | None:
    return card.raw.get("input", {}).get("image", {}).get("value_range")


def _check_values(array: np.ndarray, value_range: tuple[float, float] | None, where: str) -> None:
    """Finite floats, within the card's value range if it gives one.

    One minimum and one maximum answer both, NaN and infinities showing in them: two passes
    over the array where a finiteness check and a range check would take six.
    """
    if array.dtype.kind not in "fiu" or array.size == 0:
        return
    low, high = array.min(), array.max()
    if value_range and not (value_range[0] <= low and high <= value_range[1]):
        _refuse_outside(array, value_range, where)   # returns when only NaN was the cause
    if array.dtype.kind == "f" and not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidInput(f"{where}: values must be finite and within the range of {array.dtype}")


def _refuse_outside(array: np.ndarray, value_range: tuple[float, float], where: str) -> None:
    low, high = value_range
    outside = (array < low) | (array > high)
    if outside.any():
        position = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InvalidInput(
            f"{where}: pixel values must be within {low}..{high}; instance {position[0]} has "
            f"{array[position]:g} at position {list(position[1:])}"
        )
