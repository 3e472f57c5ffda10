"""TensorFlow Serving's REST wire format: predict (row and columnar), classify and regress
requests to arrays, and arrays to exactly the response bodies TensorFlow Serving writes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from service.codecs.arrays import decode_b64, to_array
from service.codecs.checks import refuse_unknown_keys, require_names
from service.codecs.image_inputs import image_batch, takes_images
from service.errors import InvalidInput
from service.repository.servable import ModelCard, Servable, Signature, TensorSpec

ROW = "row"
COLUMNAR = "columnar"
CLASSIFY, REGRESS = "classify", "regress"
# The door's way to read the request's JSON body, called once, when the data plane needs it.
BodyReader = Callable[[], Any]
_TASKS = {CLASSIFY: "classification", REGRESS: "regression"}


def signature_name(body: dict[str, Any]) -> str | None:
    """The request's `signature_name`, None for the default; anything but a string is refused.

    null too (as the v2 door does, and as the OpenAPI schema says)."""
    if "signature_name" not in body:
        return None
    name = body["signature_name"]
    if not isinstance(name, str):
        raise InvalidInput("'signature_name' must be a string")
    return name or None


class _JsonRequest:
    """A JSON object body with `keys` only, read when the data plane asks for its signature,
    after the version is found: an unknown model is a 404 whatever the body."""

    keys: frozenset[str]
    _body: dict[str, Any] | None = None
    _signature_name: str | None = None

    def __init__(self, read_body: BodyReader) -> None:
        self._read_body = read_body

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            body = self._read_body()
            if not isinstance(body, dict):
                raise InvalidInput(f"request body must be a JSON object, got {type(body).__name__}")
            refuse_unknown_keys(body, self.keys)
            self._signature_name = signature_name(body)
            self._check(body)
            self._body = body
        return self._body

    def _check(self, body: dict[str, Any]) -> None:
        """What else the body's shape must satisfy before its values are read."""

    @property
    def signature_name(self) -> str | None:
        self.body  # noqa: B018 - read (and checked) on first use
        return self._signature_name


class PredictRequest(_JsonRequest):
    """A `:predict` body, row (`instances`) or columnar (`inputs`)."""

    keys = frozenset({"signature_name", "instances", "inputs"})

    def __init__(self, read_body: BodyReader, max_image_pixels: int) -> None:
        super().__init__(read_body)
        self.max_image_pixels = max_image_pixels

    def _check(self, body: dict[str, Any]) -> None:
        if ("instances" in body) == ("inputs" in body):
            raise InvalidInput("give exactly one of 'instances' (row format) or 'inputs' (columnar format)")

    @property
    def format(self) -> str:
        return ROW if "instances" in self.body else COLUMNAR

    def decode(self, signature: Signature, servable: Servable) -> dict[str, np.ndarray]:
        names = list(signature.inputs)
        if self.format == ROW:
            values = _rows_to_columns(self.body["instances"], names)
        else:
            values = _columns(self.body["inputs"], names)
        return {name: self._to_input(values[name], signature.inputs[name], servable.card) for name in names}

    def _to_input(self, value: Any, spec: TensorSpec, card: ModelCard) -> np.ndarray:
        where = f"input {spec.name!r}"
        if spec.dtype != "object" and _holds_b64(value):
            if not takes_images(card, spec.name):
                raise InvalidInput(f"{where}: b64 values need a string input or an image model")
            items = value if isinstance(value, list) else [value]
            files = [decode_b64(item, f"{where}, instance {i}") for i, item in enumerate(items)]
            return image_batch(files, card, self.max_image_pixels, where)
        return to_array(value, spec, where)

    def encode(self, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """TensorFlow Serving's body: one output loses its name; several become objects per row."""
        outputs = {name: _bytes_as_b64(name, array) for name, array in sorted(outputs.items())}
        if self.format == COLUMNAR:
            return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        batch = len(next(iter(outputs.values())))
        return {"predictions": [{name: array[i] for name, array in outputs.items()} for i in range(batch)]}


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
        require_names(item, names, f"instance {index}")
        for name in names:
            columns[name].append(item[name])
    return columns


def _columns(inputs: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        require_names(inputs, names, "'inputs'")
        return dict(inputs)
    if len(names) != 1:
        raise InvalidInput(f"'inputs' must be an object with the inputs {', '.join(names)}")
    return {names[0]: inputs}


class ExamplesRequest(_JsonRequest):
    """A `:classify` or `:regress` body: `examples` (+ `context`) of the card's named features."""

    keys = frozenset({"signature_name", "context", "examples"})

    def __init__(self, read_body: BodyReader, verb: str) -> None:
        super().__init__(read_body)
        self.verb = verb

    def decode(self, signature: Signature, servable: Servable) -> dict[str, np.ndarray]:
        card = servable.card
        task = _TASKS[self.verb]
        if card.task != task:
            raise InvalidInput(f"model {servable.name!r} is not a {task} model; use :predict")
        return {card.input_name: _features(self.body, card)}

    def encode(self, outputs: dict[str, np.ndarray], card: ModelCard) -> dict[str, Any]:
        values = outputs[card.output_name]
        if self.verb == CLASSIFY:
            labels = card.class_names or tuple("" for _ in range(values.shape[1]))
            return {"result": [[[label, float(score)] for label, score in zip(labels, row, strict=True)]
                               for row in values]}
        return {"result": values.reshape(len(values), -1)[:, 0]}


def _features(body: dict[str, Any], card: ModelCard) -> np.ndarray:
    """`examples` (+ `context`) to the model's feature matrix, in card order."""
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
        require_names(merged, names, f"example {index}")
        rows.append([_scalar(merged[n], f"example {index}, feature {n!r}") for n in names])
    with np.errstate(over="ignore"):  # 1e300 becomes inf in float32: validation refuses it
        return np.array(rows, dtype=np.float32)


def _scalar(value: Any, where: str) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where}: expected a number, got {type(value).__name__}")
    if not np.isfinite(value):
        raise InvalidInput(f"{where}: NaN and Infinity are not accepted")
    return float(value)


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
