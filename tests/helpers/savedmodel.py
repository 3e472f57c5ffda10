"""The committed SavedModels called in-process, without the server: what answers must equal."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

MODELS = Path(__file__).resolve().parents[2] / "models"
IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}


@functools.cache
def _signature(name: str, signature: str):
    return tf.saved_model.load(str(MODELS / name / "1")).signatures[signature]


def direct(name: str, inputs: dict[str, np.ndarray], signature: str = "serving_default") -> dict[str, np.ndarray]:
    """The SavedModel's signature called in-process, without the server."""
    outputs = _signature(name, signature)(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
