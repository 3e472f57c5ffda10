"""The data plane with a fake servable: one lookup, then decoding against the resolved
signature, validation, the model call and its checks, in that order, whatever the door."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.codecs import tfserving, v2
from service.config import Config
from service.core.dataplane import DataPlane, request_version
from service.errors import InvalidInput, NotFound, PayloadTooLarge
from service.repository.manager import ModelManager
from service.repository.policy import parse_policies
from service.repository.servable import ModelCard, Servable, Signature, TensorSpec


def _servable(name: str, version: int, path: Path, calls: list[dict[str, np.ndarray]]) -> Servable:
    def double(x: np.ndarray) -> dict[str, np.ndarray]:
        calls.append({"x": x})
        with np.errstate(over="ignore"):
            return {"y": x * 2}

    signature = Signature("serving_default", {"x": TensorSpec("x", "float32", (None, 2))},
                          {"y": TensorSpec("y", "float32", (None, 2))}, function=double)
    card = ModelCard(raw={}, task="tensor", input_name="x", output_name="y", input_kind="tensor")
    return Servable(name, version, path, card, {"serving_default": signature})


@pytest.fixture
def calls() -> list[dict[str, np.ndarray]]:
    return []


@pytest.fixture
def plane(tmp_path, calls) -> DataPlane:
    for version in (1, 2):
        folder = tmp_path / "double" / str(version)
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"")
    manager = ModelManager(tmp_path, parse_policies({"models": {"double": {"version_policy": "all"}}}),
                           loader=lambda name, version, path: _servable(name, version, path, calls), settle_seconds=0)
    manager.refresh()
    return DataPlane(manager, Config(model_base_path=tmp_path, model_config=Path("none"), max_instances=3))


class Unread:
    """A body reader that must not be called: the lookup fails first."""

    def __call__(self) -> dict:
        raise AssertionError("the body was read before the version was found")


def test_predict_runs_the_default_version_and_says_which_answered(plane, calls):
    request = tfserving.PredictRequest(lambda: {"instances": [[1, 2], [3, 4]]}, 1000)
    answer = plane.infer("double", request)
    assert (answer.servable.version, answer.signature.name) == (2, "serving_default")
    np.testing.assert_array_equal(answer.outputs["y"], np.array([[2, 4], [6, 8]], dtype=np.float32))
    assert len(calls) == 1 and calls[0]["x"].dtype == np.float32
    assert request.encode(answer.outputs) == {"predictions": answer.outputs["y"]}


def test_a_version_by_number_as_a_path_segment(plane):
    answer = plane.infer("double", tfserving.PredictRequest(lambda: {"inputs": [[1, 1]]}, 1000), "1")
    assert answer.servable.version == 1


@pytest.mark.parametrize(("name", "version", "message"), [
    ("nope", None, "model 'nope' not found; models: double"),
    ("double", "7", "model 'double' has no version 7 available; available versions: 1, 2"),
    ("double", "0", "version must be a positive integer, got '0'"),
])
def test_an_unknown_model_or_version_is_not_found_before_the_body_is_read(plane, name, version, message):
    with pytest.raises(NotFound) as caught:
        plane.infer(name, tfserving.PredictRequest(Unread(), 1000), version)
    assert caught.value.message == message
    with pytest.raises(NotFound):
        plane.infer(name, v2.InferPayload(Unread(), 1000), version)


def test_an_unknown_signature_is_not_found_and_nothing_runs(plane, calls):
    request = tfserving.PredictRequest(lambda: {"signature_name": "other", "instances": [[1, 2]]}, 1000)
    with pytest.raises(NotFound, match="has no signature 'other'; it has serving_default"):
        plane.infer("double", request)
    assert calls == []


def test_validation_runs_before_the_model(plane, calls):
    with pytest.raises(InvalidInput, match=r"input 'x': each instance must have shape \[2\], got \[3\]"):
        plane.infer("double", tfserving.PredictRequest(lambda: {"instances": [[1, 2, 3]]}, 1000))
    with pytest.raises(PayloadTooLarge, match="4 instances in one request; the limit is 3"):
        plane.infer("double", tfserving.PredictRequest(lambda: {"instances": [[1, 2]] * 4}, 1000))
    assert calls == []


def test_an_output_that_overflows_is_refused_with_its_name(plane, calls):
    with pytest.raises(InvalidInput, match="output 'y' is not a finite float32 for this input"):
        plane.infer("double", tfserving.PredictRequest(lambda: {"instances": [[3e38, 1]]}, 1000))
    assert len(calls) == 1


def test_the_v2_door_gets_the_same_arrays_and_its_own_dialect_back(plane):
    body = {"id": "r1", "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    payload = v2.InferPayload(lambda: (body, b""), 1000)
    answer = plane.infer("double", payload)
    response, binary = payload.encode(answer.servable, answer.outputs)
    assert binary == b""
    assert response["model_version"] == "2" and response["id"] == "r1"
    assert [(o["name"], o["shape"], o["data"].tolist()) for o in response["outputs"]] == [("y", [1, 2], [2.0, 4.0])]


def test_status_by_version_or_label_and_available_versions(plane):
    assert [s.version for s in plane.version_states("double")] == [1, 2]
    assert [(s.version, s.state) for s in plane.version_states("double", "1")] == [(1, "AVAILABLE")]
    assert plane.available_versions("double") == [1, 2]


def test_request_versions():
    assert request_version(None) is None
    assert request_version(3) == 3
    assert request_version("12") == 12
    for bad in ("-1", "1.0", "x", "1" * 19, "\u0663"):
        with pytest.raises(NotFound):
            request_version(bad)
