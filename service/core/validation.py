"""Checks every door's decoded inputs against the signature and the card before inference."""

from __future__ import annotations

import math

import numpy as np

from service.errors import InvalidInput, PayloadTooLarge
from service.repository.servable import ModelCard, Signature


def validate_inputs(inputs: dict[str, np.ndarray], signature: Signature, card: ModelCard,
                    max_instances: int) -> tuple[dict[str, np.ndarray], int]:
    """The inputs cast to the signature's dtypes, and their batch size; or InvalidInput saying
    what is wrong and where."""
    if inputs.keys() != signature.inputs.keys():
        raise InvalidInput(
            f"signature {signature.name!r} takes input(s) {', '.join(sorted(signature.inputs))}; "
            f"got {', '.join(sorted(inputs)) or 'none'}"
        )
    for name, array in inputs.items():
        if array.ndim == 0 or array.shape[0] == 0:
            raise InvalidInput(f"input {name!r}: no instances")
        got, wanted = array.shape[1:], signature.inputs[name].instance_shape
        if got != wanted and not _fits(got, wanted):
            raise InvalidInput(f"input {name!r}: each instance must have shape {shape_text(wanted)}, "
                               f"got {shape_text(got)}")
    batch_sizes = {array.shape[0] for array in inputs.values()}
    if len(batch_sizes) > 1:
        raise InvalidInput(f"inputs have different numbers of instances: {sorted(batch_sizes)}")
    batch = batch_sizes.pop()
    if batch > max_instances:
        raise PayloadTooLarge(f"{batch} instances in one request; the limit is {max_instances}")
    typed = {}
    for name, array in inputs.items():
        typed[name] = cast = _cast(array, signature.inputs[name].dtype)
        _check_values(cast, card.value_range if name == card.input_name else None, name)
    return typed, batch


def shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("any" if d is None else str(d) for d in shape) + "]"


def _fits(got: tuple[int, ...], wanted: tuple[int | None, ...]) -> bool:
    return len(got) == len(wanted) and all(w is None or w == g for w, g in zip(wanted, got, strict=True))


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    if array.dtype == dtype:
        return array
    # 1e300 becomes inf in float32: _check_values refuses it, with the input's name.
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def _check_values(array: np.ndarray, value_range: tuple[float, float] | None, name: str) -> None:
    """Finite floats, within the card's value range if it gives one.

    With a range, one minimum and one maximum answer both, NaN and infinities showing in them:
    two passes over the array where a finiteness check and a range check would take six.
    """
    kind = array.dtype.kind
    if kind not in "fiu" or array.size == 0:
        return
    if value_range is None:
        if kind == "f" and not np.isfinite(array).all():
            raise _not_finite(name, array)
        return
    low, high = array.min(), array.max()
    if not (value_range[0] <= low and high <= value_range[1]):
        _refuse_outside(array, value_range, f"input {name!r}")   # returns when only NaN was the cause
    if kind == "f" and not (math.isfinite(low) and math.isfinite(high)):
        raise _not_finite(name, array)


def _not_finite(name: str, array: np.ndarray) -> InvalidInput:
    return InvalidInput(f"input {name!r}: values must be finite and within the range of {array.dtype}")


def _refuse_outside(array: np.ndarray, value_range: tuple[float, float], where: str) -> None:
    low, high = value_range
    outside = (array < low) | (array > high)
    if outside.any():
        position = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InvalidInput(
            f"{where}: pixel values must be within {low}..{high}; instance {position[0]} has "
            f"{array[position]:g} at position {list(position[1:])}"
        )
