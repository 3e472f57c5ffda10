"""TensorFlow Serving's REST API (/v1) through the Flask test client, against real SavedModels."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def direct(models_dir, name, inputs, signature="serving_default"):
    loaded = tf.saved_model.load(str(models_dir / name / "1"))
    fn = loaded.signatures[signature]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v, tf.float32) for k, v in inputs.items()}).items()}


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_status_has_tf_serving_structure(client):
    response = client.get("/v1/models/iris")
    assert response.status_code == 200
    assert response.get_json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]}
    assert client.get("/v1/models/iris/versions/1").get_json() == response.get_json()


def test_metadata_is_the_signature_def_map(client):
    body = client.get("/v1/models/fashion_mnist/versions/1/metadata").get_json()
    assert body["model_spec"] == {"name": "fashion_mnist", "signature_name": "", "version": "1"}
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "top_class", "__saved_model_init_op"} <= set(defs)
    image = defs["serving_default"]["inputs"]["image"]
    assert image["dtype"] == "DT_FLOAT"
    assert image["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "28", "name": ""}, {"size": "28", "name": ""}],
        "unknown_rank": False,
    }
    assert image["name"] == "serving_default_image:0"
    assert defs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert set(defs["serving_default"]["outputs"]) == {"probabilities"}


def test_predict_row_format_matches_the_signature(client, models_dir):
    rows = [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]
    response = client.post("/v1/models/iris:predict", json={"instances": rows})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"predictions"}
    expected = direct(models_dir, "iris", {"features": np.array(rows)})["probabilities"]
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6, atol=1e-7)
    assert [int(np.argmax(p)) for p in body["predictions"]] == [0, 2]


def test_predict_columnar_and_named_forms_agree(client):
    row = client.post("/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).get_json()["predictions"]
    named_row = client.post("/v1/models/iris:predict", json={"instances": [{"features": IRIS_ROW}]}).get_json()
    columnar = client.post("/v1/models/iris:predict", json={"inputs": [IRIS_ROW]}).get_json()
    named_columnar = client.post("/v1/models/iris:predict", json={"inputs": {"features": [IRIS_ROW]}}).get_json()
    assert named_row["predictions"] == row
    assert columnar == {"outputs": row}
    assert named_columnar == {"outputs": row}


def test_other_signature_with_several_outputs(client):
    rows = [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]
    body = client.post("/v1/models/iris/versions/1:predict",
                       json={"signature_name": "top_class", "instances": rows}).get_json()
    assert [set(p) for p in body["predictions"]] == [{"class_id", "probability"}] * 2
    assert [p["class_id"] for p in body["predictions"]] == [0, 2]
    columnar = client.post("/v1/models/iris:predict",
                           json={"signature_name": "top_class", "inputs": rows}).get_json()
    assert columnar["outputs"]["class_id"] == [0, 2]
    assert len(columnar["outputs"]["probability"]) == 2


def test_b64_image_equals_its_pixels(client, fashion_test_slice):
    images, _ = fashion_test_slice
    pixels = client.post("/v1/models/fashion_mnist:predict",
                         json={"instances": images[:3].tolist()}).get_json()["predictions"]
    encoded = [{"b64": base64.b64encode(png_bytes(img)).decode()} for img in images[:3]]
    as_b64 = client.post("/v1/models/fashion_mnist:predict", json={"instances": encoded}).get_json()
    assert as_b64["predictions"] == pixels
    # Same batch, same kernels: identical numbers (TensorFlow's kernels differ by batch size).
    single = client.post("/v1/models/fashion_mnist:predict", json={"instances": images[:1].tolist()}).get_json()
    named = client.post("/v1/models/fashion_mnist:predict",
                        json={"instances": [{"image": encoded[0]}]}).get_json()
    assert named == single


def test_classify_and_regress(client):
    body = client.post("/v1/models/iris:classify", json={
        "context": {"sepal_width_cm": 3.5},
        "examples": [{"sepal_length_cm": 5.1, "petal_length_cm": 1.4, "petal_width_cm": 0.2}],
    }).get_json()
    (result,) = body["result"]
    assert [label for label, _ in result] == ["setosa", "versicolor", "virginica"]
    assert max(result, key=lambda pair: pair[1])[0] == "setosa"
    assert sum(score for _, score in result) == pytest.approx(1.0, abs=1e-5)
    regress = client.post("/v1/models/linear:regress", json={"examples": [{"x": 10.0}, {"x": [0.0]}]}).get_json()
    assert regress["result"][0] == pytest.approx(19.0, abs=0.1)
    assert regress["result"][1] == pytest.approx(-1.0, abs=0.1)


@pytest.mark.parametrize(("path", "body", "status", "fragment"), [
    ("/v1/models/iris:predict", {"instances": [IRIS_ROW], "inputs": [IRIS_ROW]}, 400, "exactly one"),
    ("/v1/models/iris:predict", {"rows": [IRIS_ROW]}, 400, "unknown key"),
    ("/v1/models/iris:predict", {}, 400, "exactly one"),
    ("/v1/models/iris:predict", {"instances": []}, 400, "empty"),
    ("/v1/models/iris:predict", {"instances": [[1, 2, 3, 4], [1, 2, 3]]}, 400, "instance 1"),
    ("/v1/models/iris:predict", {"instances": [[1, 2, 3]]}, 400, "shape [4], got [3]"),
    ("/v1/models/iris:predict", {"instances": [[1, 2, "x", 4]]}, 400, "position [2]"),
    ("/v1/models/iris:predict", {"instances": [[True, False, True, False]]}, 400, "expected numbers"),
    ("/v1/models/iris:predict", {"instances": [[5.1, False, 1.4, 0.2]]}, 400, "got bool False"),
    ("/v1/models/iris:predict", {"instances": [{"feature": IRIS_ROW}]}, 400, "missing features"),
    ("/v1/models/iris:predict", {"instances": [IRIS_ROW] * 257}, 413, "limit is 256"),
    ("/v1/models/iris:predict", {"instances": [IRIS_ROW], "signature_name": "nope"}, 404, "no signature 'nope'"),
    ("/v1/models/fashion_mnist:predict", {"instances": [[[300] * 28] * 28]}, 400, "0..255"),
    ("/v1/models/fashion_mnist:predict", {"instances": [[[-1] * 28] * 28]}, 400, "0..255"),
    ("/v1/models/nosuch:predict", {"instances": [IRIS_ROW]}, 404, "nosuch"),
    ("/v1/models/iris/versions/7:predict", {"instances": [IRIS_ROW]}, 404, "7"),
    ("/v1/models/iris/versions/x:predict", {"instances": [IRIS_ROW]}, 404, "positive integer"),
    ("/v1/models/iris/labels/stable:predict", {"instances": [IRIS_ROW]}, 404, "stable"),
    ("/v1/models/linear:classify", {"examples": [{"x": 1.0}]}, 400, "not a classification"),
    ("/v1/models/iris:regress", {"examples": [{"x": 1.0}]}, 400, "not a regression"),
    ("/v1/models/iris:classify", {"examples": [{"sepal_length_cm": 1}]}, 400, "missing"),
    ("/v1/models/iris:predict", [IRIS_ROW], 400, "JSON object"),
])
def test_bad_requests_get_json_errors(client, path, body, status, fragment):
    response = client.post(path, json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    message = response.get_json()["error"]
    assert fragment in message


@pytest.mark.parametrize(("data", "fragment"), [
    (b'{"instances": [[1, 2, 3, 4]', "malformed JSON"),
    (b'{"instances": [[NaN, 2, 3, 4]]}', "NaN"),
    (b'{"instances": [[Infinity, 2, 3, 4]]}', "Infinity"),
    (b'{"instances": [[1e309, 2, 3, 4]]}', "infinity"),
    (b"", "empty"),
])
def test_malformed_bodies(client, data, fragment):
    response = client.post("/v1/models/iris:predict", data=data, content_type="application/json")
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]


def test_deeply_nested_lists_are_a_400(client):
    deep: list = [1.0]
    for _ in range(900):
        deep = [deep]
    response = client.post("/v1/models/iris:predict", json={"instances": deep})
    assert response.status_code == 400
    assert "nested too deeply" in response.get_json()["error"]


def test_curl_default_content_type_is_accepted_and_images_are_not(client):
    # `curl -d` sends application/x-www-form-urlencoded, as TensorFlow Serving's docs do.
    ok = client.post("/v1/models/iris:predict", data=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
                     content_type="application/x-www-form-urlencoded")
    assert ok.status_code == 200
    refused = client.post("/v1/models/iris:predict", data=b"\x89PNG", content_type="image/png")
    assert refused.status_code == 415


def test_unknown_routes_and_methods_answer_json(client):
    missing = client.get("/v1/models/nosuch")
    assert missing.status_code == 404
    assert "nosuch" in missing.get_json()["error"]
    wrong_method = client.get("/v1/models/iris:predict")
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert wrong_method.get_json() == {"error": "The method is not allowed for the requested URL."}
