"""Shared fixtures: the committed models, the Flask app and test client, a real gunicorn."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FASHION_SLICE = FIXTURES / "fashion_mnist_test_500"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def app():
    from service.app import create_app
    from service.config import Config

    return create_app(Config(model_base_path=MODELS, poll_seconds=0), watch=False)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def fashion_test_slice():
    """500 real Fashion-MNIST test images and labels (uint8), committed as IDX files."""
    from training.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

    images = read_idx(FASHION_SLICE / "t10k-images-idx3-ubyte.gz", IMAGES_MAGIC)
    labels = read_idx(FASHION_SLICE / "t10k-labels-idx1-ubyte.gz", LABELS_MAGIC)
    return images, labels


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """A real gunicorn master with its workers, on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {**os.environ, "BIND": f"127.0.0.1:{self.port}", **env}
        self._log_handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", str(ROOT / "service" / "gunicorn_conf.py")],
            cwd=ROOT, env=full_env, stdout=self._log_handle, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_handle.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def gunicorn_factory(tmp_path_factory):
    """Start servers with extra environment; every one is stopped at the end of the session."""
    started: list[GunicornServer] = []

    def start(env: dict[str, str] | None = None) -> GunicornServer:
        log = tmp_path_factory.mktemp("gunicorn") / "server.log"
        server = GunicornServer({"WEB_CONCURRENCY": "2", "MODEL_BASE_PATH": str(MODELS), **(env or {})}, log)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(gunicorn_factory) -> Iterator[GunicornServer]:
    """One real gunicorn serving the committed models, shared by the end-to-end tests."""
    yield gunicorn_factory()


@pytest.fixture
def models_copy(tmp_path) -> Path:
    """A private, writable copy of the committed models."""
    target = tmp_path / "models"
    shutil.copytree(MODELS, target)
    return target
