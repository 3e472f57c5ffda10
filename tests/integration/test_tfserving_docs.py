"""The end-to-end example of TensorFlow Serving's REST API documentation, replayed.

The docs use the toy model half_plus_three (y = 0.5x + 3), version 123, with no card of
ours: we build the same SavedModel with plain TensorFlow and expect the documented
bodies, key for key (https://www.tensorflow.org/tfx/serving/api_rest#example).
"""

from __future__ import annotations

import os
import time

import pytest
import tensorflow as tf

from service.app import create_app
from service.config import Config

DOC_STATUS = {
    "model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}
DOC_PREDICT_REQUEST = {"instances": [1.0, 2.0, 5.0]}
DOC_PREDICT_RESPONSE = {"predictions": [3.5, 4.0, 5.5]}


class HalfPlusThree(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = tf.Variable(0.5)
        self.b = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": self.a * x + self.b}


@pytest.fixture(scope="module")
def docs_client(tmp_path_factory):
    base = tmp_path_factory.mktemp("docs_models")
    module = HalfPlusThree()
    tf.saved_model.save(module, str(base / "half_plus_three" / "123"), signatures={"serving_default": module.serve})
    # The source serves a version only once its files have settled; these were written just now.
    past = time.time() - 60
    for path in base.rglob("*"):
        os.utime(path, (past, past))
    return create_app(Config(model_base_path=base, poll_seconds=0), watch=False).test_client()


def test_documented_status(docs_client):
    assert docs_client.get("/v1/models/half_plus_three").get_json() == DOC_STATUS


def test_documented_predict(docs_client):
    response = docs_client.post("/v1/models/half_plus_three:predict", json=DOC_PREDICT_REQUEST)
    assert response.status_code == 200
    assert response.get_json() == DOC_PREDICT_RESPONSE


def test_documented_not_found(docs_client):
    response = docs_client.post("/v1/models/half:predict", json={"instances": [1.0, 5.0]})
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.get_json()) == {"error"}


def test_model_without_card_describes_itself(docs_client):
    metadata = docs_client.get("/v1/models/half_plus_three/metadata").get_json()
    inputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert inputs["x"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    card = docs_client.get("/api/models/half_plus_three").get_json()
    assert card["served_version"] == 123
    predicted = docs_client.post("/api/models/half_plus_three/predict", json={"instances": [1.0]}).get_json()
    assert predicted["version"] == 123
    assert predicted["predictions"][0]["outputs"]["y"] == 3.5
