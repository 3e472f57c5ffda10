"""The Open Inference Protocol (KServe V2, Triton, MLServer) REST wire format.

JSON inference requests to arrays and arrays to responses, model and server metadata, and
Triton's `binary_tensor_data` extension (a JSON header followed by raw tensor bytes), which
tritonclient uses by default. Nothing here knows about HTTP: the door hands in the body and
the header length, and gets back a JSON object plus the bytes to append.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import orjson

from service.codecs.arrays import decode_b64, to_array
from service.codecs.checks import refuse_unknown_keys, short_repr
from service.codecs.image_inputs import image_batch, takes_images
from service.core.validation import shape_text
from service.errors import InvalidInput
from service.repository.servable import ModelCard, Servable, Signature, TensorSpec

PLATFORM = "tensorflow_savedmodel"
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ("binary_tensor_data",)

# Wire datatype -> numpy dtype name, as in the protocol's table; BYTES holds Python bytes.
DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64",
    "BYTES": "object",
}
_BY_DTYPE = {dtype: datatype for datatype, dtype in DATATYPES.items()} | {"bfloat16": "BF16"}

_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
_INPUT_KEYS = {"name", "shape", "datatype", "parameters", "data"}
_OUTPUT_KEYS = {"name", "parameters"}
# Triton features that would change what an answer means; refused rather than ignored.
_MAX_RANK = 32   # numpy's own limit is 64; no model here comes near either
_UNSUPPORTED_PARAMETERS = ("classification", "shared_memory_region", "shared_memory_byte_size",
                           "shared_memory_offset")


@dataclass(frozen=True)
class RequestInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    parameters: dict[str, Any]
    data: Any = None              # JSON tensor data (flat or nested); None when sent as binary
    raw: bytes | None = None      # the tensor's bytes from the binary part of the body


@dataclass(frozen=True)
class RequestOutput:
    name: str
    binary: bool | None           # None: as the request's binary_data_output says


@dataclass(frozen=True)
class InferenceRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: tuple[RequestInput, ...]
    outputs: tuple[RequestOutput, ...]   # empty: every output of the signature

    @property
    def signature_name(self) -> str | None:
        """This server's own parameter: which SavedModel signature to run (default: serving_default)."""
        return self.parameters.get("signature_name") or None

    @property
    def binary_output(self) -> bool:
        return bool(self.parameters.get("binary_data_output", False))


# The door's way to read the request: the JSON header (parsed) and the binary part after it.
BodyReader = Callable[[], tuple[Any, bytes]]


class InferPayload:
    """A `/infer` request for the data plane: read when it asks for the signature (after the
    version is found), decoded against that signature, and answered in the same dialect."""

    def __init__(self, read_body: BodyReader, max_image_pixels: int) -> None:
        self._read_body = read_body
        self.max_image_pixels = max_image_pixels
        self.output_names: list[str] = []

    @cached_property
    def request(self) -> InferenceRequest:
        return parse_request(*self._read_body())

    @property
    def signature_name(self) -> str | None:
        return self.request.signature_name

    def decode(self, signature: Signature, servable: Servable) -> dict[str, np.ndarray]:
        self.output_names = requested_outputs(self.request, signature)  # before the model runs
        return decode_inputs(self.request, signature, servable.card, self.max_image_pixels)

    def encode(self, servable: Servable, outputs: dict[str, np.ndarray]) -> tuple[dict[str, Any], bytes]:
        return encode_response(servable, self.request, outputs, self.output_names)


# --------------------------------------------------------------------------- metadata


def datatype_of(dtype: str) -> str:
    """The wire datatype of a numpy dtype name ("float32" -> "FP32")."""
    return _BY_DTYPE.get(dtype, dtype.upper())


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": datatype_of(spec.dtype),
            "shape": [-1 if dim is None else dim for dim in spec.shape]}


