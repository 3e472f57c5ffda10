"""The LiteRT compiled path: used only where it reproduces the SavedModel, and it does."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from service.repository.compiled import COMPILED_ATOL
from service.repository.loader import load_servable


def test_signatures_run_compiled_and_match_the_saved_model(models_dir, fashion_test_slice):
    images, _ = fashion_test_slice
    servable = load_servable("fashion_mnist", 1, models_dir / "fashion_mnist" / "1")
    assert {key: sig.backend for key, sig in servable.signatures.items()} == {
        "serving_default": "litert", "top_class": "litert"}
    reference = tf.saved_model.load(str(models_dir / "fashion_mnist" / "1")).signatures["serving_default"]
    for batch in (1, 7, 64):
        pixels = images[:batch].astype(np.float32)
        fast = servable.signature(None)({"image": pixels})["probabilities"]
        slow = reference(image=tf.constant(pixels))["probabilities"].numpy()
        np.testing.assert_allclose(fast, slow, atol=COMPILED_ATOL, rtol=0)
        assert (fast.argmax(1) == slow.argmax(1)).all()


def test_compiled_path_can_be_turned_off(models_dir):
    servable = load_servable("iris", 1, models_dir / "iris" / "1", compile_litert=False)
    assert {sig.backend for sig in servable.signatures.values()} == {"tensorflow"}
    result = servable.signature("top_class")({"features": np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)})
    assert result["class_id"].tolist() == [0]


def test_threads_share_a_compiled_signature_safely(models_dir, fashion_test_slice):
    from concurrent.futures import ThreadPoolExecutor

    images, _ = fashion_test_slice
    signature = load_servable("fashion_mnist", 1, models_dir / "fashion_mnist" / "1").signature(None)
    expected = [signature({"image": images[i:i + 1].astype(np.float32)})["probabilities"] for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: signature({"image": images[i:i + 1].astype(np.float32)})["probabilities"],
                            range(64)))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)



def test_a_litert_without_the_runners_private_parts_keeps_tensorflow(models_dir, monkeypatch):
    """The runner reaches into ai_edge_litert's private parts; another version of it must cost
    speed only, never the model."""
    from service.repository import compiled

    def runner_of_another_version(*_args: object) -> None:
        raise AttributeError("'SignatureRunner' object has no attribute '_subgraph_index'")

    monkeypatch.setattr(compiled, "_Runner", runner_of_another_version)
    servable = load_servable("iris", 1, models_dir / "iris" / "1")
    assert {sig.backend for sig in servable.signatures.values()} == {"tensorflow"}
    result = servable.signature("top_class")({"features": np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)})
    assert result["class_id"].tolist() == [0]
