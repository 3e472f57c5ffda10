"""End to end: real gunicorn with its workers on a free port, spoken to over HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image

pytestmark = pytest.mark.slow


def test_iris_json_over_http(server):
    response = requests.post(f"{server.url}/api/models/iris/predict", json={"instances": [
        {"sepal_length_cm": 6.7, "sepal_width_cm": 3.0, "petal_length_cm": 5.2, "petal_width_cm": 2.3},
    ]}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["predictions"][0]["label"] == "virginica"


def test_tf_serving_call_and_image_upload_agree(server, fashion_test_slice):
    images, labels = fashion_test_slice
    pixels = images[:4]
    tfs = requests.post(f"{server.url}/v1/models/fashion_mnist:predict",
                        json={"instances": pixels.tolist()}, timeout=10).json()["predictions"]
    files = []
    for i, img in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(img, mode="L").save(buffer, format="PNG")
        files.append(("image", (f"{i}.png", buffer.getvalue(), "image/png")))
    upload = requests.post(f"{server.url}/api/models/fashion_mnist/predict", files=files, timeout=10).json()
    assert [p["probabilities"] for p in upload["predictions"]] == [
        dict(zip(list(upload["predictions"][0]["probabilities"]), row, strict=True)) for row in tfs
    ]
    assert [int(np.argmax(row)) for row in tfs] == [int(v) for v in labels[:4]]


def test_server_keeps_serving_after_bad_requests(server):
    bad = [
        (requests.post(f"{server.url}/v1/models/iris:predict", data=b"{not json", timeout=10),
         400, "malformed JSON"),
        (requests.post(f"{server.url}/v1/models/iris:predict", json={"instances": [[1, 2]]}, timeout=10),
         400, "each instance must have shape [4], got [2]"),
        (requests.post(f"{server.url}/api/models/fashion_mnist/predict", data=b"GIF89a", timeout=10,
                       headers={"Content-Type": "image/gif"}), 400, "GIF image is truncated or corrupt"),
        (requests.get(f"{server.url}/v1/models/../../etc/passwd", timeout=10), 404, "URL was not found"),
    ]
    for response, status, fragment in bad:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}
        assert fragment in response.json()["error"]
    ok = requests.post(f"{server.url}/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=10)
    assert ok.status_code == 200


def test_body_over_the_limit_is_refused_from_content_length(gunicorn_factory):
    small = gunicorn_factory({"MAX_BODY_BYTES": "1000"})
    response = requests.post(f"{small.url}/v1/models/iris:predict", data=b"x" * 5000,
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413
    assert "error" in response.json()
