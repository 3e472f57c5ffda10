"""Publishing and removing versions over and over must not grow a worker's memory.

A real gunicorn with one worker polls a models folder every second; the 13 MB model of
scripts/reload_memory.py is published as a new version (copied aside, renamed into place),
served once, removed, 16 times. Once the first cycles have warmed TensorFlow's caches up, the
worker's RSS over the last 8 cycles must grow by less than one model's weights: before
unloading was explicit it grew by one model per cycle with batching on.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from loadtest.server import GunicornServer
from scripts.reload_memory import WEIGHTS_MB, export_big_model

MODELS = Path(__file__).resolve().parents[2] / "models"
CYCLES = 16


@pytest.fixture(scope="session")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_big_model(tmp_path_factory.mktemp("big") / "export")


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def version_state(server: GunicornServer, version: int) -> str | None:
    """The state the status API gives `version` of the big model; None once the model is gone."""
    response = requests.get(f"{server.url}/v1/models/big", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    states = {int(s["version"]): s["state"] for s in response.json()["model_version_status"]}
    return states.get(version)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout} s")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("batching", ["on", "off"])
def test_versions_published_and_removed_give_their_memory_back(batching: str, big_model: Path,
                                                               tmp_path: Path) -> None:
    base = tmp_path / "models"
    shutil.copytree(MODELS / "linear", base / "linear")  # the server is ready with it, before any big version
    (base / "big").mkdir()
    server = GunicornServer({"WEB_CONCURRENCY": "1", "POLL_SECONDS": "1", "MODEL_BASE_PATH": str(base),
                             "MODEL_CONFIG": "none", "BATCHING": batching}, tmp_path / "server.log")
    try:
        server.wait_ready()
        [worker] = server.worker_pids()
        before = vm_rss_mb(worker)
        rss: list[float] = []
        for version in range(1, CYCLES + 1):
            staging = tmp_path / "staging" / str(version)
            shutil.copytree(big_model, staging)
            staging.rename(base / "big" / str(version))
            wait_until(lambda v=version: version_state(server, v) == "AVAILABLE", f"version {version} AVAILABLE")
            response = requests.post(f"{server.url}/v1/models/big/versions/{version}:predict",
                                     json={"instances": [[0.5] * 784]}, timeout=10)
            assert response.status_code == 200, response.text
            assert len(response.json()["predictions"][0]) == 10
            shutil.rmtree(base / "big" / str(version))
            wait_until(lambda v=version: version_state(server, v) in (None, "END"), f"version {version} gone")
            rss.append(vm_rss_mb(worker))
        assert server.worker_pids() == [worker]  # the same worker throughout: no restart hid a leak
    finally:
        server.stop()
    half = CYCLES // 2
    print(f"BATCHING={batching}: RSS after each cycle (MB): {[round(r) for r in rss]}; "
          f"over {CYCLES} cycles +{rss[-1] - before:.0f} MB, over the last {half} +{rss[-1] - rss[half - 1]:.0f} MB")
    assert rss[-1] - rss[half - 1] < WEIGHTS_MB, f"RSS after each cycle (MB): {[round(r) for r in rss]}"
