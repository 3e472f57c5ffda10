"""Operations: request ids, JSON access logs, Prometheus metrics (across gunicorn workers),
readiness while draining, graceful shutdown under load, and hot reload under locust load."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from service.middleware import observe
from service.ops import context, lifecycle, logs
from service.repository.manager import ModelManager
from tests.helpers.prometheus import samples, value

ROOT = Path(__file__).resolve().parents[2]
SETOSA = {"instances": [{"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4,
                         "petal_width_cm": 0.2}]}


# --------------------------------------------------------------------------- in process

def test_request_id_is_echoed_when_safe_and_made_up_otherwise(client):
    assert client.get("/v2/health/live", headers={"X-Request-ID": "trace-42/a:b"}).headers["X-Request-ID"] == \
        "trace-42/a:b"
    for bad in ("x" * 129, "tab\there", "nul\x00", "caf\u00e9", ""):
        answer = client.get("/v2/health/live", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert answer != bad and len(answer) == 32 and int(answer, 16) >= 0
    first, second = (client.get("/v2/health/live").headers["X-Request-ID"] for _ in range(2))
    assert first != second


def test_request_id_validation():
    assert observe.request_id("a" * 128) == "a" * 128
    assert observe.request_id("a" * 129) != "a" * 129
    assert observe.request_id("with space") == "with space"   # printable
    assert observe.request_id("line\nbreak") != "line\nbreak"
    assert observe.request_id(None) != observe.request_id(None)


@pytest.fixture
def access_lines():
    """The access logger's output as parsed JSON lines, with the production formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    saved = (logs.ACCESS.level, logs.ACCESS.propagate, logs.ACCESS.disabled)
    logs.ACCESS.addHandler(handler)
    logs.ACCESS.setLevel(logging.INFO)
    logs.ACCESS.propagate = False
    logs.ACCESS.disabled = False
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.ACCESS.removeHandler(handler)
    logs.ACCESS.level, logs.ACCESS.propagate, logs.ACCESS.disabled = saved


