"""Reliability in process: names that try to leave the models folder, and schemathesis from the
server's own spec (the catalogue against real gunicorn: tests/e2e/test_reliability_catalogue.py)."""

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

from service.repository.source import is_valid_name, parse_version

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


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
