"""Adaptive micro-batching: concurrent requests share model calls and get exactly their rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.core.batching import Batcher
from service.errors import Unavailable
from service.repository.loader import load_servable


@pytest.fixture(scope="module")
def fashion(models_dir):
    return load_servable("fashion_mnist", 1, models_dir / "fashion_mnist" / "1")


def test_batched_results_equal_unbatched(fashion, fashion_test_slice):
    images, _ = fashion_test_slice
    signature = fashion.signature(None)
    pixels = images[:96].astype(np.float32)
    alone = [signature({"image": pixels[i:i + 1]})["probabilities"] for i in range(96)]
    seen_batches: list[int] = []
    batcher = Batcher(max_batch_size=16, max_wait_us=20_000, max_queue=256,
                      observe=lambda waited, rows: seen_batches.append(rows))
    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(
            lambda i: batcher.run(fashion, signature, {"image": pixels[i:i + 1]}, 1)["probabilities"], range(96)))
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_array_equal(got, want)  # LiteRT rows do not depend on the batch
    assert max(seen_batches) > 1, "concurrent requests never shared a call"
    assert max(seen_batches) <= 16


def test_requests_of_several_rows_keep_their_rows(fashion, fashion_test_slice):
    images, _ = fashion_test_slice
    signature = fashion.signature(None)
    batcher = Batcher(max_batch_size=64, max_wait_us=20_000, max_queue=64)
    chunks = [images[i:i + 3].astype(np.float32) for i in range(0, 30, 3)]
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda c: batcher.run(fashion, signature, {"image": c}, 3)["probabilities"], chunks))
    for chunk, result in zip(chunks, results, strict=True):
        np.testing.assert_array_equal(result, signature({"image": chunk})["probabilities"])


def test_full_queue_answers_503_at_once(fashion):
    signature = fashion.signature(None)
    release = threading.Event()
    slow_calls = []

    class Slow:
        name = signature.name

        def __call__(self, inputs):
            slow_calls.append(1)
            release.wait(10)
            return signature(inputs)

    batcher = Batcher(max_batch_size=1_000, max_wait_us=0, max_queue=2)
    zeros = {"image": np.zeros((1, 28, 28), np.float32)}
    slow = Slow()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher.run, fashion, slow, zeros, 1) for _ in range(8)]
        refused = 0
        for future in futures[3:]:
            try:
                future.result(timeout=5)
            except Unavailable as exc:
                refused += 1
                assert "queue is full" in exc.message
            except TimeoutError:
                pass
        release.set()
        assert refused >= 1
        done = [f for f in futures if f.exception(timeout=10) is None]
        assert done, "queued requests were not served once the model was free"


def test_errors_reach_every_request_of_the_batch(fashion):
    class Broken:
        name = "broken"

        def __call__(self, inputs):
            raise RuntimeError("model exploded")

    batcher = Batcher(max_batch_size=8, max_wait_us=10_000, max_queue=8)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.run, fashion, Broken(), {"image": np.zeros((1, 28, 28), np.float32)}, 1)
                   for _ in range(4)]
        for future in futures:
            with pytest.raises(RuntimeError, match="exploded"):
                future.result(timeout=10)
