"""The Open Inference Protocol (/v2) through the Flask test client: answers and error cases
(Triton's own client against a real gunicorn: tests/e2e/test_v2_tritonclient.py)."""

from __future__ import annotations

import base64
import functools
import json
import struct

import numpy as np
import pytest

from tests.helpers.savedmodel import IRIS_ROWS, TOLERANCE, direct, png

# --------------------------------------------------------------------------- through the Flask test client


def iris_input(**changes):
    return {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[0].tolist(), **changes}


def infer(client, body, model="iris"):
    return client.post(f"/v2/models/{model}/infer", json=body)


def test_nested_and_flat_data_agree(client):
    flat = infer(client, {"inputs": [iris_input(shape=[2, 4], data=IRIS_ROWS.reshape(-1).tolist())]})
    nested = infer(client, {"inputs": [iris_input(shape=[2, 4], data=IRIS_ROWS.tolist())]})
    assert flat.status_code == nested.status_code == 200
    assert flat.get_json() == nested.get_json()
    body = flat.get_json()
    assert "id" not in body
    (output,) = body["outputs"]
    assert output["shape"] == [2, 3]
    assert len(output["data"]) == 6
    expected = direct("iris", {"features": IRIS_ROWS})["probabilities"]
    np.testing.assert_allclose(np.array(output["data"], np.float32).reshape(2, 3), expected, **TOLERANCE)


def test_base64_image_in_json(client, fashion_test_slice):
    images, _ = fashion_test_slice
    encoded = base64.b64encode(png(images[0])).decode()
    as_param = infer(client, {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                          "parameters": {"content_type": "base64"}, "data": [encoded]}]},
                     "fashion_mnist")
    as_object = infer(client, {"inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES",
                                           "data": [[{"b64": encoded}]]}]}, "fashion_mnist")
    as_pixels = infer(client, {"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32",
                                           "data": images[0].reshape(-1).tolist()}]}, "fashion_mnist")
    assert as_param.status_code == as_object.status_code == as_pixels.status_code == 200
    assert as_param.get_json()["outputs"] == as_object.get_json()["outputs"] == as_pixels.get_json()["outputs"]


def test_binary_tensor_data_extension(client):
    header = json.dumps({
        "inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32",
                    "parameters": {"binary_data_size": IRIS_ROWS.nbytes}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }).encode()
    response = client.post("/v2/models/iris/infer", data=header + IRIS_ROWS.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header))},
                           content_type="application/octet-stream")
    assert response.status_code == 200
    length = int(response.headers["Inference-Header-Content-Length"])
    meta = json.loads(response.data[:length])
    (output,) = meta["outputs"]
    assert output["parameters"] == {"binary_data_size": 2 * 3 * 4}
    values = np.frombuffer(response.data[length:], dtype="<f4").reshape(output["shape"])
    np.testing.assert_allclose(values, direct("iris", {"features": IRIS_ROWS})["probabilities"], **TOLERANCE)


@pytest.mark.parametrize(("path", "fragment"), [
    ("/v2/models/no_such_model", "not found"),
    ("/v2/models/iris/versions/7", "no version 7"),
    ("/v2/models/iris/versions/latest", "positive integer"),
    ("/v2/models/no_such_model/ready", "not found"),
    ("/v2/models/iris/versions/7/ready", "no version 7"),
])
def test_unknown_model_or_version_is_404(client, path, fragment):
    response = client.get(path)
    assert response.status_code == 404
    assert fragment in response.get_json()["error"]


def test_unknown_model_or_version_on_infer_is_404(client):
    body = {"inputs": [iris_input()]}
    assert client.post("/v2/models/no_such_model/infer", json=body).status_code == 404
    missing = client.post("/v2/models/iris/versions/3/infer", json=body)
    assert missing.status_code == 404
    assert set(missing.get_json()) == {"error"}


