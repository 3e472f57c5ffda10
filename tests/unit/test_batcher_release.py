"""Batcher.release: the requests already queued on an unloaded version finish, then its lane's thread ends."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from service.core.batching import Batcher
from service.repository.servable import ModelCard, Servable, Signature, TensorSpec


class Gated:
    """Doubles its input; the first call waits for `gate`, so later requests queue up behind it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        self.started.set()
        self.gate.wait(10)
        return {"y": x * 2}


def test_release_lets_queued_requests_finish_and_ends_the_thread() -> None:
    function = Gated()
    spec = TensorSpec("x", "float32", (None, 1))
    signature = Signature("serving_default", {"x": spec}, {"y": TensorSpec("y", "float32", (None, 1))}, function)
    card = ModelCard(raw={}, task="tensor", input_name="x", output_name="y", input_kind="tensor")
    servable = Servable("m", 1, Path("m/1"), card, {"serving_default": signature})
    batcher = Batcher(max_batch_size=64, max_wait_us=0, max_queue=8)
    threads_before = set(threading.enumerate())
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.run, servable, signature, {"x": np.array([[1.0]], np.float32)}, 1)
        assert function.started.wait(10)
        queued = [pool.submit(batcher.run, servable, signature, {"x": np.array([[float(i)]], np.float32)}, 1)
                  for i in range(2, 5)]
        while batcher.queue_depths() != {"m": 3}:
            time.sleep(0.001)
        [lane_thread] = [t for t in threading.enumerate()
                         if t.name == "batcher-serving_default" and t not in threads_before]

        servable.unload()
        batcher.release("m", 1)
        assert batcher.queue_depths() == {}
        function.gate.set()
        assert first.result(10)["y"].tolist() == [[2.0]]
        assert [f.result(10)["y"].tolist() for f in queued] == [[[4.0]], [[6.0]], [[8.0]]]
    lane_thread.join(5)
    assert not lane_thread.is_alive()
    assert function.calls == 2  # the first request alone, then the three queued ones in one batch

    # A request that got the version before it left runs unbatched, and opens no lane.
    assert batcher.run(servable, signature, {"x": np.array([[5.0]], np.float32)}, 1)["y"].tolist() == [[10.0]]
    assert batcher.queue_depths() == {}
