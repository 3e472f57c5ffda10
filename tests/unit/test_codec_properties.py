"""Property-based tests (hypothesis) of the codecs: TensorFlow Serving's row and columnar formats,
b64 values, the v2 tensor format (JSON and binary), the image pipeline and the multipart parser.

Two kinds of property: round trips (what a client encodes, the codec decodes to the same array),
and robustness (any JSON, any bytes: the only exceptions are the server's own ServingErrors,
which the doors turn into 4xx answers; anything else would be a 500).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from urllib3 import encode_multipart_formdata

from preprocessing.card import pipeline_for
from service.codecs import tfserving, v2
from service.codecs.arrays import decode_b64, to_array
from service.codecs.images import prepare_image
from service.codecs.multipart import parse_multipart
from service.errors import InvalidInput, PayloadTooLarge, ServingError
from service.repository.servable import ModelCard, Servable, Signature, TensorSpec

ROOT = Path(__file__).resolve().parents[2]
FASHION_CARD = json.loads((ROOT / "models/fashion_mnist/1/assets.extra/model_card.json").read_text())
FASHION_PIPELINE = pipeline_for(FASHION_CARD["input"])
# No deadlines: on a busy 2-core machine a 1 ms example sometimes takes 300 ms.
FAST = settings(deadline=None)
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, nested a few levels: what a client could send as a body or a field.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
FLOATS = st.floats(-1e6, 1e6, allow_nan=False, width=32)


def signature(*specs: TensorSpec) -> Signature:
    return Signature("serving_default", {s.name: s for s in specs},
                     {"y": TensorSpec("y", "float32", (None, 1))}, function=lambda **_: {})


def card(input_name: str, kind: str = "tensor") -> ModelCard:
    return ModelCard(raw={"input": {"name": input_name}}, task="tensor", input_name=input_name, output_name="y",
                     input_kind=kind)


def servable(model_card: ModelCard) -> Servable:
    return Servable("m", 1, Path("m/1"), model_card, {})


def parse_predict(body, sig: Signature, input_name: str) -> tuple[dict[str, np.ndarray], str]:
    """A predict body decoded as the data plane has it decoded: the arrays and the format."""
    request = tfserving.PredictRequest(lambda: body, 40_000_000)
    return request.decode(sig, servable(card(input_name))), request.format


def encode_predict(outputs: dict[str, np.ndarray], fmt: str) -> dict:
    sent = {"instances": []} if fmt == tfserving.ROW else {"inputs": []}
    return tfserving.PredictRequest(lambda: sent, 40_000_000).encode(outputs)


FEATURES = TensorSpec("features", "float32", (None, 4))
PAIR = (TensorSpec("a", "float32", (None, 3)), TensorSpec("b", "int32", (None,)))


# --------------------------------------------------------------------------- JSON numbers to arrays

@FAST
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-2**63, 2**63 - 1),
                min_size=1, max_size=6),
       st.sampled_from(["float16", "float32", "float64"]))
def test_any_json_numbers_become_the_dtype_numpy_would_round_them_to_silently(numbers, dtype):
    """Values beyond the dtype's range come back infinite, for the core to refuse by name; numpy
    must not warn about them (the error state is set exactly when a value could overflow)."""
    with np.errstate(over="ignore"):
        expected = np.array(numbers, dtype=np.float64).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = to_array(orjson.loads(orjson.dumps(numbers)), TensorSpec("x", dtype, (None,)), "input 'x'")
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- TensorFlow Serving

@FAST
@given(st.lists(st.lists(FLOATS, min_size=4, max_size=4), min_size=1, max_size=8))
def test_row_and_columnar_formats_give_the_same_array(rows):
    sig = signature(FEATURES)
    by_rows, row_format = parse_predict({"instances": rows}, sig, "features")
    by_columns, column_format = parse_predict({"inputs": rows}, sig, "features")
    named, _ = parse_predict({"inputs": {"features": rows}}, sig, "features")
    assert (row_format, column_format) == (tfserving.ROW, tfserving.COLUMNAR)
    expected = np.array(rows, dtype=np.float32)
    for decoded in (by_rows, by_columns, named):
        assert decoded["features"].dtype == np.float32
        np.testing.assert_array_equal(decoded["features"], expected)


@FAST
@given(st.lists(st.tuples(st.lists(FLOATS, min_size=3, max_size=3), st.integers(-2**31, 2**31 - 1)),
                min_size=1, max_size=6))
def test_named_rows_and_named_columns_agree_for_several_inputs(pairs):
    sig = signature(*PAIR)
    rows = [{"a": a, "b": b} for a, b in pairs]
    columns = {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}
    by_rows, _ = parse_predict({"instances": rows}, sig, "a")
    by_columns, _ = parse_predict({"inputs": columns}, sig, "a")
    for name in ("a", "b"):
        np.testing.assert_array_equal(by_rows[name], by_columns[name])
    assert by_rows["b"].dtype == np.int32


@FAST
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(
    hnp.arrays(np.float32, st.tuples(st.just(n), st.integers(1, 3)), elements=FLOATS),
    hnp.arrays(np.float32, (n,), elements=FLOATS))))
def test_encoded_rows_are_the_columns_regrouped(pair):
    # Both outputs share the batch size by construction: assume() discarded most examples.
    first, second = pair
    outputs = {"scores": first, "top": second}
    rows = _wire(encode_predict(outputs, tfserving.ROW))
    columns = _wire(encode_predict(outputs, tfserving.COLUMNAR))
    assert [row["scores"] for row in rows["predictions"]] == columns["outputs"]["scores"]
    assert [row["top"] for row in rows["predictions"]] == columns["outputs"]["top"]
    single = encode_predict({"scores": first}, tfserving.ROW)
    assert single.keys() == {"predictions"}   # one output loses its name, as TensorFlow Serving does


def _wire(body: dict) -> dict:
    """As a client reads it: through JSON."""
    return orjson.loads(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))


@FAST
@given(JSON)
def test_any_predict_body_is_an_array_or_a_serving_error(body):
    for sig, name in ((signature(FEATURES), "features"), (signature(*PAIR), "a")):
        with contextlib.suppress(ServingError):
            parse_predict(body if isinstance(body, dict) else {"instances": body}, sig, name)


@FAST
@given(JSON, JSON)
def test_any_examples_body_is_a_matrix_or_a_serving_error(examples, context):
    iris = ModelCard(raw={}, task="classification", input_name="features", output_name="probabilities",
                     input_kind="features", feature_names=("a", "b"))
    try:
        examples_request = tfserving.ExamplesRequest(lambda: {"examples": examples, "context": context}, "classify")
        matrix = examples_request.decode(signature(FEATURES), servable(iris))["features"]
    except ServingError:
        return
    assert matrix.dtype == np.float32 and matrix.shape[1] == 2


# --------------------------------------------------------------------------- b64

@FAST
@given(st.binary(max_size=200))
def test_b64_round_trip(data):
    assert decode_b64({"b64": base64.b64encode(data).decode()}, "x") == data


@FAST
@given(JSON)
def test_any_b64_value_is_bytes_or_invalid_input(value):
    with contextlib.suppress(InvalidInput):
        assert isinstance(decode_b64(value, "x"), bytes)
    with contextlib.suppress(InvalidInput):
        decode_b64({"b64": value}, "x")


# --------------------------------------------------------------------------- Open Inference Protocol v2

V2_TYPES = {"FP32": (np.float32, FLOATS), "FP64": (np.float64, FLOATS),
            "INT32": (np.int32, st.integers(-2**31, 2**31 - 1)), "UINT8": (np.uint8, st.integers(0, 255)),
            "BOOL": (np.bool_, st.booleans())}


@st.composite
def v2_tensors(draw):
    datatype = draw(st.sampled_from(sorted(V2_TYPES)))
    dtype, elements = V2_TYPES[datatype]
    shape = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    return datatype, array


@FAST
@given(v2_tensors(), st.booleans())
def test_v2_json_and_binary_tensors_round_trip(tensor, binary):
    datatype, array = tensor
    spec = TensorSpec("x", str(array.dtype), (None, array.shape[1]))
    entry = {"name": "x", "shape": list(array.shape), "datatype": datatype}
    raw = b""
    if binary:
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entry["parameters"] = {"binary_data_size": len(raw)}
    else:
        entry["data"] = array.reshape(-1).tolist()
    header = orjson.dumps({"inputs": [entry]})
    parsed = v2.parse_request(*v2.split_binary(header + raw, str(len(header))))
    decoded = v2.decode_inputs(parsed, signature(spec), card("x"), 40_000_000)["x"]
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


@FAST
@given(JSON)
def test_any_v2_body_is_a_request_or_a_serving_error(body):
    sig = signature(FEATURES)
    for candidate in (body, {"inputs": body}, {"inputs": [body]}):
        try:
            request = v2.parse_request(candidate)
            v2.decode_inputs(request, sig, card("features"), 40_000_000)
        except ServingError:
            pass


@FAST
@given(st.binary(max_size=64), st.integers(0, 80))
def test_any_v2_binary_body_is_a_request_or_a_serving_error(body, header_length):
    with contextlib.suppress(ServingError):
        v2.parse_request(*v2.split_binary(body, str(header_length)))


# --------------------------------------------------------------------------- images

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "I", "I;16", "F", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa"]
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]


@st.composite
def image_files(draw) -> bytes | None:
    """A small random image of any mode, saved in any format that can hold that mode; None if none can."""
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    source = Image.frombytes("RGBA", (width, height), draw(st.binary(min_size=width * height * 4,
                                                                     max_size=width * height * 4)))
    mode = draw(st.sampled_from(MODES))
    image = None
    for start in ("RGBA", "RGB", "L"):
        try:
            image = source.convert(start).convert(mode)
            break
        except ValueError:
            continue
    if image is None:
        return None
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=draw(st.sampled_from(FORMATS)))
    except (OSError, ValueError, KeyError, TypeError):
        return None   # this format cannot store this mode: nothing a client could send
    return buffer.getvalue()


@SLOW
@given(image_files())
def test_any_small_image_of_any_mode_becomes_the_models_input(data):
    assume(data is not None)
    try:
        prepared = prepare_image(data, FASHION_PIPELINE, 40_000_000, "file 'any'")
    except ServingError:
        return   # e.g. a format Pillow wrote but reads back differently: refused with a 4xx
    assert prepared.array.shape == (28, 28)
    assert prepared.array.dtype == np.float32
    assert np.isfinite(prepared.array).all()
    assert prepared.array.min() >= 0 and prepared.array.max() <= 255


@SLOW
@given(image_files(), st.data())
def test_any_damaged_image_is_refused_with_a_serving_error(data, draw):
    assume(data is not None)
    cut = draw.draw(st.integers(0, len(data)))
    flips = draw.draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=6))
    damaged = bytearray(data[:cut] if draw.draw(st.booleans()) else data)
    for position, value in flips:
        if position < len(damaged):
            damaged[position] = value
    try:
        prepared = prepare_image(bytes(damaged), FASHION_PIPELINE, 40_000_000, "file 'damaged'")
    except ServingError:
        return
    assert prepared.array.shape == (28, 28)


# --------------------------------------------------------------------------- multipart

FIELD_NAMES = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="_-. "), min_size=1,
                      max_size=12).map(str.strip).filter(bool)


@FAST
@given(st.lists(st.tuples(FIELD_NAMES, st.none() | FIELD_NAMES, st.binary(max_size=300)), min_size=1, max_size=8))
def test_multipart_round_trip_with_urllib3(parts):
    fields = [(name, (filename, data, "application/octet-stream") if filename else data.decode("latin-1"))
              for name, filename, data in parts]
    body, content_type = encode_multipart_formdata(fields)
    parsed = parse_multipart(body, content_type, max_parts=len(parts))
    got = [(part.name, part.filename, part.data) for part in parsed]
    # urllib3 writes text fields as UTF-8: compare what each field carries on the wire.
    expected = [(name, filename or None, data if filename else data.decode("latin-1").encode())
                for name, filename, data in parts]
    assert got == expected


@FAST
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_multipart_round_trip_with_requests(files):
    import requests

    prepared = requests.Request("POST", "http://x/", files=[("image", (f"{i}.png", data)) for i, data in
                                                            enumerate(files)]).prepare()
    parsed = parse_multipart(prepared.body, prepared.headers["Content-Type"], max_parts=16)
    assert [(p.name, p.filename, p.data) for p in parsed] == [("image", f"{i}.png", d) for i, d in enumerate(files)]


@FAST
@given(st.lists(st.tuples(FIELD_NAMES, st.binary(max_size=50)), min_size=1, max_size=4), st.data())
def test_any_cut_or_damaged_multipart_body_is_a_serving_error(parts, draw):
    body, content_type = encode_multipart_formdata([(n, ("f", d)) for n, d in parts])
    cut = draw.draw(st.integers(0, len(body)))
    noise = draw.draw(st.binary(max_size=20))
    for candidate in (body[:cut], body[:cut] + noise + body[cut:]):
        with contextlib.suppress(InvalidInput, PayloadTooLarge):
            parse_multipart(candidate, content_type, max_parts=8)


@pytest.mark.parametrize("parts", [0, 1, 7, 8])
def test_multipart_part_limit(parts):
    body, content_type = encode_multipart_formdata([(f"f{i}", "x") for i in range(parts + 1)])
    if parts + 1 > 8:
        with pytest.raises(PayloadTooLarge):
            parse_multipart(body, content_type, max_parts=8)
    else:
        assert len(parse_multipart(body, content_type, max_parts=8)) == parts + 1