@pytest.mark.parametrize(("body", "fragment"), [
    ({"inputs": [iris_input(shape=[1, 5], data=[1, 2, 3, 4, 5])]}, "each instance must have shape [4], got [5]"),
    ({"inputs": [iris_input(shape=[4], data=[1, 2, 3, 4])]}, "each instance must have shape [4], got []"),
    ({"inputs": [iris_input(datatype="INT32", data=[1, 2, 3, 4])]}, "datatype INT32 does not match the model's FP32"),
    ({"inputs": [iris_input(datatype="FLOAT")]}, "datatype 'FLOAT' is not supported"),
    ({"inputs": [iris_input(datatype={})]}, "datatype {} is not supported"),
    ({"inputs": [iris_input(shape=[1, 4.5])]}, "non-negative integers"),
    ({"inputs": [iris_input(shape=[1, True, 4])]}, "non-negative integers"),
    ({"inputs": [iris_input(datatype="BYTES", data=["a", "b", "c", "d"])]}, "datatype BYTES does not match"),
    ({"inputs": [iris_input(data=[1, 2, 3])]}, "shape [1, 4] needs 4 elements, got 3"),
    ({"inputs": [iris_input(shape=[2, 4])]}, "shape [2, 4] needs 8 elements, got 4"),
    ({"inputs": [iris_input(shape=[2, 2], data=[[1, 2, 3, 4]])]}, "nested as [1, 4] but the shape is [2, 2]"),
    ({"inputs": [iris_input(data=[1, 2, "x", 4])]}, "expected numbers, got str"),
    ({"inputs": [iris_input(data=[True, False, True, True])]}, "expected numbers, got bool"),
    ({"inputs": [iris_input(data=[1, 2, 3, 1e39])]}, "within the range of float32"),
    ({"inputs": [iris_input(shape=[1, -4])]}, "non-negative integers"),
    ({"inputs": [iris_input(shape=[1] * 40, data=[1])]}, "at most 32 are supported"),
    ({"inputs": [iris_input(data=functools.reduce(lambda d, _: [d], range(900), 1.0))]}, "nested deeper than"),
    ({"inputs": [iris_input(data=None)]}, "'data' must be a JSON array"),
    ({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32"}]}, "'data' is missing"),
    ({"inputs": []}, "'inputs' must be a non-empty list"),
    ({"outputs": [{"name": "probabilities"}]}, "'inputs' must be a non-empty list"),
    ({"inputs": [iris_input(name="petals")]}, "unknown input 'petals'"),
    ({"inputs": [iris_input(), iris_input()]}, "given more than once"),
    ({"inputs": [iris_input()], "outputs": [{"name": "logits"}]}, "unknown output(s) 'logits'"),
    ({"inputs": [iris_input()], "id": 42}, "'id' must be a string"),
    ({"inputs": [iris_input()], "id": None}, "'id' must be a string"),
    ({"inputs": [iris_input()], "outputs": None}, "'outputs' must be a list"),
    ({"inputs": [iris_input()], "parameters": None}, "request parameters must be an object"),
    ({"inputs": [iris_input(name="")]}, "'name' must be a non-empty string"),
    ({"inputs": [iris_input()], "parameters": {"signature_name": 3}}, "must be a string"),
    ({"inputs": [iris_input()], "parameters": {"nested": {"a": 1}}}, "must be a string, number or boolean"),
    ({"inputs": [iris_input()], "model": "iris"}, "unknown key(s) 'model'"),
    ([iris_input()], "must be a JSON object"),
])
def test_invalid_requests_are_400(client, body, fragment):
    response = infer(client, body)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()) == {"error"}
    assert fragment in response.get_json()["error"]


def test_shape_may_be_written_with_integral_floats(client):
    # JSON Schema counts 4.0 as an integer, so generated clients may send it.
    assert infer(client, {"inputs": [iris_input(shape=[1.0, 4.0])]}).status_code == 200


def test_empty_outputs_list_means_every_output(client):
    every = infer(client, {"inputs": [iris_input()], "outputs": []})
    assert every.status_code == 200
    assert [o["name"] for o in every.get_json()["outputs"]] == ["probabilities"]


def test_unknown_signature_is_404(client):
    response = infer(client, {"inputs": [iris_input()], "parameters": {"signature_name": "nope"}})
    assert response.status_code == 404
    assert "no signature 'nope'" in response.get_json()["error"]


def test_malformed_and_non_json_bodies(client):
    broken = client.post("/v2/models/iris/infer", data=b'{"inputs": [', content_type="application/json")
    assert broken.status_code == 400
    assert "malformed JSON" in broken.get_json()["error"]
    nan = client.post("/v2/models/iris/infer", content_type="application/json",
                      data=b'{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", '
                           b'"data": [NaN, 1, 2, 3]}]}')
    assert nan.status_code == 400
    assert client.post("/v2/models/iris/infer", data=b"x", content_type="image/png").status_code == 415
    assert client.post("/v2/models/iris/infer").status_code == 400


def test_not_an_image_in_bytes(client):
    response = infer(client, {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]},
                     "fashion_mnist")
    assert response.status_code == 415
    assert "not an image" in response.get_json()["error"]


@pytest.mark.parametrize(("header", "body", "fragment"), [
    ("abc", b"{}", "must be a byte count"),
    ("500", b"{}", "must be a byte count"),
    ("2", b"{}xx", "add up to 0 bytes, but 2 bytes follow"),
])
def test_bad_binary_framing_is_400(client, header, body, fragment):
    if fragment.startswith("add up"):
        body = json.dumps({"inputs": [iris_input()]}).encode()
        header, body = str(len(body)), body + b"xx"
    response = client.post("/v2/models/iris/infer", data=body, headers={"Inference-Header-Content-Length": header})
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]


def test_binary_size_must_match_the_shape(client):
    header = json.dumps({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 12}}]}).encode()
    response = client.post("/v2/models/iris/infer", data=header + b"\0" * 12,
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400
    assert "12 bytes of binary data, but 4 elements of FP32 take 16" in response.get_json()["error"]


def test_binary_bytes_elements_are_length_prefixed(client, fashion_test_slice):
    images, _ = fashion_test_slice
    files = [png(image) for image in images[:2]]
    raw = b"".join(struct.pack("<I", len(f)) + f for f in files)
    header = json.dumps({"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    response = client.post("/v2/models/fashion_mnist/infer", data=header + raw,
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200
    assert response.get_json()["outputs"][0]["shape"] == [2, 10]


def test_too_many_instances_is_413(client):
    rows = np.ones((300, 4), np.float32)
    response = infer(client, {"inputs": [iris_input(shape=[300, 4], data=rows.reshape(-1).tolist())]})
    assert response.status_code == 413
