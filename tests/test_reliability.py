"""Reliability: the bad-input catalogue against real gunicorn, decompression bombs and worker
memory, names that try to leave the models folder, and schemathesis from the server's own spec.

The catalogue itself lives in loadtest/catalogue.py (shared with `make reliability`, which prints
it as a table); here each case is one test.
"""

from __future__ import annotations

import builtins
import io
import os
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from loadtest import catalogue
from loadtest.faults import wait_for_workers
from loadtest.reliability import bomb_memory
from service.repository.source import is_valid_name, parse_version

ROOT = Path(__file__).resolve().parent.parent
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


# --------------------------------------------------------------------------- names and the filesystem

@pytest.fixture
def filesystem_calls(monkeypatch):
    """Every path the process opens, lists or stats while the fixture is active."""
    seen: list[str] = []

    def spy(function):
        def wrapper(path, *args, **kwargs):
            if isinstance(path, str | bytes | os.PathLike):
                seen.append(os.fsdecode(path))
            return function(path, *args, **kwargs)
        return wrapper

    for name in ("scandir", "listdir", "stat", "lstat", "open", "walk"):
        monkeypatch.setattr(os, name, spy(getattr(os, name)))
    monkeypatch.setattr(builtins, "open", spy(builtins.open))
    monkeypatch.setattr(io, "open", spy(io.open))
    return seen


TRAVERSALS = [
    "/v1/models/../../etc/passwd", "/v1/models/%2e%2e", "/v1/models/%2e%2e/versions/1/metadata",
    "/v1/models/iris/versions/%2e%2e", "/v1/models/%2Fetc%2Fpasswd", "/v1/models/iris%00",
    "/v1/models/iris/labels/..%2F..%2Fetc", "/api/models/..%2F..%2Fetc%2Fpasswd",
    "/api/models/iris/versions/1/plots/..%2F..%2Fsaved_model.pb",
    "/api/models/iris/versions/1/plots/%2Fetc%2Fpasswd", "/api/models/iris/versions/1/plots/variables",
    "/api/models/.staging-1", "/v2/models/%2e%2e%2f%2e%2e/ready", "/v2/models/iris/versions/-1",
    "/v2/models/iris/versions/1e3", "/api/models/" + "a" * 300,
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_names_that_try_to_leave_the_models_folder_touch_no_file(client, app, filesystem_calls, path):
    response = client.get(path)
    assert response.status_code == 404
    assert set(response.get_json()) == {"error"}
    # A name is looked up among the loaded models; the filesystem is not asked.
    assert filesystem_calls == []


def test_a_rescan_only_ever_reads_inside_the_models_folder(app, filesystem_calls):
    """Folders named like traversals, next to the real ones, are skipped by the source."""
    app.extensions["data_plane"].manager.refresh()
    calls = list(filesystem_calls)   # a snapshot: resolving paths below calls the spied functions again
    assert calls, "the spy saw nothing: it is not wired"
    base = os.path.realpath(MODELS)
    outside = [path for path in calls if not os.path.realpath(path).startswith(base)]
    assert outside == []


@settings(deadline=None)   # a busy machine makes timings meaningless
@given(st.text(max_size=40))
def test_a_valid_model_name_is_always_one_folder_inside_the_base(name):
    if is_valid_name(name):
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".")
        assert (MODELS / name).resolve().parent == MODELS.resolve()


@settings(deadline=None)
@given(st.text(max_size=25))
def test_a_version_folder_name_is_only_ever_a_positive_integer(name):
    version = parse_version(name)
    if version is not None:
        assert version > 0 and str(version) == name


# --------------------------------------------------------------------------- fuzzing from the spec

FUZZ_EXAMPLES = 2            # per operation and generation mode: about 200 requests in all


def test_fuzzing_from_the_openapi_document(app):
    """Schemathesis against the app's own /openapi.json, every operation, valid and invalid data:
    no 5xx, and every answer conforms to the document (status, content type, headers, body).

    Through its Python API (schemathesis' lazy pytest fixture does not run under pytest 9).
    schemathesis.toml turns off ST202 (schema-valid request rejected), excluded here explicitly
    too: the schema cannot express everything the server checks (element counts against shapes,
    bytes that must be an image), so valid-looking requests are rightly refused with a 4xx.
    """
    config = schemathesis.Config.from_path(ROOT / "schemathesis.toml")
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)
    calls: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, calls)
    spec = app.test_client().get("/openapi.json").get_json()
    documented = {f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item}
    # Every operation but the document's own, which schemathesis leaves out.
    assert set(calls) == documented - {"GET /openapi.json"}
    assert sum(calls.values()) >= 100
    print(f"schemathesis: {sum(calls.values())} requests over {len(calls)} operations")


def _fuzz(operation, mode: GenerationMode, calls: Counter[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def one(case):
        calls[operation.label] += 1
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    try:
        one()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        # Nothing to get wrong: an operation without parameters or body has no invalid requests.
