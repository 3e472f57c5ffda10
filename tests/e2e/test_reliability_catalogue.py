"""Reliability against real gunicorn: every case of the bad-input catalogue, the body limit,
decompression bombs and worker memory, FLASK_DEBUG ignored.

The catalogue itself lives in loadtest/catalogue.py (shared with `make reliability`, which prints
it as a table); here each case is one test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import catalogue
from loadtest.faults import wait_for_workers
from loadtest.reliability import bomb_memory

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
REQUEST_TIMEOUT = 4          # seconds: the case whose body never comes is cut off after this
CASES = catalogue.cases()


@pytest.fixture(scope="module")
def catalogue_server(gunicorn_factory):
    # FLASK_DEBUG=1 must change nothing: every answer of the catalogue is checked for stack traces.
    server = gunicorn_factory({"REQUEST_TIMEOUT": str(REQUEST_TIMEOUT), "FLASK_DEBUG": "1", "ACCESS_LOG": ""})
    wait_for_workers(server)
    return server


def test_the_catalogue_names_every_case_once():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert {case.group for case in CASES} == {"json", "body", "image", "names", "http"}
    assert len(CASES) >= 60


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.name}" for c in CASES])
def test_bad_input(catalogue_server, case):
    result = catalogue.run_case(case, "127.0.0.1", catalogue_server.port, (str(MODELS), str(ROOT)))
    assert result.ok, (result.problems, result.reply.status, result.reply.body[:300])


@pytest.mark.slow
def test_the_body_limit_is_decided_from_the_headers(catalogue_server):
    """Only the headers are sent, announcing 100 GB: the 413 must come back without the body."""
    reply = catalogue.send("127.0.0.1", catalogue_server.port,
                           catalogue.request("POST", "/v1/models/iris:predict", b"", length=100 * 10**9),
                           head_only=True, timeout=10)
    assert reply.status == 413
    assert reply.seconds < 2
    assert reply.error.startswith("request body of 100,000,000,000 bytes is over the limit of")


@pytest.mark.slow
def test_decompression_bombs_do_not_grow_the_workers(catalogue_server):
    growth, problems = bomb_memory(catalogue_server, rounds=5)
    assert problems == []
    assert len(growth) == 2
    for rss, pss in growth.values():
        assert rss < 50 and pss < 50


@pytest.mark.slow
def test_flask_debug_in_the_environment_does_not_reach_gunicorn(catalogue_server):
    # The Werkzeug debugger's console and its resources exist only in debug mode.
    for path, status in (("/console", 404), ("/v1/models/iris?__debugger__=yes&cmd=resource&f=style.css", 200)):
        reply = catalogue.send("127.0.0.1", catalogue_server.port, catalogue.request("GET", path))
        assert reply.status == status
        assert b"Werkzeug" not in reply.body and b"__debugger__" not in reply.body
    log = catalogue_server.log.read_text(errors="replace")
    assert "FLASK_DEBUG is set; ignored" in log