def server_metadata(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(servable: Servable, versions: list[int]) -> dict[str, Any]:
    """The default signature's tensors, which are what an inference request without parameters runs."""
    signature = servable.signature(None)
    return {
        "name": servable.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [tensor_metadata(spec) for spec in signature.inputs.values()],
        "outputs": [tensor_metadata(spec) for spec in signature.outputs.values()],
    }


# --------------------------------------------------------------------------- requests


def parse_request(body: Any, binary: bytes = b"") -> InferenceRequest:
    """The inference request object; `binary` is what followed the JSON header, if anything."""
    if not isinstance(body, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(body).__name__}")
    refuse_unknown_keys(body, _REQUEST_KEYS, "request")
    # A field sent as null is refused like any other wrong type, rather than read as absent.
    request_id = body.get("id")
    if "id" in body and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    parameters = _parameters(body.get("parameters", {}), "request parameters")
    for key, kind, what in (("binary_data_output", bool, "a boolean"), ("signature_name", str, "a string")):
        if key in parameters and not isinstance(parameters[key], kind):
            raise InvalidInput(f"request parameter {key!r} must be {what}")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("'inputs' must be a non-empty list of input tensors")
    parsed: list[RequestInput] = []
    offset = 0
    for index, item in enumerate(inputs):
        tensor, size = _input(item, index, binary, offset)
        parsed.append(tensor)
        offset += size
    if offset != len(binary):
        raise InvalidInput(f"the inputs' binary_data_size values add up to {offset} bytes, "
                           f"but {len(binary)} bytes follow the JSON header")
    duplicates = sorted(name for name, count in Counter(t.name for t in parsed).items() if count > 1)
    if duplicates:
        raise InvalidInput(f"input(s) {', '.join(map(repr, duplicates))} given more than once")
    return InferenceRequest(request_id, parameters, tuple(parsed), _outputs(body.get("outputs", [])))


def split_binary(body: bytes, header_length: str) -> tuple[Any, bytes]:
    """A `binary_tensor_data` body: the JSON header (parsed) and the bytes after it."""
    if not header_length.isascii() or not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidInput(f"{HEADER_LENGTH} must be a byte count within the body's {len(body)} bytes")
    length = int(header_length)
    try:
        header = orjson.loads(body[:length])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON in the first {length} bytes ({HEADER_LENGTH}): {exc}") from None
    return header, body[length:]


def _input(item: Any, index: int, binary: bytes, offset: int) -> tuple[RequestInput, int]:
    name = _named(item, _INPUT_KEYS, f"inputs[{index}]", "name, shape, datatype and data")
    where = f"input {name!r}"
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        known = ", ".join(DATATYPES)
        raise InvalidInput(f"{where}: datatype {short_repr(datatype)} is not supported; use one of {known}")
    sent_shape = item.get("shape")
    shape = [_count(d) for d in sent_shape] if isinstance(sent_shape, list) else [None]
    if None in shape:
        raise InvalidInput(f"{where}: 'shape' must be a list of non-negative integers")
    if len(shape) > _MAX_RANK:
        raise InvalidInput(f"{where}: shape has {len(shape)} dimensions; at most {_MAX_RANK} are supported")
    parameters = _parameters(item.get("parameters", {}), f"{where} parameters")
    size = parameters.get("binary_data_size")
    has_data = "data" in item
    if size is None:
        if not has_data:
            raise InvalidInput(f"{where}: 'data' is missing")
        if not isinstance(item["data"], list):
            raise InvalidInput(f"{where}: 'data' must be a JSON array (flat, row-major, or nested)")
        if _deeper_than(item["data"], max(len(shape), 1)):
            raise InvalidInput(f"{where}: 'data' is nested deeper than its shape {shape}")
        return RequestInput(name, datatype, tuple(shape), parameters, data=item["data"]), 0
    if has_data:
        raise InvalidInput(f"{where}: give either 'data' or parameters.binary_data_size, not both")
    size = _count(size)
    if size is None:
        raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer")
    if offset + size > len(binary):
        raise InvalidInput(f"{where}: binary_data_size {size} runs past the end of the body")
    return RequestInput(name, datatype, tuple(shape), parameters, raw=binary[offset:offset + size]), size


def _count(value: Any) -> int | None:
    """A non-negative integer as JSON allows it to be written (2 or 2.0), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if value >= 0 else None


def _outputs(outputs: Any) -> tuple[RequestOutput, ...]:
    """An empty list, like no list, asks for every output."""
    if not isinstance(outputs, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
    parsed = []
    for index, item in enumerate(outputs):
        name = _named(item, _OUTPUT_KEYS, f"outputs[{index}]", "a name")
        parameters = _parameters(item.get("parameters", {}), f"output {name!r} parameters")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInput(f"output {name!r}: binary_data must be true or false")
        parsed.append(RequestOutput(name, binary))
    return tuple(parsed)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be an object")
    for key, item in value.items():
        if isinstance(item, dict | list) or item is None:
            raise InvalidInput(f"{where}: {key!r} must be a string, number or boolean")
        if key in _UNSUPPORTED_PARAMETERS:
            raise InvalidInput(f"{where}: {key!r} is not supported by this server")
    return value


def _named(item: Any, allowed: set[str], where: str, expected: str) -> str:
    """The name of one entry of `inputs` or `outputs`, an object with only `allowed` keys."""
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be an object with {expected}")
    refuse_unknown_keys(item, allowed, where)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}: 'name' must be a non-empty string")
    return name


# --------------------------------------------------------------------------- tensors


def requested_outputs(request: InferenceRequest, signature: Signature) -> list[str]:
    """Names of the outputs to return, in the order asked for; checked before running the model."""
    if not request.outputs:
        return list(signature.outputs)
    names = [output.name for output in request.outputs]
    unknown = [n for n in names if n not in signature.outputs]
    if unknown:
        raise InvalidInput(f"unknown output(s) {', '.join(map(repr, unknown))}; signature {signature.name!r} "
                           f"has {', '.join(signature.outputs)}")
    if len(set(names)) != len(names):
        raise InvalidInput("an output is requested more than once")
    return names


def decode_inputs(request: InferenceRequest, signature: Signature, card: ModelCard,
                  max_image_pixels: int) -> dict[str, np.ndarray]:
    """Each input tensor as an array of its declared shape; validation then checks them against the signature."""
    arrays = {}
    for tensor in request.inputs:
        spec = signature.inputs.get(tensor.name)
        if spec is None:
            raise InvalidInput(f"unknown input {tensor.name!r}; signature {signature.name!r} takes "
                               f"{', '.join(signature.inputs)}")
        arrays[tensor.name] = _decode(tensor, spec, card, max_image_pixels)
    return arrays


def _decode(tensor: RequestInput, spec: TensorSpec, card: ModelCard, max_image_pixels: int) -> np.ndarray:
    where = f"input {tensor.name!r}"
    expected = datatype_of(spec.dtype)
    count = math.prod(tensor.shape)
    if tensor.datatype == "BYTES" and expected != "BYTES":
        if not takes_images(card, tensor.name):
            raise InvalidInput(f"{where}: datatype BYTES does not match the model's {expected}")
        elements = _bytes_elements(tensor, count, where)
        if not tensor.shape or tensor.shape[0] != count:
            raise InvalidInput(f"{where}: shape {list(tensor.shape)} must be [n] or [n, 1] for n encoded images")
        return image_batch(elements, card, max_image_pixels, where)
    if tensor.datatype != expected:
        raise InvalidInput(f"{where}: datatype {tensor.datatype} does not match the model's {expected}")
    if expected == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = _bytes_elements(tensor, count, where)
    elif tensor.raw is not None:
        array = _from_raw(tensor.raw, spec.dtype, count, where)
    else:
        array = _from_json(tensor.data, spec, tensor.shape, where)
    return array.reshape(tensor.shape)


def _from_json(data: list[Any], spec: TensorSpec, shape: tuple[int, ...], where: str) -> np.ndarray:
    count = math.prod(shape)
    if not data:
        if count:
            raise InvalidInput(f"{where}: shape {list(shape)} needs {count} elements, got 0")
        return np.empty(0, dtype=spec.dtype)
    with np.errstate(over="ignore"):  # values too large for the dtype are refused below, as non-finite
        array = to_array(data, spec, f"{where} data")
    if array.size != count:
        raise InvalidInput(f"{where}: shape {list(shape)} needs {count} elements, got {array.size}")
    if array.ndim > 1 and array.shape != shape:
        raise InvalidInput(f"{where}: data is nested as {shape_text(array.shape)} but the shape is {list(shape)}; "
                           "send it flat or nested exactly as the shape")
    kind = np.dtype(spec.dtype).kind
    if kind in "iu":
        # to_array casts; integers are checked on the values as sent, so 1.5 or 300 (for UINT8) never wrap.
        sent = np.asarray(data)
        if sent.dtype.kind == "f":
            raise InvalidInput(f"{where}: expected integers for {datatype_of(spec.dtype)}, got fractional numbers")
        info = np.iinfo(spec.dtype)
        if sent.min() < info.min or sent.max() > info.max:
            raise InvalidInput(f"{where}: values must be within {info.min}..{info.max} for "
                               f"{datatype_of(spec.dtype)}")
    return array.reshape(-1)


def _from_raw(raw: bytes, dtype: str, count: int, where: str) -> np.ndarray:
    wire = np.dtype(dtype).newbyteorder("<")
    if len(raw) != count * wire.itemsize:
        raise InvalidInput(f"{where}: {len(raw)} bytes of binary data, but {count} elements of "
                           f"{datatype_of(dtype)} take {count * wire.itemsize}")
    if dtype == "bool":
        values = np.frombuffer(raw, np.uint8)
        if not np.isin(values, (0, 1)).all():
            raise InvalidInput(f"{where}: BOOL bytes must be 0 or 1")
        return values.astype(bool)
    return np.frombuffer(raw, dtype=wire).astype(dtype)


def _bytes_elements(tensor: RequestInput, count: int, where: str) -> list[bytes]:
    if tensor.raw is not None:
        elements = _split_length_prefixed(tensor.raw, where)
    else:
        as_base64 = tensor.parameters.get("content_type") == "base64"
        elements = [_element_bytes(item, as_base64, f"{where}, element {i}")
                    for i, item in enumerate(_leaves(tensor.data))]
    if len(elements) != count:
        raise InvalidInput(f"{where}: shape {list(tensor.shape)} needs {count} elements, got {len(elements)}")
    return elements


def _deeper_than(data: list[Any], limit: int) -> bool:
    """Whether lists nest more than `limit` levels; checked before any recursive conversion sees the data."""
    level = [data]
    for _ in range(limit):
        level = [item for value in level for item in value if isinstance(item, list)]
        if not level:
            return False
    return True


def _leaves(data: Any) -> list[Any]:
    """The non-list values of nested lists, in order; without recursion, so any nesting depth is safe."""
    leaves, stack = [], [iter([data])]
    while stack:
        item = next(stack[-1], stack)
        if item is stack:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            leaves.append(item)
    return leaves


def _element_bytes(item: Any, as_base64: bool, where: str) -> bytes:
    if isinstance(item, dict):
        return decode_b64(item, where)
    if not isinstance(item, str):
        raise InvalidInput(f'{where}: BYTES elements must be strings or {{"b64": "..."}}')
    if not as_base64:
        return item.encode()
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: not valid base64 (parameters.content_type is 'base64')") from None


def _split_length_prefixed(raw: bytes, where: str) -> list[bytes]:
    """Triton's BYTES serialization: each element as a 4-byte little-endian length, then its bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"{where}: binary BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"{where}: binary BYTES element {len(elements)} runs past the data")
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


# --------------------------------------------------------------------------- responses


def encode_response(servable: Servable, request: InferenceRequest, outputs: dict[str, np.ndarray],
                    names: list[str]) -> tuple[dict[str, Any], bytes]:
    """The response object and the binary part to append after it (empty for plain JSON)."""
    binary_by_name = {o.name: o.binary for o in request.outputs}
    encoded, chunks = [], []
    for name in names:
        array = np.asarray(outputs[name])
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype.name), "shape": list(array.shape)}
        binary = binary_by_name.get(name)
        if binary if binary is not None else request.binary_output:
            chunk = _raw_bytes(array)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry.update(_json_data(array))
        encoded.append(entry)
    body: dict[str, Any] = {"model_name": servable.name, "model_version": str(servable.version)}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = encoded
    return body, b"".join(chunks)


def _json_data(array: np.ndarray) -> dict[str, Any]:
    flat = array.reshape(-1)
    if array.dtype != object:
        return {"data": flat}
    items = [item if isinstance(item, bytes) else str(item).encode() for item in flat]
    try:
        return {"data": [item.decode() for item in items]}
    except UnicodeDecodeError:
        # Not text: JSON cannot carry raw bytes, so base64 with MLServer's content_type marker.
        return {"data": [base64.b64encode(item).decode() for item in items], "parameters": {"content_type": "base64"}}


def _raw_bytes(array: np.ndarray) -> bytes:
    if array.dtype == object:
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            parts += [struct.pack("<I", len(data)), data]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()

