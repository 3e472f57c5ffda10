"""Shared fixtures: the committed models, the Flask app and test client, a real gunicorn."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.server import GunicornServer

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
