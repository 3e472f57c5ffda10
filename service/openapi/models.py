"""Per-model request and response schemas, with examples, from each served version's signatures and card.

Shapes, names, dtypes, value ranges and classes come from the loaded SavedModel and its card;
examples are the card's golden inputs (the first instance), and example responses are the
golden outputs written by the same codecs the doors use, so they cannot disagree.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.codecs import friendly, tfserving, v2
from service.openapi.schemas import B64, NUMBER_OR_NULL, Schema, array, obj, ref
from service.repository.servable import Servable, Signature, TensorSpec


@dataclass(frozen=True)
class Limits:
    max_instances: int
    max_files: int


# --------------------------------------------------------------------------- leaves and tensors


def _leaf(spec: TensorSpec, servable: Servable, *, output: bool = False, b64: bool = True) -> Schema:
    kind = np.dtype(spec.dtype).kind if spec.dtype != "bfloat16" else "f"
    if kind == "f":
        if output:
            return NUMBER_OR_NULL
        schema: Schema = {"type": "number"}
        value_range = servable.card.value_range
        if value_range and spec.name == servable.card.input_name:
            schema.update(minimum=value_range[0], maximum=value_range[1])
        return schema
    if kind in "iu":
        info = np.iinfo(spec.dtype)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if kind == "b":
        return {"type": "boolean"}
    return {"anyOf": [{"type": "string"}, B64]} if b64 else {"type": "string"}


def _nest(dims: tuple[int | None, ...], leaf: Schema) -> Schema:
    schema = leaf
    for dim in reversed(dims):
        schema = array(schema, dim, dim) if dim is not None else array(schema)
    return schema


def _instance(spec: TensorSpec, servable: Servable, **leaf: bool) -> Schema:
    return _nest(spec.instance_shape, _leaf(spec, servable, **leaf))


def _batch(spec: TensorSpec, servable: Servable, limits: Limits, **leaf: bool) -> Schema:
    return array(_instance(spec, servable, **leaf), 1, limits.max_instances)


def _is_image_input(servable: Servable, spec: TensorSpec) -> bool:
    return servable.card.input_kind == "image" and spec.name == servable.card.input_name


def _signatures(servable: Servable) -> list[Signature]:
    """The default signature first: it is what a request without a signature name runs."""
    default = servable.signature(None)
    return [default, *(s for s in servable.signatures.values() if s.name != default.name)]


def _signature_name(signature: Signature, servable: Servable) -> tuple[dict[str, Schema], list[str]]:
    if signature.name == servable.default_signature:
        return {"signature_name": {"enum": [signature.name, ""]}}, []
    return {"signature_name": {"const": signature.name}}, ["signature_name"]


# --------------------------------------------------------------------------- TensorFlow Serving (/v1)


def tfserving_predict_request(servable: Servable, limits: Limits) -> Schema:
    variants = []
    for signature in _signatures(servable):
        name_prop, name_required = _signature_name(signature, servable)
        specs = signature.inputs
        instance = {n: _tfs_instance(s, servable) for n, s in specs.items()}
        batch = {n: array(instance[n], 1, limits.max_instances) for n, s in specs.items()}
        named_rows = array(obj(instance, list(specs)), 1, limits.max_instances)
        if len(specs) == 1:
            (only,) = specs
            rows: Schema = {"anyOf": [array(instance[only], 1, limits.max_instances), named_rows]}
            columns: Schema = {"anyOf": [batch[only], obj(batch, list(specs))]}
        else:
            rows, columns = named_rows, obj(batch, list(specs))
        # Rows are all plain instances or all objects by input name: the door refuses a mix.
        variants.append(obj({**name_prop, "instances": rows}, ["instances", *name_required]))
        variants.append(obj({**name_prop, "inputs": columns}, ["inputs", *name_required]))
    return {"anyOf": variants}


def _tfs_instance(spec: TensorSpec, servable: Servable) -> Schema:
    instance = _instance(spec, servable)
    # The TF Serving door decodes {"b64": ...} for an image model's input as an encoded image file.
    return {"anyOf": [instance, B64]} if _is_image_input(servable, spec) else instance


def tfserving_predict_response(servable: Servable) -> Schema:
    variants = []
    for signature in _signatures(servable):
        outs = {n: _instance(s, servable, output=True) for n, s in signature.outputs.items()}
        batches = {n: array(schema) for n, schema in outs.items()}
        if len(outs) == 1:
            (only,) = outs
            variants += [obj({"predictions": batches[only]}, ["predictions"]),
                         obj({"outputs": batches[only]}, ["outputs"])]
        else:
            variants += [obj({"predictions": array(obj(outs, list(outs)))}, ["predictions"]),
                         obj({"outputs": obj(batches, list(batches))}, ["outputs"])]
    return {"anyOf": variants}


def tfserving_examples_request(servable: Servable, limits: Limits) -> Schema:
    names = list(servable.card.feature_names)
    feature: Schema = {"anyOf": [{"type": "number"}, array({"type": "number"}, 1, 1)]}
    features = dict.fromkeys(names, feature)
    # Each feature comes from the example or from the context, never both; these are the two plain cases.
    return {"anyOf": [
        obj({"signature_name": {"type": "string"}, "examples": array(obj(features, names), 1, limits.max_instances)},
            ["examples"]),
        obj({"signature_name": {"type": "string"}, "context": obj(features, names),
             "examples": array({"type": "object", "maxProperties": 0}, 1, limits.max_instances)},
            ["context", "examples"]),
    ], "description": f"features: {', '.join(names)}, in each example or in the context"}


def tfserving_classify_response(servable: Servable) -> Schema:
    classes = list(servable.card.class_names)
    pair = {**array({"anyOf": [{"enum": classes}, NUMBER_OR_NULL]}, 2, 2), "description": "[label, score]"}
    return obj({"result": array(array(pair, len(classes), len(classes)))}, ["result"])


def tfserving_regress_response() -> Schema:
    return ref("TFServingRegressResponse")


# --------------------------------------------------------------------------- the friendly API (/api)


def friendly_json_request(servable: Servable, limits: Limits) -> Schema:
    card = servable.card
    spec = servable.signature(None).inputs[card.input_name]
    raw = _instance(spec, servable, b64=False)
    instances = array(raw, 1, limits.max_instances)
    if card.feature_names:
        named = obj({name: {"type": "number"} for name in card.feature_names}, list(card.feature_names))
        # All objects of named features or all arrays: the door refuses a mix.
        instances = {"anyOf": [array(named, 1, limits.max_instances), instances]}
    return obj({"instances": instances}, ["instances"])


def friendly_response(servable: Servable) -> Schema:
    card = servable.card
    upload = {"file": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
              "preview": {"type": "string"}}
    if card.task == "classification":
        classes = list(card.class_names)
        properties = {
            "label": {"enum": classes},
            "class_id": {"type": "integer", "minimum": 0, "maximum": len(classes) - 1},
            "probability": NUMBER_OR_NULL,
            "probabilities": obj(dict.fromkeys(classes, NUMBER_OR_NULL), classes),
        }
        if card.class_names_es:
            properties["label_es"] = {"enum": list(card.class_names_es)}
        prediction = obj({**properties, **upload}, list(properties))
    elif card.task == "regression":
        prediction = obj({"value": NUMBER_OR_NULL, **upload}, ["value"])
    else:
        prediction = obj({"outputs": {"type": "object"}, **upload}, ["outputs"])
    return obj({"model": {"const": servable.name}, "version": {"type": "integer"},
                "predictions": array(prediction)}, ["model", "version", "predictions"])


# --------------------------------------------------------------------------- Open Inference Protocol (/v2)


def v2_request(servable: Servable, limits: Limits) -> Schema:
    inputs: dict[tuple[str, str, tuple[int | None, ...]], Schema] = {}
    outputs: set[str] = set()
    for signature in _signatures(servable):
        outputs |= set(signature.outputs)
        for spec in signature.inputs.values():
            inputs.setdefault((spec.name, spec.dtype, spec.shape), _v2_input(spec, servable, limits))
            if _is_image_input(servable, spec):
                inputs.setdefault((spec.name, "bytes", ()), _v2_image_input(spec, limits))
    count = len(servable.signature(None).inputs)
    return obj({
        "id": {"type": "string"},
        "parameters": {**ref("V2Parameters"), "properties": {
            "signature_name": {"enum": [s.name for s in _signatures(servable)]},
            "binary_data_output": {"type": "boolean"},
        }},
        "inputs": array({"anyOf": list(inputs.values())}, count, count),
        "outputs": array(obj({"name": {"enum": sorted(outputs)}, "parameters": ref("V2Parameters")}, ["name"])),
    }, ["inputs"])


def _shape(spec: TensorSpec, minimum: int) -> Schema:
    """Rank and bounds of a `shape`; its dimensions in words (positional items trip up common tools)."""
    dims = ["batch", *("any" if d is None else str(d) for d in spec.instance_shape)]
    return {**array({"type": "integer", "minimum": minimum}, len(dims), len(dims)),
            "description": f"[{', '.join(dims)}]"}


def _v2_input(spec: TensorSpec, servable: Servable, limits: Limits) -> Schema:
    leaf = _leaf(spec, servable)
    known = all(d is not None and d > 0 for d in spec.instance_shape)
    return obj({
        "name": {"const": spec.name},
        "datatype": {"const": v2.datatype_of(spec.dtype)},
        "shape": _shape(spec, 1),
        "parameters": ref("V2Parameters"),
        "data": {"anyOf": [array(leaf, 1 if known else None), _batch(spec, servable, limits)],
                 "description": "row-major: flat, or nested exactly as the shape"},
    }, ["name", "datatype", "shape", "data"])


def _v2_image_input(spec: TensorSpec, limits: Limits) -> Schema:
    return obj({
        "name": {"const": spec.name},
        "datatype": {"const": "BYTES"},
        "shape": {**array({"type": "integer", "minimum": 1}, 1, 2), "description": "[n] or [n, 1]"},
        "parameters": {**ref("V2Parameters"), "properties": {"content_type": {"const": "base64"}}},
        "data": array({"anyOf": [{"type": "string"}, B64]}, 1, limits.max_instances),
    }, ["name", "datatype", "shape", "data"], description="encoded image files (PNG, JPEG, ...), one per "
                                                         "element: base64 strings with content_type base64, "
                                                         'or {"b64": ...} objects')


def v2_response(servable: Servable) -> Schema:
    outputs: dict[tuple[str, str, tuple[int | None, ...]], Schema] = {}
    for signature in _signatures(servable):
        for spec in signature.outputs.values():
            common = {"name": {"const": spec.name}, "datatype": {"const": v2.datatype_of(spec.dtype)},
                      "shape": _shape(spec, 0)}
            outputs[(spec.name, spec.dtype, spec.shape)] = {"anyOf": [
                obj({**common, "data": array(_leaf(spec, servable, output=True, b64=False)),
                     "parameters": ref("V2Parameters")}, ["name", "datatype", "shape", "data"]),
                obj({**common, "parameters": obj({"binary_data_size": {"type": "integer", "minimum": 0}},
                                                 ["binary_data_size"])}, ["name", "datatype", "shape", "parameters"]),
            ]}
    return obj({
        "model_name": {"const": servable.name},
        "model_version": {"type": "string", "pattern": "^[0-9]+$"},
        "id": {"type": "string"},
        "outputs": array({"anyOf": list(outputs.values())}),
    }, ["model_name", "model_version", "outputs"])


# --------------------------------------------------------------------------- examples from the golden set


@dataclass(frozen=True)
class Examples:
    """One instance of the card's golden set, as each door's request and response."""

    tfserving_predict: tuple[Any, Any]
    friendly: tuple[Any, Any]
    v2: tuple[Any, Any]
    v2_image: Any | None                  # request only: the golden image as a PNG, in BYTES
    classify: tuple[Any, Any] | None      # for classification models with named features
    regress: tuple[Any, Any] | None       # for regression models with named features


def examples(servable: Servable) -> Examples | None:
    """None when the version has no golden set for its default signature."""
    card, signature = servable.card, servable.signature(None)
    golden = card.golden or {}
    if golden.get("signature_name", servable.default_signature) != signature.name:
        return None
    try:
        inputs = {n: _tidy(np.asarray(golden["inputs"][n], dtype=s.dtype)[:1]) for n, s in signature.inputs.items()}
        outputs = {n: np.asarray(golden["outputs"][n], dtype=s.dtype)[:1] for n, s in signature.outputs.items()}
    except (KeyError, TypeError, ValueError):
        return None

    tfs_request = {"instances": inputs[card.input_name].tolist()} if len(inputs) == 1 else \
        {"inputs": {n: a.tolist() for n, a in inputs.items()}}
    tfs_response = tfserving.PredictRequest(lambda: tfs_request, 0).encode(outputs)

    first = inputs[card.input_name][0].tolist()
    friendly_request = {"instances": [dict(zip(card.feature_names, first, strict=True)) if card.feature_names
                                      else first]}
    friendly_response = friendly.FeatureRows(lambda: friendly_request).encode(servable, outputs)

    v2_request = {"id": f"{servable.name}-example", "inputs": [
        {"name": n, "shape": list(a.shape), "datatype": v2.datatype_of(signature.inputs[n].dtype),
         "data": a.reshape(-1).tolist()} for n, a in inputs.items()]}
    parsed = v2.parse_request(v2_request)
    v2_response, _ = v2.encode_response(servable, parsed, outputs, list(signature.outputs))

    classify = regress = None
    if card.feature_names and len(inputs) == 1:
        named = {"examples": [dict(zip(card.feature_names, first, strict=True))]}
        if card.task == "classification" and card.class_names:
            classify = (named, tfserving.ExamplesRequest(lambda: named, tfserving.CLASSIFY).encode(outputs, card))
        elif card.task == "regression":
            regress = (named, tfserving.ExamplesRequest(lambda: named, tfserving.REGRESS).encode(outputs, card))
    return Examples(
        tfserving_predict=_plain((tfs_request, tfs_response)),
        friendly=_plain((friendly_request, friendly_response)),
        v2=_plain((v2_request, v2_response)),
        v2_image=_image_request(servable, inputs),
        classify=_plain(classify),
        regress=_plain(regress),
    )


def _image_request(servable: Servable, inputs: dict[str, np.ndarray]) -> dict[str, Any] | None:
    card = servable.card
    if card.input_kind != "image":
        return None
    pixels = np.asarray(inputs[card.input_name][0], dtype=np.float64)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or pixels.min() < 0 or pixels.max() > 255:
        return None
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.rint(pixels).astype(np.uint8)).save(buffer, format="PNG", optimize=True)
    return {"id": f"{servable.name}-png", "inputs": [{
        "name": card.input_name, "shape": [1], "datatype": "BYTES",
        "parameters": {"content_type": "base64"}, "data": [base64.b64encode(buffer.getvalue()).decode()],
    }]}


def _tidy(array: np.ndarray) -> np.ndarray:
    """Floats as the short numbers they are in float32 (5.4, not 5.400000095367432); whole ones as integers."""
    if array.dtype.kind != "f":
        return array
    if np.all(array == np.rint(array)) and np.abs(array).max(initial=0) < 2**31:
        return array.astype(np.int64)
    shortest = [float(str(value)) for value in array.astype(np.float32).reshape(-1)]  # str of a float32 scalar
    return np.array(shortest, dtype=object).reshape(array.shape)


def _plain(value: Any) -> Any:
    """JSON-native values, exactly as the server writes them."""
    return None if value is None else orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