def test_one_json_access_line_per_request(client, access_lines):
    response = client.post("/api/models/iris/predict", json=SETOSA, headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200
    client.get("/v1/models/no_such_model")
    first, second = access_lines()
    assert set(first) == {"time", "level", "logger", "pid", "request_id", "method", "path", "route", "status",
                          "duration_ms", "model", "version", "bytes_in", "bytes_out", "remote_addr"}
    assert first["request_id"] == "req-1" and first["logger"] == "service.access"
    assert (first["method"], first["path"], first["route"]) == \
        ("POST", "/api/models/iris/predict", "/api/models/<name>/predict")
    assert (first["status"], first["model"], first["version"]) == (200, "iris", 1)
    assert first["bytes_in"] == len(json.dumps(SETOSA)) and first["bytes_out"] == len(response.data)
    assert 0 < first["duration_ms"] < 10_000 and first["time"].endswith("Z")
    # An unknown model is not a label value: nothing a client invents reaches the labels.
    assert (second["status"], second["model"], second["route"]) == (404, None, "/v1/models/<name>")


def test_app_errors_are_json_with_the_request_id():
    formatter = logs.JsonFormatter()
    context.begin(context.RequestContext("req-err", 0.0))
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            record = logging.getLogger("service.app").makeRecord(
                "service.app", logging.ERROR, __file__, 1, "unhandled error on %s", ("GET /x",), sys.exc_info())
        line = json.loads(formatter.format(record))
    finally:
        context.end()
    assert line["level"] == "ERROR" and line["message"] == "unhandled error on GET /x"
    assert line["request_id"] == "req-err"
    assert "RuntimeError: boom" in line["exception"] and "\n" not in formatter.format(record)


@pytest.fixture(scope="module")
def batching_client(models_dir):
    """The app with micro-batching on (off by default), so the queue and batch metrics have samples."""
    from service.app import create_app
    from service.config import Config

    return create_app(Config(model_base_path=models_dir, poll_seconds=0, batching=True), watch=False).test_client()


def test_metrics_count_requests_by_model_version_route_and_status(batching_client):
    client = batching_client
    before = samples(client.get("/metrics").get_data(as_text=True))
    for _ in range(3):
        assert client.post("/api/models/iris/predict", json=SETOSA).status_code == 200
    assert client.post("/v1/models/iris:predict", json={"instances": [[1, 2]]}).status_code == 400
    client.get("/v1/models/made_up_name")
    response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")   # what every Prometheus reads
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.get_data(as_text=True).endswith("# EOF\n")
    after = samples(response.get_data(as_text=True))

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    friendly = "/api/models/<name>/predict"
    assert delta("model_server_requests_total", model="iris", version="1", route=friendly, status="200") == 3
    assert delta("model_server_requests_total", model="iris", version="1", status="400",
                 route="/v1/models/<name>:<any(predict,classify,regress):verb>") == 1
    assert delta("model_server_requests_total", model="", version="", route="/v1/models/<name>", status="404") == 1
    assert not any("made_up_name" in str(key) for key in after)
    assert delta("model_server_request_duration_seconds_count", route=friendly) == 3
    for phase in ("decode", "inference", "encode"):
        assert delta("model_server_request_phase_seconds_count", phase=phase, model="iris") == 3
    assert delta("model_server_request_phase_seconds_count", phase="queue", model="iris") == 3
    assert delta("model_server_batch_size_count", model="iris") == 3
    assert value(after, "model_server_worker_memory_bytes", kind="rss") > 10e6
    assert value(after, "model_server_model_load_seconds_count", model="iris") >= 1


def test_manager_tells_its_observer_about_every_load(tmp_path, models_dir):
    shutil.copytree(models_dir / "iris" / "1", tmp_path / "iris" / "1")
    broken = tmp_path / "iris" / "2"
    shutil.copytree(models_dir / "iris" / "1", broken)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    seen = []

    def loader(name, version, path):
        from service.repository.loader import load_servable

        return load_servable(name, version, path, compile_litert=False)

    manager = ModelManager(tmp_path, loader=loader, settle_seconds=0,
                           observer=lambda *event: seen.append(event))
    manager.refresh()
    assert [(name, version, error is None) for name, version, _, error in seen] == \
        [("iris", 2, False), ("iris", 1, True)]
    assert "version 2" in seen[0][3] and all(seconds > 0 for _, _, seconds, _ in seen)

    def failing_observer(*_event):
        raise RuntimeError("metrics are down")

    quiet = ModelManager(tmp_path, loader=loader, settle_seconds=0, observer=failing_observer)
    quiet.refresh()  # an observer's failure never stops a load
    assert quiet.servable("iris").version == 1


def test_readiness_answers_503_while_draining(client):
    model_ready = client.get("/v2/models/iris/ready").status_code
    assert client.get("/v2/health/ready").status_code == 200
    lifecycle.start_draining()
    try:
        response = client.get("/v2/health/ready")
        assert response.status_code == 503 and "shutting down" in response.get_json()["error"]
        if model_ready == 200:  # the Open Inference Protocol's per-model readiness, where served
            assert client.get("/v2/models/iris/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200          # alive, just leaving
        assert client.post("/api/models/iris/predict", json=SETOSA).status_code == 200   # still serving
    finally:
        lifecycle._draining.clear()
    assert client.get("/v2/health/ready").status_code == 200


# --------------------------------------------------------------------------- real gunicorn

DRAIN_SECONDS = 2.0
GRACE_SECONDS = 30      # drain + in-flight + up to several seconds of TensorFlow teardown per worker when busy


@pytest.fixture(scope="module")
def draining_server(gunicorn_factory):
    return gunicorn_factory({"DRAIN_SECONDS": str(DRAIN_SECONDS), "GRACEFUL_TIMEOUT": str(GRACE_SECONDS)})


def scrape(url: str) -> dict:
    # A new connection per scrape: any worker may answer, and each must answer for all of them.
    return samples(requests.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10).text)


def memory_pids(found: dict) -> set[int]:
    return {int(dict(labels)["pid"]) for name, labels in found if name == "model_server_worker_memory_bytes"}


def worker_pids(server) -> list[int]:
    """The gunicorn master's live children (Linux /proc), i.e. its workers."""
    pids: set[int] = set()
    for children in Path(f"/proc/{server.process.pid}/task").glob("*/children"):
        try:
            pids.update(int(pid) for pid in children.read_text().split())
        except OSError:
            continue
    return sorted(pids)


def wait_for_every_worker(server, timeout: float = 120, gone: int | None = None) -> list[int]:
    """The fixture's readiness check is answered by the first worker up; each worker sets its
    memory gauge once its app is built, so this waits for all of them (and for `gone` to be reaped)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = worker_pids(server)
        if len(workers) == 2 and gone not in workers and memory_pids(scrape(server.url)) == set(workers):
            return workers
        assert time.monotonic() < deadline, f"workers {workers} not all serving"
        time.sleep(0.5)


@pytest.mark.slow
def test_metrics_are_merged_across_workers(draining_server):
    url = draining_server.url
    workers = wait_for_every_worker(draining_server)
    for _ in range(40):
        assert requests.post(f"{url}/api/models/iris/predict", json=SETOSA, headers={"Connection": "close"},
                             timeout=10).status_code == 200
    route = "/api/models/<name>/predict"
    for _ in range(6):
        found = scrape(url)
        assert value(found, "model_server_requests_total", model="iris", version="1", route=route,
                     status="200") == 40
        assert memory_pids(found) == set(workers)
        assert value(found, "model_server_model_load_seconds_count", model="iris") == 2   # one load per worker

    # A worker that dies leaves the live gauges (child_exit -> mark_process_dead) but not the counts.
    os.kill(workers[0], signal.SIGKILL)
    replaced = wait_for_every_worker(draining_server, gone=workers[0])
    assert workers[0] not in replaced and workers[1] in replaced
    found = scrape(url)
    assert memory_pids(found) == set(replaced)
    assert value(found, "model_server_requests_total", model="iris", version="1", route=route, status="200") == 40


@dataclass
class Outcome:
    started: float                 # time.monotonic() just before the request was sent
    kind: str                      # "ok", "connection" (refused/reset: no answer) or "failed"
    detail: str = ""


def _load(url: str, stop: threading.Event, outcomes: list[Outcome]) -> None:
    """One keep-alive client: iris through the friendly API, fashion_mnist batches through TF Serving."""
    session = requests.Session()
    images = {"instances": [[[0] * 28] * 28] * 32}
    turn = 0
    while not stop.is_set():
        turn += 1
        started = time.monotonic()
        try:
            if turn % 3:
                response = session.post(f"{url}/api/models/iris/predict", json=SETOSA, timeout=20)
                good = response.status_code == 200 and response.json()["predictions"][0]["label"] == "setosa"
            else:
                response = session.post(f"{url}/v1/models/fashion_mnist:predict", json=images, timeout=20)
                good = response.status_code == 200 and len(response.json()["predictions"]) == 32
            detail = f"{response.status_code} {response.text[:200]}"
            outcomes.append(Outcome(started, "ok" if good else "failed", detail))
        except requests.ConnectionError as exc:
            outcomes.append(Outcome(started, "connection", repr(exc)[:300]))
            time.sleep(0.05)
        except requests.RequestException as exc:  # a timeout is a failure: the server held the request
            outcomes.append(Outcome(started, "failed", repr(exc)[:300]))


def _probe(url: str, path: str, stop: threading.Event, seen: list[tuple[float, int | None]]) -> None:
    """A load balancer's readiness probe: a new connection every 100 ms; None for no answer."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            status = requests.get(f"{url}{path}", headers={"Connection": "close"}, timeout=5).status_code
        except requests.RequestException:
            status = None
        seen.append((started, status))
        time.sleep(0.1)


def _slow_request(port: int, sigterm_sent: threading.Event, resume_at: list[float]) -> dict:
    """A request in flight across the whole shutdown: headers and half the body before SIGTERM,
    the rest only after the drain, when the worker has stopped accepting."""
    body = json.dumps(SETOSA).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /api/models/iris/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
    sigterm_sent.wait(30)
    time.sleep(max(resume_at[0] - time.monotonic(), 0))
    sock.sendall(body[10:])
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    sock.close()
    head, _, payload = reply.partition(b"\r\n\r\n")
    return {"status_line": head.split(b"\r\n")[0].decode(), "headers": head.decode().lower(), "body": payload}


@pytest.mark.slow
def test_sigterm_drains_then_finishes_in_flight_requests_and_exits_0(draining_server):
    url, process = draining_server.url, draining_server.process
    wait_for_every_worker(draining_server)
    stop_load, stop_probes, sigterm_sent = threading.Event(), threading.Event(), threading.Event()
    outcomes: list[Outcome] = []
    probes: dict[str, list] = {"/v2/health/ready": [], "/v2/models/iris/ready": []}
    model_ready_route = requests.get(f"{url}/v2/models/iris/ready", timeout=10).status_code == 200
    threads = [threading.Thread(target=_load, args=(url, stop_load, outcomes)) for _ in range(8)]
    threads += [threading.Thread(target=_probe, args=(url, path, stop_probes, seen)) for path, seen in probes.items()]
    resume_at = [0.0]
    slow: dict = {}
    slow_thread = threading.Thread(
        target=lambda: slow.update(_slow_request(draining_server.port, sigterm_sent, resume_at)))
    for thread in threads:
        thread.start()
    slow_thread.start()
    time.sleep(3)                                   # full load, every keep-alive connection busy

    log_offset = len(draining_server.log.read_bytes())   # the shutdown's own lines come after this
    sigterm_at = time.monotonic()
    resume_at[0] = sigterm_at + DRAIN_SECONDS + 1.0
    process.send_signal(signal.SIGTERM)
    sigterm_sent.set()
    try:
        returncode = process.wait(timeout=GRACE_SECONDS + 5)
    finally:
        exited_at = time.monotonic()
        stop_load.set()
        stop_probes.set()
        for thread in [*threads, slow_thread]:
            thread.join(30)

    # The master exits 0, within the grace period, having killed nothing.
    assert returncode == 0
    assert exited_at - sigterm_at < GRACE_SECONDS
    log = draining_server.log.read_bytes()[log_offset:].decode()
    assert "SIGKILL" not in log and "WORKER TIMEOUT" not in log
    assert log.count("SIGTERM: readiness answers 503") == 2

    # Every request sent before SIGTERM, and every one sent during the drain, was answered right.
    before = [o for o in outcomes if o.started < sigterm_at]
    during = [o for o in outcomes if sigterm_at <= o.started < sigterm_at + DRAIN_SECONDS - 0.3]
    after = [o for o in outcomes if o.started >= sigterm_at + DRAIN_SECONDS - 0.3]
    print(f"SIGTERM -> exit {exited_at - sigterm_at:.1f} s; requests before {len(before)}, during the drain "
          f"{len(during)}, after {len(after)} ({sum(o.kind == 'connection' for o in after)} without an answer)")
    assert len(before) > 50 and len(during) > 20
    wrong = [o for o in before + during if o.kind != "ok"]
    assert wrong == [], [(round(o.started - sigterm_at, 2), o.kind, o.detail[:80]) for o in wrong[:10]]
    # After the drain a new connection may be refused or reset, but nothing is answered wrongly.
    assert [o for o in after if o.kind == "failed"] == []

    # The request whose body was still arriving when the workers stopped accepting was finished.
    # (Its headers may say keep-alive: gunicorn decides that when it reads the headers, before
    # SIGTERM; it closes the connection after the answer all the same, which ended our read.)
    assert slow["status_line"] == "HTTP/1.1 200 OK", slow
    assert json.loads(slow["body"])["predictions"][0]["label"] == "setosa"

    # Readiness: 200 before SIGTERM, 503 during the drain (the worker still answers), never 200 after.
    for path, seen in probes.items():
        if path != "/v2/health/ready" and not model_ready_route:
            continue
        assert {status for started, status in seen if started < sigterm_at - 0.2} == {200}, path
        drain = [status for started, status in seen if sigterm_at + 0.3 <= started < sigterm_at + DRAIN_SECONDS - 0.3]
        assert drain and set(drain) == {503}, (path, drain)
        assert 200 not in {status for started, status in seen if started >= sigterm_at + 0.3}, path


# --------------------------------------------------------------------------- hot reload under load

POLL_SECONDS = 0.5
RUN_SECONDS = 60
PUBLISH_V2, PUBLISH_V3, REMOVE_V2 = 10.0, 26.0, 36.0     # seconds after locust starts
SWITCH_SECONDS = 12.0      # settle (1 s) + poll (0.5 s) + load and self-test in each worker, on a busy machine


def _publish(model_dir: Path, version: int, source: Path, corrupt: bool = False) -> None:
    """Like training's export: build in a hidden staging folder, then one rename makes it visible."""
    staging = model_dir / f".staging-{version}"
    shutil.copytree(source, staging)
    card_path = staging / "assets.extra" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["version"] = version
    for entry in card["classes"]:   # this version's own names: each answer shows which version computed it
        entry["name"] = f"{entry['name']}-v{version}"
    card_path.write_text(json.dumps(card))
    if corrupt:
        (staging / "saved_model.pb").write_bytes(os.urandom(4096))
    os.rename(staging, model_dir / str(version))


def _status(url: str) -> dict[str, dict]:
    answer = requests.get(f"{url}/v1/models/iris", headers={"Connection": "close"}, timeout=10).json()
    return {entry["version"]: entry for entry in answer["model_version_status"]}


@pytest.mark.slow
def test_a_worker_answers_while_it_loads_a_version(gunicorn_factory, models_copy):
    """Loads run off the worker's event loop (service/runtime.py, off_the_loop). One worker
    reports version 2 as LOADING while it loads it: a worker whose loop the load held could
    only ever answer before the load began (no version 2) or after it ended (AVAILABLE)."""
    server = gunicorn_factory({"WEB_CONCURRENCY": "1", "MODEL_BASE_PATH": str(models_copy),
                               "POLL_SECONDS": "0.2", "ACCESS_LOG": ""})
    iris = models_copy / "iris"
    _publish(iris, 2, iris / "1")
    seen: list[str] = []
    deadline = time.monotonic() + 60
    with requests.Session() as session:
        while "AVAILABLE" not in seen:
            assert time.monotonic() < deadline, f"version 2 not available in time; states seen {seen}"
            answer = session.get(f"{server.url}/v1/models/iris", timeout=10).json()
            state = {e["version"]: e["state"] for e in answer["model_version_status"]}.get("2")
            if state is not None and seen[-1:] != [state]:
                seen.append(state)
    assert seen == ["LOADING", "AVAILABLE"]


@pytest.mark.slow
def test_hot_reload_under_locust_load(gunicorn_factory, models_copy, tmp_path):
    server = gunicorn_factory({"MODEL_BASE_PATH": str(models_copy), "POLL_SECONDS": str(POLL_SECONDS),
                               "ACCESS_LOG": ""})
    wait_for_every_worker(server)
    iris = models_copy / "iris"
    records_file, locust_log = tmp_path / "records.json", tmp_path / "locust.log"
    with locust_log.open("wb") as log_handle:  # the child keeps its own copy of the descriptor
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "tests" / "e2e" / "locust_hot_reload.py"), "--headless",
             "--host", server.url, "--users", "50", "--spawn-rate", "25", "--run-time", f"{RUN_SECONDS}s",
             "--only-summary", "--stop-timeout", "5", "--exit-code-on-error", "1", "--loglevel", "WARNING"],
            cwd=ROOT, env={**os.environ, "HOT_RELOAD_RECORDS": str(records_file)},
            stdout=log_handle, stderr=subprocess.STDOUT,
        )
    t0 = time.time()
    try:
        time.sleep(max(t0 + PUBLISH_V2 - time.time(), 0))
        _publish(iris, 2, iris / "1")
        time.sleep(max(t0 + PUBLISH_V3 - time.time(), 0))
        _publish(iris, 3, iris / "1", corrupt=True)
        # Once each worker has tried version 3, the status route shows why it is not served.
        # New connections, so either worker may answer: six in a row must have it.
        deadline, streak = time.time() + SWITCH_SECONDS, 0
        while streak < 6:
            assert time.time() < deadline, "version 3's failure is not reported by every worker"
            streak = streak + 1 if _status(server.url).get("3", {}).get("state") == "END" else 0
            time.sleep(0.2)
        statuses = [_status(server.url) for _ in range(6)]
        time.sleep(max(t0 + REMOVE_V2 - time.time(), 0))
        # Out of sight in one rename, then deleted: a half-deleted folder is never scanned.
        os.rename(iris / "2", iris / ".removed-2")
        shutil.rmtree(iris / ".removed-2")
        locust.wait(timeout=RUN_SECONDS + 60)
    finally:
        if locust.poll() is None:
            locust.kill()
            locust.wait()
    summary = locust_log.read_text(errors="replace")[-3000:]
    assert locust.returncode == 0, summary
    records = json.loads(records_file.read_text())
    assert len(records) > 2000, summary

    failed = [r for r in records if r[2] != 200 or r[4] is not None]
    assert failed == [], failed[:10]
    assert {r[3] for r in records} == {1, 2}

    def versions(start: float, end: float) -> set[int]:
        return {version for started, _, _, version, _ in records if t0 + start <= started < t0 + end}

    last_v1 = max(started for started, _, _, v, _ in records if v == 1 and started < t0 + REMOVE_V2) - t0
    last_v2 = max(started for started, _, _, v, _ in records if v == 2) - t0
    print(f"{len(records)} answers; last version 1 answer {last_v1 - PUBLISH_V2:.1f} s after publishing 2, "
          f"last version 2 answer {last_v2 - REMOVE_V2:.1f} s after removing it")
    assert {v for _, ended, _, v, _ in records if ended < t0 + PUBLISH_V2} == {1}
    assert versions(PUBLISH_V2 + SWITCH_SECONDS, PUBLISH_V3) == {2}             # 1 -> 2 once published
    assert versions(PUBLISH_V3, REMOVE_V2) == {2}                               # a corrupt 3 changes nothing
    assert versions(REMOVE_V2 + SWITCH_SECONDS, float("inf")) == {1}           # back to 1 when 2 is gone

    for status in statuses:
        assert status["3"]["state"] == "END", status
        assert status["3"]["status"]["error_code"] == "UNKNOWN"
        assert "version 3" in status["3"]["status"]["error_message"]
        assert status["2"]["state"] == "AVAILABLE"
    found = scrape(server.url)
    assert value(found, "model_server_model_load_failures_total", model="iris") == 2    # once per worker
