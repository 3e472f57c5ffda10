"""Faults under a locust load of 50 users, against real gunicorn: a worker killed, the models folder
unreadable for a while, slow clients. The scenarios live in loadtest/faults.py (`make faults`
runs them with their figures); SIGTERM to the master and publishing, corrupt and deleted versions
under load are tested in tests/e2e/test_operations.py.
"""

from __future__ import annotations

import pytest

from loadtest import faults

pytestmark = pytest.mark.slow


def _judge(outcome: faults.Outcome) -> None:
    faults.print_outcome(outcome)   # the figures, with pytest -s
    assert outcome.problems == [], outcome.figures


def test_a_killed_worker_is_replaced_and_only_its_requests_fail(gunicorn_factory, tmp_path):
    server = gunicorn_factory({"ACCESS_LOG": ""})
    try:
        # Readiness must never be down for 10 s; the replacement itself imports TensorFlow and
        # loads and self-tests every model (about 10 s here under this load, more on a busier box).
        _judge(faults.worker_kill(server, tmp_path, ready_limit=10, serving_limit=60))
    finally:
        server.stop()


def test_served_versions_survive_an_unreadable_models_folder(gunicorn_factory, models_copy, tmp_path):
    server = gunicorn_factory({"MODEL_BASE_PATH": str(models_copy), "POLL_SECONDS": "0.5", "ACCESS_LOG": ""})
    try:
        _judge(faults.unreadable(server, tmp_path, models_copy))
    finally:
        server.stop()


def test_slow_clients_hold_a_thread_for_request_timeout_at_most(gunicorn_factory, tmp_path):
    server = gunicorn_factory({"REQUEST_TIMEOUT": "5", "ACCESS_LOG": ""})
    try:
        _judge(faults.slow_clients(server, tmp_path, request_timeout=5))
    finally:
        server.stop()
