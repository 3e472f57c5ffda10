"""An unloaded version leaves nothing alive behind it, and a request already holding it still finishes."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from service.core.batching import Batcher
from service.repository.manager import ModelManager

MODELS = Path(__file__).resolve().parents[2] / "models"
IRIS = np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)


def iris_manager(base: Path, batcher: Batcher | None) -> ModelManager:
    shutil.copytree(MODELS / "iris", base / "iris")
    manager = ModelManager(base, settle_seconds=0)
    if batcher is not None:
        manager.add_unload_listener(batcher.release)
    manager.refresh()
    return manager


def serve(batcher: Batcher | None, servable, signature_name: str) -> dict[str, np.ndarray]:
    signature = servable.signature(signature_name)
    return signature({"features": IRIS}) if batcher is None else batcher.run(servable, signature, {"features": IRIS}, 1)


@pytest.mark.parametrize("batching", [True, False], ids=["batching-on", "batching-off"])
def test_nothing_of_an_unloaded_version_stays_alive(batching: bool, tmp_path: Path) -> None:
    batcher = Batcher(max_batch_size=8, max_wait_us=1_000, max_queue=8) if batching else None
    threads_before = set(threading.enumerate())
    manager = iris_manager(tmp_path, batcher)
    servable = manager.servable("iris")
    assert serve(batcher, servable, "top_class")["class_id"].tolist() == [0]
    signature = servable.signature(None)
    assert signature.backend == "litert"  # the LiteRT interpreter is among what must go
    alive = {"servable": weakref.ref(servable), "signature": weakref.ref(signature),
             "litert runner": weakref.ref(signature.function), "saved model": weakref.ref(servable.handle)}
    lane_threads = set(threading.enumerate()) - threads_before
    assert len(lane_threads) == (1 if batching else 0)
    del servable, signature

    shutil.rmtree(tmp_path / "iris")
    manager.refresh()
    gc.collect()

    assert manager.model_names() == []
    assert {what: ref() is None for what, ref in alive.items()} == dict.fromkeys(alive, True)
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in lane_threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [t.name for t in lane_threads if t.is_alive()] == []
    if batcher is not None:
        assert batcher.queue_depths() == {}


@pytest.mark.parametrize("batching", [True, False], ids=["batching-on", "batching-off"])
def test_a_request_holding_a_version_finishes_after_it_is_unloaded(batching: bool, tmp_path: Path) -> None:
    batcher = Batcher(max_batch_size=8, max_wait_us=1_000, max_queue=8) if batching else None
    manager = iris_manager(tmp_path, batcher)
    servable = manager.servable("iris")  # as a request does, before the version leaves
    shutil.rmtree(tmp_path / "iris")
    manager.refresh()
    assert servable.unloaded

    assert serve(batcher, servable, "top_class")["class_id"].tolist() == [0]
    assert serve(batcher, servable, None)["probabilities"].shape == (1, 3)
    if batcher is not None:
        assert batcher.queue_depths() == {}  # run unbatched: no new lane keeps the version
