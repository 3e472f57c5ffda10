"""Micro-batching under the served gevent worker (the batcher itself: tests/integration/test_batching.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers.prometheus import samples, value


@pytest.mark.slow
def test_the_served_worker_batches_requests_of_different_connections(gunicorn_factory):
    """Under gunicorn the batcher's thread and the requests are greenlets of one event loop:
    requests from other connections must still join a waiting batch, and get their own rows."""
    server = gunicorn_factory({"BATCHING": "1", "WEB_CONCURRENCY": "1", "ACCESS_LOG": ""})
    url = f"{server.url}/v1/models/iris:predict"
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    alone = [requests.post(url, json={"instances": [row]}, timeout=10).json()["predictions"][0] for row in rows]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(
            lambda i: requests.post(url, json={"instances": [rows[i % 3]]}, timeout=10).json()["predictions"][0],
            range(240)))
    assert all(got == alone[i % 3] for i, got in enumerate(together))
    found = samples(requests.get(f"{server.url}/metrics", timeout=10).text)
    # One observation per request: the size of the model call it was part of.
    answered = value(found, "model_server_batch_size_count", model="iris")
    sizes = value(found, "model_server_batch_size_sum", model="iris")
    assert answered == len(rows) + 240
    assert sizes > answered, "no two requests ever shared a model call"
