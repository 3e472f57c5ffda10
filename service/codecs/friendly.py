"""The friendly JSON format: named features in; labels, probabilities by name, values out."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.codecs.arrays import to_array
from service.errors import InvalidInput
from service.repository.servable import ModelCard, Servable, Signature


def parse_instances(body: Any, signature: Signature, card: ModelCard) -> np.ndarray:
    """`{"instances": [...]}`: objects of named features (in any order) or raw arrays."""
    if not isinstance(body, dict) or set(body) != {"instances"}:
        raise InvalidInput('send {"instances": [...]}: a list of objects of named features, or of arrays')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list")
    spec = signature.inputs[card.input_name]
    if card.feature_names and all(isinstance(item, dict) for item in instances):
        rows = [_named_row(item, index, card.feature_names) for index, item in enumerate(instances)]
        return to_array(rows, spec, f"input {card.input_name!r}")
    if any(isinstance(item, dict) for item in instances):
        expected = ", ".join(card.feature_names) if card.feature_names else "arrays"
        raise InvalidInput(f"instances must all be objects with {expected}, or all arrays")
    return to_array(instances, spec, f"input {card.input_name!r}")


def _named_row(item: dict[str, Any], index: int, names: tuple[str, ...]) -> list[Any]:
    missing, extra = set(names) - set(item), set(item) - set(names)
    if missing or extra:
        parts = [f"missing {', '.join(sorted(missing))}"] if missing else []
        parts += [f"unknown {', '.join(sorted(extra))}"] if extra else []
        raise InvalidInput(f"instance {index}: {'; '.join(parts)} (expected {', '.join(names)})")
    return [item[name] for name in names]


def describe(servable: Servable, outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One entry per instance, in the vocabulary of the card."""
    card = servable.card
    values = outputs.get(card.output_name)
    if card.task == "classification" and values is not None:
        return [_classification(row, card) for row in values]
    if card.task == "regression" and values is not None:
        return [{"value": row.reshape(-1)[0]} for row in values]
    batch = len(next(iter(outputs.values())))
    return [{"outputs": {name: array[i] for name, array in outputs.items()}} for i in range(batch)]


def _classification(row: np.ndarray, card: ModelCard) -> dict[str, Any]:
    top = int(row.argmax())
    names = card.class_names or tuple(str(i) for i in range(len(row)))
    entry: dict[str, Any] = {
        "label": names[top],
        "class_id": top,
        # numpy float32 scalars: orjson writes them as the same short numbers as /v1 does.
        "probability": row[top],
        "probabilities": dict(zip(names, row, strict=True)),
    }
    if card.class_names_es:
        entry["label_es"] = card.class_names_es[top]
    return entry
