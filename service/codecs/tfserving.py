"""TensorFlow Serving's REST wire format: predict (row and columnar), classify and regress
requests to arrays, and arrays to exactly the response bodies TensorFlow Serving writes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from service.codecs.arrays import decode_b64, to_array
from service.errors import InvalidInput
from service.repository.servable import ModelCard, Signature

ROW = "row"
COLUMNAR = "columnar"
_PREDICT_KEYS = {"signature_name", "instances", "inputs"}
_EXAMPLE_KEYS = {"signature_name", "context", "examples"}

# Turns the raw bytes of one encoded image into the model's input array.
ImageDecoder = Callable[[bytes, str], np.ndarray]


def require_object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown key(s) {', '.join(map(repr, unknown))}; expected {', '.join(sorted(allowed))}")
    signature_name(body)
    return body


def signature_name(body: Any) -> str | None:
    """The request's `signature_name`, None for the default; anything but a string is refused.

    null too (as the v2 door does, and as the OpenAPI schema says)."""
    if not isinstance(body, dict) or "signature_name" not in body:
        return None
    name = body["signature_name"]
    if not isinstance(name, str):
        raise InvalidInput("'signature_name' must be a string")
    return name or None


def parse_predict(
    body: dict[str, Any], signature: Signature, card: ModelCard, decode_image: ImageDecoder | None
) -> tuple[dict[str, Any], str]:
    """The request's input tensors by name (as JSON values, not yet arrays) and its format."""
    require_object(body, _PREDICT_KEYS)
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise InvalidInput("give exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    names = list(signature.inputs)
    if has_rows:
        values = _rows_to_columns(body["instances"], names)
        fmt = ROW
    else:
        values = _columns(body["inputs"], names)
        fmt = COLUMNAR
    return {name: _to_input(values[name], signature, name, card, decode_image) for name in names}, fmt


def _rows_to_columns(instances: Any, names: list[str]) -> dict[str, Any]:
    if not isinstance(instances, list):
        raise InvalidInput("'instances' must be a list with one entry per instance")
    if not instances:
        raise InvalidInput("'instances' is empty")
    named = [isinstance(item, dict) and not _is_b64(item) for item in instances]
    if len(names) == 1 and not any(named):
        return {names[0]: instances}
    if not all(named):
        raise InvalidInput(f"every instance must be an object with the inputs {', '.join(names)}")
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, item in enumerate(instances):
        missing, extra = set(names) - set(item), set(item) - set(names)
        if missing or extra:
            raise InvalidInput(_name_mismatch(f"instance {index}", names, missing, extra))
        for name in names:
            columns[name].append(item[name])
    return columns


def _columns(inputs: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        missing, extra = set(names) - set(inputs), set(inputs) - set(names)
        if missing or extra:
            raise InvalidInput(_name_mismatch("'inputs'", names, missing, extra))
        return dict(inputs)
    if len(names) != 1:
        raise InvalidInput(f"'inputs' must be an object with the inputs {', '.join(names)}")
    return {names[0]: inputs}


def _to_input(value: Any, signature: Signature, name: str, card: ModelCard,
              decode_image: ImageDecoder | None) -> np.ndarray:
    spec = signature.inputs[name]
    where = f"input {name!r}"
    if spec.dtype != "object" and _holds_b64(value):
        # TensorFlow Serving passes b64 bytes to string inputs only; for an image model we
        # decode them as an image file, which is what a client sending bytes means.
        if decode_image is None or card.input_kind != "image" or name != card.input_name:
            raise InvalidInput(f"{where}: b64 values need a string input or an image model")
        items = value if isinstance(value, list) else [value]
        return np.stack([decode_image(decode_b64(item, f"{where}, instance {i}"), f"{where}, instance {i}")
                         for i, item in enumerate(items)])
    return to_array(value, spec, where)


def parse_examples(body: dict[str, Any], card: ModelCard) -> np.ndarray:
    """Classify/regress `examples` (+ `context`) to the model's feature matrix, in card order."""
    require_object(body, _EXAMPLE_KEYS)
    if card.input_kind != "features" or not card.feature_names:
        raise InvalidInput("this model takes no named features; use :predict")
    examples, context = body.get("examples"), body.get("context", {})
    if not isinstance(examples, list) or not examples:
        raise InvalidInput("'examples' must be a non-empty list of objects")
    if not isinstance(context, dict):
        raise InvalidInput("'context' must be an object")
    names = list(card.feature_names)
    rows = []
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            raise InvalidInput(f"example {index} must be an object of features")
        overlap = set(example) & set(context)
        if overlap:
            raise InvalidInput(f"example {index}: feature(s) {', '.join(sorted(overlap))} also in 'context'")
        merged = {**context, **example}
        missing, extra = set(names) - set(merged), set(merged) - set(names)
        if missing or extra:
            raise InvalidInput(_name_mismatch(f"example {index}", names, missing, extra))
        rows.append([_scalar(merged[n], f"example {index}, feature {n!r}") for n in names])
    with np.errstate(over="ignore"):  # 1e300 becomes inf in float32: the core refuses it
        return np.array(rows, dtype=np.float32)


def _scalar(value: Any, where: str) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where}: expected a number, got {type(value).__name__}")
    if not np.isfinite(value):
        raise InvalidInput(f"{where}: NaN and Infinity are not accepted")
    return float(value)


def encode_predict(outputs: dict[str, np.ndarray], fmt: str) -> dict[str, Any]:
    """TensorFlow Serving's body: one output loses its name; several become objects per row."""
    outputs = {name: _bytes_as_b64(name, array) for name, array in sorted(outputs.items())}
    if fmt == COLUMNAR:
        return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    batch = len(next(iter(outputs.values())))
    return {"predictions": [{name: array[i] for name, array in outputs.items()} for i in range(batch)]}


def encode_classify(probabilities: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    labels = class_names or tuple("" for _ in range(probabilities.shape[1]))
    return {"result": [[[label, float(score)] for label, score in zip(labels, row, strict=True)]
                       for row in probabilities]}


def encode_regress(values: np.ndarray) -> dict[str, Any]:
    return {"result": values.reshape(len(values), -1)[:, 0]}


def _bytes_as_b64(name: str, array: np.ndarray) -> Any:
    if array.dtype != object:
        return array
    if name.endswith("_bytes"):
        return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
    return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _holds_b64(value: Any) -> bool:
    return _is_b64(value) or (isinstance(value, list) and bool(value) and _is_b64(value[0]))


def _name_mismatch(where: str, names: list[str], missing: set[str], extra: set[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing {', '.join(sorted(missing))}")
    if extra:
        parts.append(f"unknown {', '.join(sorted(extra))}")
    return f"{where}: {'; '.join(parts)} (expected {', '.join(names)})"
