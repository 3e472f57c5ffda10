"""The core's input checks: shapes, the signature's dtypes, finite values and the card's range."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.validation import validate_inputs
from service.errors import InvalidInput
from service.repository.servable import ModelCard, Signature, TensorSpec


def _signature(shape: tuple[int | None, ...]) -> Signature:
    spec = TensorSpec("x", "float32", shape)
    return Signature("serving_default", {"x": spec}, {"y": TensorSpec("y", "float32", (None, 1))}, lambda **_: {})


def _card(value_range: list[float] | None) -> ModelCard:
    raw = {"input": {"image": {"value_range": value_range}}} if value_range else {}
    return ModelCard(raw=raw, task="tensor", input_name="x", output_name="y", input_kind="tensor")


IMAGE = _signature((None, 2, 2))
FEATURES = _signature((None, 3))


def test_inputs_come_back_in_the_signature_dtype_with_their_batch_size():
    typed, rows = validate_inputs({"x": np.zeros((3, 2, 2), dtype=np.float64)}, IMAGE, _card([0, 255]), 10)
    assert rows == 3 and typed["x"].dtype == np.float32 and typed["x"].shape == (3, 2, 2)


def test_a_value_outside_the_cards_range_is_named_with_its_position():
    pixels = np.zeros((2, 2, 2))
    pixels[1, 0, 1] = 300
    with pytest.raises(InvalidInput, match=r"within 0\.\.255; instance 1 has 300 at position \[0, 1\]"):
        validate_inputs({"x": pixels}, IMAGE, _card([0, 255]), 10)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_nan_infinity_and_float32_overflow_are_refused(bad):
    features = np.array([[1.0, bad, 2.0]])
    with pytest.raises(InvalidInput, match="'x': values must be finite and within the range of float32"):
        validate_inputs({"x": features}, FEATURES, _card(None), 10)


def test_nan_in_an_image_is_refused_as_not_finite_and_infinity_as_out_of_range():
    with pytest.raises(InvalidInput, match="must be finite"):
        validate_inputs({"x": np.array([[[1.0, np.nan], [2.0, 3.0]]])}, IMAGE, _card([0, 255]), 10)
    with pytest.raises(InvalidInput, match=r"within 0\.\.255; instance 0 has inf at position \[1, 0\]"):
        validate_inputs({"x": np.array([[[1.0, 2.0], [np.inf, 3.0]]])}, IMAGE, _card([0, 255]), 10)


def test_instances_without_values_pass_the_value_checks_without_crashing():
    signature = _signature((None, None))
    typed, rows = validate_inputs({"x": np.zeros((2, 0))}, signature, _card(None), 10)
    assert rows == 2 and typed["x"].size == 0
