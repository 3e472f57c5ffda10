"""The Open Inference Protocol (/v2) through Triton's own HTTP client, against a real gunicorn."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.helpers.savedmodel import IRIS_ROWS, TOLERANCE, direct, png


def tensor(array: np.ndarray, name: str, binary: bool = False) -> triton.InferInput:
    datatype = "BYTES" if array.dtype == object else {"float32": "FP32", "int32": "INT32"}[array.dtype.name]
    infer_input = triton.InferInput(name, list(array.shape), datatype)
    infer_input.set_data_from_numpy(array, binary_data=binary)
    return infer_input


@pytest.fixture(scope="module")
def triton_client(server):
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), connection_timeout=30,
                                          network_timeout=60)
    yield client
    client.close()


# --------------------------------------------------------------------------- with tritonclient, over gunicorn


@pytest.mark.slow
def test_health_and_server_metadata(triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    metadata = triton_client.get_server_metadata()
    assert metadata["name"] == "keras-serving"
    assert isinstance(metadata["version"], str) and metadata["version"]
    assert metadata["extensions"] == ["binary_tensor_data"]


@pytest.mark.slow
def test_model_metadata_and_readiness(triton_client):
    metadata = triton_client.get_model_metadata("fashion_mnist")
    assert metadata == {
        "name": "fashion_mnist",
        "versions": ["1", "2"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert triton_client.get_model_metadata("iris", model_version="1")["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert triton_client.is_model_ready("iris")
    assert triton_client.is_model_ready("iris", model_version="1")
    assert not triton_client.is_model_ready("iris", model_version="7")
    assert not triton_client.is_model_ready("no_such_model")


@pytest.mark.slow
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_iris_matches_the_savedmodel(triton_client, binary):
    result = triton_client.infer("iris", [tensor(IRIS_ROWS[:1], "features", binary)], request_id="iris-1")
    expected = direct("iris", {"features": IRIS_ROWS[:1]})["probabilities"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, **TOLERANCE)
    response = result.get_response()
    assert response["model_name"] == "iris"
    assert response["model_version"] == "1"
    assert response["id"] == "iris-1"
    assert response["outputs"][0]["shape"] == [1, 3]
    assert response["outputs"][0]["datatype"] == "FP32"


@pytest.mark.slow
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_fashion_batch_matches_the_savedmodel(triton_client, fashion_test_slice, binary):
    images, labels = fashion_test_slice
    batch = images[:32].astype(np.float32)
    result = triton_client.infer("fashion_mnist", [tensor(batch, "image", binary)], model_version="1",
                                 outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary)])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (32, 10)
    np.testing.assert_allclose(probabilities, direct("fashion_mnist", {"image": batch})["probabilities"], **TOLERANCE)
    assert (probabilities.argmax(axis=1) == labels[:32]).mean() >= 0.8


@pytest.mark.slow
def test_encoded_images_as_bytes(triton_client, fashion_test_slice):
    images, _ = fashion_test_slice
    files = np.array([png(image) for image in images[:4]], dtype=object)
    result = triton_client.infer("fashion_mnist", [tensor(files, "image", binary=True)], model_version="1")
    expected = direct("fashion_mnist", {"image": images[:4].astype(np.float32)})["probabilities"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, **TOLERANCE)


@pytest.mark.slow
def test_requested_outputs_of_another_signature_in_order(triton_client):
    outputs = [triton.InferRequestedOutput("probability", binary_data=False),
               triton.InferRequestedOutput("class_id", binary_data=True)]
    result = triton_client.infer("iris", [tensor(IRIS_ROWS, "features")], outputs=outputs,
                                 parameters={"signature_name": "top_class"})
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probability", "class_id"]
    expected = direct("iris", {"features": IRIS_ROWS}, "top_class")
    assert result.as_numpy("class_id").tolist() == expected["class_id"].tolist() == [0, 2]
    np.testing.assert_allclose(result.as_numpy("probability"), expected["probability"], **TOLERANCE)


@pytest.mark.slow
def test_client_sees_the_error_message(triton_client):
    with pytest.raises(InferenceServerException) as error:
        triton_client.infer("iris", [tensor(np.zeros((1, 4), np.int32), "features")])
    assert "datatype INT32 does not match the model's FP32" in str(error.value)
    with pytest.raises(InferenceServerException, match="not found"):
        triton_client.get_model_metadata("no_such_model")
