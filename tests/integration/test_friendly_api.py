"""The friendly API (/api): cards, named features, image uploads, labels by name."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

IRIS_NAMED = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format=fmt)
    return buffer.getvalue()


def test_models_list_has_versions_states_and_summaries(client):
    body = client.get("/api/models").get_json()
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"linear", "iris", "fashion_mnist"}
    iris = by_name["iris"]
    assert iris["versions"] == [{"version": 1, "state": "AVAILABLE", "error": None}]
    assert iris["default_version"] == 1
    assert iris["task"] == "classification"
    assert iris["classes"] == ["setosa", "versicolor", "virginica"]
    assert iris["test_accuracy"] >= 0.93
    assert by_name["linear"]["task"] == "regression"


def test_card_has_schema_metrics_plots_and_a_runnable_example(client):
    card = client.get("/api/models/iris").get_json()
    assert card["served_version"] == 1
    assert [f["name"] for f in card["input"]["features"]] == list(IRIS_NAMED)
    assert card["evaluation"]["accuracy"] >= 0.93
    example = card["example_request"]
    answer = client.post(example["path"], json=example["body"])
    assert answer.status_code == 200
    for url in card["plots"].values():
        png = client.get(url)
        assert png.status_code == 200
        assert png.data.startswith(b"\x89PNG")
    assert client.get("/api/models/iris/versions/1").get_json()["version"] == 1


def test_plot_route_serves_only_the_cards_files(client):
    assert client.get("/api/models/iris/versions/1/plots/model_card.json").status_code == 404
    assert client.get("/api/models/iris/versions/1/plots/..%2Fsaved_model.pb").status_code == 404


def test_named_features(client):
    body = client.post("/api/models/iris/predict", json={"instances": [IRIS_NAMED]}).get_json()
    assert body["model"] == "iris"
    assert body["version"] == 1
    (prediction,) = body["predictions"]
    assert prediction["label"] == "setosa"
    assert set(prediction["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert prediction["probability"] == max(prediction["probabilities"].values())
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_raw_arrays_give_the_same_answer(client):
    named = client.post("/api/models/iris/predict", json={"instances": [IRIS_NAMED]}).get_json()
    raw = client.post("/api/models/iris/predict", json={"instances": [list(IRIS_NAMED.values())]}).get_json()
    assert named["predictions"] == raw["predictions"]


def test_regression_answers_the_value(client):
    body = client.post("/api/models/linear/predict", json={"instances": [{"x": 10}]}).get_json()
    assert body["predictions"][0]["value"] == pytest.approx(19.0, abs=0.1)


def test_upload_of_test_images_equals_their_json_pixels(client, fashion_test_slice):
    images, _ = fashion_test_slice
    batch = images[:16]
    from_json = client.post("/api/models/fashion_mnist/predict", json={"instances": batch.tolist()}).get_json()
    files = [(io.BytesIO(encode(img)), f"test{i}.png") for i, img in enumerate(batch)]
    uploaded = client.post("/api/models/fashion_mnist/predict", data={"image": files},
                           content_type="multipart/form-data").get_json()
    assert [p["file"] for p in uploaded["predictions"]] == [f"test{i}.png" for i in range(16)]
    for got, want in zip(uploaded["predictions"], from_json["predictions"], strict=True):
        assert got["probabilities"] == want["probabilities"]
        assert got["label"] == want["label"]
        assert "label_es" in got


def test_many_test_images_upload_parity(client, fashion_test_slice):
    images, _ = fashion_test_slice
    for start in range(0, 200, 16):
        batch = images[start:start + 16]
        from_json = client.post("/api/models/fashion_mnist/predict", json={"instances": batch.tolist()}).get_json()
        files = [(io.BytesIO(encode(img)), f"{start + i}.png") for i, img in enumerate(batch)]
        uploaded = client.post("/api/models/fashion_mnist/predict", data={"image": files},
                               content_type="multipart/form-data").get_json()
        assert [p["probabilities"] for p in uploaded["predictions"]] == \
               [p["probabilities"] for p in from_json["predictions"]]


def test_raw_image_body_and_preview(client, fashion_test_slice):
    images, _ = fashion_test_slice
    response = client.post("/api/models/fashion_mnist/predict?preview=1&filename=boot.png",
                           data=encode(images[0]), content_type="image/png")
    assert response.status_code == 200
    (prediction,) = response.get_json()["predictions"]
    assert prediction["file"] == "boot.png"
    assert prediction["preview"].startswith("data:image/png;base64,")
    assert prediction["label"] == "Ankle boot"


@pytest.mark.parametrize(("kwargs", "status", "fragment"), [
    ({"json": {"instances": [{"sepal_length_cm": 5.1}]}}, 400, "missing"),
    ({"json": {"instances": [{**IRIS_NAMED, "colour": 1}]}}, 400, "unknown colour"),
    ({"json": {"rows": []}}, 400, "instances"),
    ({"json": {"instances": []}}, 400, "non-empty"),
    ({"json": {"instances": [{**IRIS_NAMED, "sepal_width_cm": "wide"}]}}, 400, "expected numbers"),
    ({"data": b"a=1", "content_type": "application/xml"}, 415, "application/xml"),
    ({"data": encode(np.zeros((28, 28))), "content_type": "image/png"}, 415, "not images"),
])
def test_iris_bad_requests(client, kwargs, status, fragment):
    response = client.post("/api/models/iris/predict", **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert fragment in response.get_json()["error"]


def test_upload_errors(client):
    not_image = client.post("/api/models/fashion_mnist/predict",
                            data={"image": (io.BytesIO(b"hello, not an image"), "a.txt")},
                            content_type="multipart/form-data")
    assert not_image.status_code == 415
    assert "not an image" in not_image.get_json()["error"]
    truncated = client.post("/api/models/fashion_mnist/predict", data=encode(np.zeros((28, 28)))[:40],
                            content_type="image/png")
    assert truncated.status_code == 400
    wrong_field = client.post("/api/models/fashion_mnist/predict",
                              data={"file": (io.BytesIO(encode(np.zeros((28, 28)))), "a.png")},
                              content_type="multipart/form-data")
    assert wrong_field.status_code == 400
    assert "'image'" in wrong_field.get_json()["error"]
    too_many = client.post("/api/models/fashion_mnist/predict",
                           data={"image": [(io.BytesIO(encode(np.zeros((28, 28)))), f"{i}.png") for i in range(17)]},
                           content_type="multipart/form-data")
    assert too_many.status_code == 413


def test_unknown_model_version_label(client):
    assert client.get("/api/models/nosuch").status_code == 404
    assert client.get("/api/models/iris/versions/9").status_code == 404
    assert client.post("/api/models/iris/labels/canary/predict", json={"instances": [IRIS_NAMED]}).status_code == 404
