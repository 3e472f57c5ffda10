"""Checks every door's decoded inputs against the signature and the card before inference."""

from __future__ import annotations

import numpy as np

from service.codecs.arrays import shape_text
from service.errors import InvalidInput, PayloadTooLarge
from service.repository.servable import ModelCard, Signature


def validate_inputs(inputs: dict[str, np.ndarray], signature: Signature, card: ModelCard,
                    max_instances: int) -> int:
    """Return the batch size of `inputs`, or raise InvalidInput saying what is wrong and where."""
    expected, given = set(signature.inputs), set(inputs)
    if expected != given:
        raise InvalidInput(
            f"signature {signature.name!r} takes input(s) {', '.join(sorted(expected))}; "
            f"got {', '.join(sorted(given)) or 'none'}"
        )
    batch_sizes = set()
    for name, array in inputs.items():
        spec = signature.inputs[name]
        where = f"input {name!r}"
        if array.ndim == 0 or array.shape[0] == 0:
            raise InvalidInput(f"{where}: no instances")
        got = array.shape[1:]
        wanted = spec.instance_shape
        if len(got) != len(wanted) or any(w is not None and w != g for w, g in zip(wanted, got, strict=True)):
            raise InvalidInput(f"{where}: each instance must have shape {shape_text(wanted)}, got {shape_text(got)}")
        batch_sizes.add(array.shape[0])
        if name == card.input_name:
            _check_range(array, card, where)
    if len(batch_sizes) > 1:
        raise InvalidInput(f"inputs have different numbers of instances: {sorted(batch_sizes)}")
    batch = batch_sizes.pop()
    if batch > max_instances:
        raise PayloadTooLarge(f"{batch} instances in one request; the limit is {max_instances}")
    return batch


def _check_range(array: np.ndarray, card: ModelCard, where: str) -> None:
    value_range = card.raw.get("input", {}).get("image", {}).get("value_range")
    if not value_range or array.dtype.kind not in "fiu":
        return
    low, high = value_range
    outside = (array < low) | (array > high)
    if outside.any():
        position = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InvalidInput(
            f"{where}: pixel values must be within {low}..{high}; instance {position[0]} has "
            f"{array[position]:g} at position {list(position[1:])}"
        )
