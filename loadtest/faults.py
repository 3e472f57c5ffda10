"""`make faults`: faults injected into a real server under a locust load of 50 users, with figures.

    python loadtest/faults.py                          # every scenario (about 4 minutes here)
    python loadtest/faults.py worker-kill slow-clients # some of them

Scenarios (each starts its own gunicorn, 2 workers, the way `make serve` runs it):

  worker-kill   SIGKILL to one worker: gunicorn forks a replacement; the failed requests are
                the ones that worker held; readiness never drops, the new worker serves soon
  sigterm       SIGTERM to the master: no request sent before it, or during the drain, fails
  hot-reload    a new version, a corrupt newer one, then the served version's folder deleted
  unreadable    the models folder renamed away, then a symlink loop in its place (tests run as
                root, for whom chmod blocks nothing), then back: served versions keep serving,
                the errors are logged, and a version published afterwards is picked up
  slow-clients  one client sending a byte a second, then 20 of them: the other clients'
                latency, and how long each slow one stays connected

The pytest suite runs worker-kill, unreadable and slow-clients (tests/e2e/test_faults.py); the
SIGTERM and hot-reload behaviour is tested by tests/e2e/test_operations.py, so here they are only
measured. Every load request is checked (loadtest/locust_faults.py) and recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from loadtest.server import MODELS, GunicornServer  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().parent / "locust_faults.py"
USERS = 50
SLOW_TIMEOUT = 5.0          # REQUEST_TIMEOUT of the slow-clients server, seconds
SLOW_CLIENTS = 20           # at once, each of which must hold only itself up


# --------------------------------------------------------------------------- records and outcomes

@dataclass(frozen=True)
class Record:
    """One load request, as loadtest/locust_faults.py wrote it."""

    start: float
    end: float
    status: int
    error: str | None
    version: int | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Outcome:
    """A scenario's figures (for the report) and problems (what a test fails on)."""

    name: str
    figures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


def describe(records: list[Record]) -> str:
    if not records:
        return "no requests"
    times = sorted(r.seconds * 1000 for r in records)
    failed = sum(not r.ok for r in records)

    def pct(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))]

    return (f"{len(records)} requests, {failed} failed, p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, "
            f"max {times[-1]:.0f} ms")


def started_between(records: list[Record], start: float, end: float) -> list[Record]:
    return [r for r in records if start <= r.start < end]


def failures(records: Iterable[Record], limit: int = 5) -> str:
    bad = [r for r in records if not r.ok]
    return "; ".join(f"{r.status} {r.error}" for r in bad[:limit]) + (" ..." if len(bad) > limit else "")


# --------------------------------------------------------------------------- load, probes, workers

class LocustLoad:
    """Locust, headless, USERS users of loadtest/locust_faults.py; `seconds` of load once it flows."""

    def __init__(self, url: str, seconds: float, workdir: Path, users: int = USERS) -> None:
        self.records_file = workdir / "records.json"
        self.log = workdir / "locust.log"
        self.seconds = seconds
        with self.log.open("wb") as handle:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
                 # Longer than needed: finish() stops it `seconds` after the load started flowing.
                 "--users", str(users), "--spawn-rate", "25", "--run-time", f"{seconds + 60:g}s", "--only-summary",
                 "--stop-timeout", "5", "--loglevel", "WARNING"],
                cwd=ROOT, env={**os.environ, "FAULT_RECORDS": str(self.records_file)},
                stdout=handle, stderr=subprocess.STDOUT,
            )
        self.t0 = time.time()
        self.flowing = self._wait_for_traffic(url)

    def _wait_for_traffic(self, url: str, timeout: float = 30.0) -> float:
        """Locust takes seconds to start on a busy machine: scenario times count from when the
        server has answered a hundred of its requests (the request counter of /metrics)."""
        first = served(url)
        deadline = time.time() + timeout
        while served(url) < first + 100:
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"locust sent no load:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return time.time()

    def at(self, offset: float) -> float:
        """Sleep until `offset` seconds after the load started flowing; the time then."""
        time.sleep(max(self.flowing + offset - time.time(), 0))
        return time.time()

    def finish(self) -> list[Record]:
        """Stop the load `seconds` after it started flowing (SIGTERM: locust quits cleanly and writes
        its records); the records."""
        self.at(self.seconds)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if not self.records_file.exists():
            raise RuntimeError(f"locust wrote no records:\n{self.log.read_text(errors='replace')[-3000:]}")
        return [Record(*row) for row in json.loads(self.records_file.read_text())]


class Prober:
    """A load balancer's probe: GET `path` on a new connection every 100 ms; (time, status or 0)."""

    def __init__(self, url: str, path: str = "/v2/health/ready") -> None:
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url + path,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        while not self._stop.is_set():
            started = time.time()
            try:
                status = requests.get(url, headers={"Connection": "close"}, timeout=5).status_code
            except requests.RequestException:
                status = 0
            self.seen.append((started, status))
            self._stop.wait(0.1)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(10)
        return self.seen


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """/metrics as (sample name, labels, value); empty when the server does not answer."""
    try:
        text = requests.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10).text
    except requests.RequestException:
        return []
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def memory_pids(url: str) -> set[int]:
    """Workers whose app is built: each sets its memory gauge (service/ops/metrics.py) once serving."""
    return {int(labels["pid"]) for name, labels, _ in scrape(url) if name == "model_server_worker_memory_bytes"}


def served(url: str) -> float:
    """Requests the server has answered so far, all workers together."""
    return sum(value for name, _, value in scrape(url) if name == "model_server_requests_total")


def wait_for_workers(server: GunicornServer, count: int = 2, timeout: float = 120.0) -> list[int]:
    """The readiness check is answered by the first worker up: wait until all of them serve."""
    deadline = time.monotonic() + timeout
    while True:
        workers = server.worker_pids()
        if len(workers) == count and memory_pids(server.url) >= set(workers):
            return workers
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers {workers} not all serving after {timeout:g} s")
        time.sleep(0.5)


def publish(model_dir: Path, version: int, source: Path, corrupt: bool = False) -> None:
    """As training's export does it: build in a hidden staging folder, one rename makes it visible."""
    staging = model_dir / f".staging-{version}"
    shutil.copytree(source, staging)
    if corrupt:
        (staging / "saved_model.pb").write_bytes(os.urandom(4096))
    os.rename(staging, model_dir / str(version))


def remove(folder: Path) -> None:
    """Out of sight in one rename, then deleted: a half-deleted folder is never scanned."""
    hidden = folder.with_name(f".removed-{folder.name}")
    os.rename(folder, hidden)
    shutil.rmtree(hidden)


def log_since(server: GunicornServer, offset: int) -> str:
    return server.log.read_bytes()[offset:].decode(errors="replace")


# --------------------------------------------------------------------------- scenarios

def worker_kill(server: GunicornServer, workdir: Path, *, seconds: float = 25, ready_limit: float = 10.0,
                serving_limit: float = 60.0) -> Outcome:
    """SIGKILL one of two workers 8 s into the load.

    Readiness (what a load balancer sees) must not be down for more than `ready_limit` seconds
    in a row; the replacement must be serving within `serving_limit` (it imports TensorFlow and
    loads and self-tests every model first: about 10 s here under this load).
    """
    out = Outcome("worker SIGKILL")
    workers = wait_for_workers(server)
    load = LocustLoad(server.url, seconds, workdir)
    probe = Prober(server.url)
    killed_at = load.at(8)
    os.kill(workers[0], signal.SIGKILL)
    forked_at = serving_at = None
    while time.time() < killed_at + 60:
        new = [pid for pid in server.worker_pids() if pid not in workers]
        if new and forked_at is None:
            forked_at = time.time()
        if new and new[0] in memory_pids(server.url):
            serving_at = time.time()
            break
        time.sleep(0.2)
    records = load.finish()
    probes = probe.stop()

    # In flight: sent by the time the worker died (a few ms after the signal) and not yet answered.
    in_flight = [r for r in records if r.start <= killed_at + 0.05 and r.end > killed_at]
    failed = [r for r in records if not r.ok]
    late = [r for r in failed if not killed_at - 0.5 <= r.start <= killed_at + 2.0]
    not_ready = [t for t, status in probes if status != 200]
    down = longest_run(probes, lambda status: status != 200)
    out.figures.update({
        "load": describe(records),
        "in flight at the kill (both workers)": str(len(in_flight)),
        "failed": f"{len(failed)}" + (f" ({failures(failed, 3)})" if failed else ""),
        "replacement forked after": f"{forked_at - killed_at:.1f} s" if forked_at else "never",
        "replacement serving after": f"{serving_at - killed_at:.1f} s" if serving_at else "never",
        "readiness probes not 200": f"{len(not_ready)} of {len(probes)} (longest outage {down:.1f} s)",
    })
    out.expect(len(records) > 500, f"too little load to judge: {len(records)} requests")
    out.expect(len(failed) <= len(in_flight), f"{len(failed)} failed, more than the {len(in_flight)} in flight")
    out.expect(not late, f"{len(late)} failures away from the kill: {failures(late)}")
    out.expect(serving_at is not None and serving_at - killed_at <= serving_limit,
               f"replacement worker not serving within {serving_limit:g} s")
    out.expect(down <= ready_limit, f"readiness down for {down:.1f} s in a row")
    return out


def longest_run(probes: list[tuple[float, int]], bad: Callable[[int], bool]) -> float:
    """The longest time, in seconds, that consecutive probes were bad."""
    longest, since = 0.0, None
    for started, status in probes:
        if bad(status):
            since = started if since is None else since
            longest = max(longest, started - since)
        else:
            since = None
    return longest


def master_sigterm(server: GunicornServer, workdir: Path, *, seconds: float = 20, drain: float = 2.0) -> Outcome:
    """SIGTERM to the master 8 s into the load (the server runs with DRAIN_SECONDS=`drain`)."""
    out = Outcome("master SIGTERM")
    wait_for_workers(server)
    load = LocustLoad(server.url, seconds, workdir)
    term_at = load.at(8)
    server.process.send_signal(signal.SIGTERM)
    returncode = server.process.wait(timeout=60)
    exited_at = time.time()
    records = load.finish()

    before = started_between(records, 0, term_at)
    in_flight = [r for r in before if r.end > term_at]
    during = started_between(records, term_at, term_at + drain - 0.2)
    after = started_between(records, term_at + drain - 0.2, float("inf"))
    out.figures.update({
        "before SIGTERM": describe(before),
        "in flight at SIGTERM": f"{len(in_flight)}, failed {sum(not r.ok for r in in_flight)}",
        "during the drain": describe(during),
        "after the drain (no server)": f"{len(after)} requests, {sum(r.status == 0 for r in after)} refused/reset",
        "master exit": f"code {returncode} after {exited_at - term_at:.1f} s",
    })
    out.expect(returncode == 0, f"master exited with {returncode}")
    out.expect(all(r.ok for r in before + during), f"failed before/during the drain: {failures(before + during)}")
    out.expect(all(r.ok or r.status == 0 for r in after), f"wrong answers after the drain: {failures(after)}")
    return out


def hot_reload(server: GunicornServer, workdir: Path, models: Path, *, seconds: float = 34) -> Outcome:
    """iris version 2 published at 6 s, a corrupt version 3 at 14 s, version 2's folder deleted at 22 s."""
    out = Outcome("corrupt version, deleted version")
    wait_for_workers(server)
    iris = models / "iris"
    load = LocustLoad(server.url, seconds, workdir)
    published_at = load.at(6)
    publish(iris, 2, iris / "1")
    load.at(14)
    publish(iris, 3, iris / "1", corrupt=True)
    removed_at = load.at(22)
    remove(iris / "2")
    records = load.finish()

    answered = {r.version for r in records if r.version is not None}
    first_v2 = min((r.start for r in records if r.version == 2), default=None)
    last_v2 = max((r.end for r in records if r.version == 2), default=None)
    out.figures.update({
        "load": describe(records),
        "versions that answered": ", ".join(map(str, sorted(answered))),
        "version 2 first answer after publishing": f"{first_v2 - published_at:.1f} s" if first_v2 else "never",
        "version 2 last answer after deleting it": f"{last_v2 - removed_at:.1f} s" if last_v2 else "never",
    })
    out.expect(all(r.ok for r in records), f"failed: {failures(records)}")
    out.expect(answered == {1, 2}, f"versions answering: {sorted(answered)}, expected 1 and 2 (never 3)")
    return out


def unreadable(server: GunicornServer, workdir: Path, models: Path, *, seconds: float = 30) -> Outcome:
    """The models folder away from 5 s to 13 s (renamed, then a symlink loop), then a new version."""
    out = Outcome("models folder unreadable")
    wait_for_workers(server)
    offset = len(server.log.read_bytes())
    away = models.with_name(models.name + ".away")
    plot = f"{server.url}/api/models/iris/versions/1/plots/confusion_matrix.png"
    load = LocustLoad(server.url, seconds, workdir)
    gone_at = load.at(5)
    os.rename(models, away)
    load.at(7)
    plot_status = requests.get(plot, timeout=10)   # a file read on request, while its folder is away
    load.at(9)
    os.symlink(models, models)                       # a loop: scanning it fails with ELOOP
    back_at = load.at(13)
    os.unlink(models)
    os.rename(away, models)
    published_at = load.at(15)
    publish(models / "iris", 2, models / "iris" / "1")
    records = load.finish()
    log = log_since(server, offset)

    during = started_between(records, gone_at, back_at)
    first_v2 = min((r.start for r in records if r.version == 2), default=None)
    errors = [line for line in log.splitlines() if "cannot be read" in line]
    out.figures.update({
        "load": describe(records),
        "while unreadable (8 s)": describe(during),
        "errors logged": f"{len(errors)} ({', '.join(sorted({_reason(line) for line in errors}))})",
        "plot file while away": f"{plot_status.status_code} {plot_status.text[:80]}",
        "new version served after publishing": f"{first_v2 - published_at:.1f} s" if first_v2 else "never",
    })
    out.expect(all(r.ok for r in records), f"failed: {failures(records)}")
    out.expect(len(during) > 200, f"too little load while unreadable: {len(during)}")
    out.expect(len(errors) >= 2, f"unreadable folder not logged: {len(errors)} lines")
    # The plot is read from disk per request: while its folder is away, "try again" in JSON, not a 500.
    out.expect(plot_status.status_code == 503 and "try again" in plot_status.text,
               f"plot while away answered {plot_status.status_code}")
    out.expect(first_v2 is not None, "version 2, published after recovery, never answered")
    return out


def _reason(line: str) -> str:
    text = line.rsplit("(", 1)[-1]
    return text.split(")", 1)[0][:40]


class SlowClient:
    """A client sending a request one byte a second; records when the server cut it off."""

    def __init__(self, port: int) -> None:
        self.opened = time.time()
        self.closed: float | None = None
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        request = b"POST /api/models/iris/predict HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"a" * 600
        try:
            for byte in request:
                self._sock.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:
            pass  # cut off: the point of the exercise
        self.closed = time.time()
        self._sock.close()

    def held(self) -> float | None:
        return None if self.closed is None else self.closed - self.opened

    def wait_closed(self, until: float) -> None:
        """Give the server until `until` (a time.time()) to cut this client before judging."""
        self._thread.join(max(0.0, until - time.time()))


def slow_clients(server: GunicornServer, workdir: Path, *, request_timeout: float = SLOW_TIMEOUT,
                 seconds: float = 26) -> Outcome:
    """One slow client at 5 s, then SLOW_CLIENTS of them at 13 s (the server has REQUEST_TIMEOUT set)."""
    out = Outcome("slow clients")
    wait_for_workers(server)
    load = LocustLoad(server.url, seconds, workdir)
    one_at = load.at(5)
    one = SlowClient(server.port)
    many_at = load.at(13)
    many = [SlowClient(server.port) for _ in range(SLOW_CLIENTS)]
    load.at(13 + request_timeout + 4)
    records = load.finish()
    # On a busy machine the load can end before the last deadline has passed: wait for it
    # rather than judge too early (and longer than it, so that a late cut shows as late).
    limit = request_timeout + 2.5
    for client in [one, *many]:
        client.wait_closed(client.opened + 2 * limit + 1)

    baseline = started_between(records, one_at - 5, one_at)
    with_one = started_between(records, one_at, one_at + request_timeout)
    with_many = started_between(records, many_at, many_at + request_timeout + 1)
    after = started_between(records, many_at + request_timeout + 2, float("inf"))
    held = [c.held() for c in [one, *many]]
    longest = max((h for h in held if h is not None), default=None)
    out.figures.update({
        "baseline (5 s)": describe(baseline),
        "with 1 slow client": describe(with_one),
        f"with {SLOW_CLIENTS} slow clients": describe(with_many),
        "after they were cut": describe(after),
        "1 slow client connected for": f"{one.held():.1f} s" if one.held() else "still open",
        f"longest of the {SLOW_CLIENTS}": f"{longest:.1f} s" if longest else "open",
    })
    # The deadline, plus the trickle's own second between bytes and a busy machine's slack (limit, above).
    out.expect(all(r.ok for r in records), f"failed: {failures(records)}")
    out.expect(one.held() is not None and one.held() <= limit, f"1 slow client not cut within {limit:g} s")
    # Each holds a greenlet of its own, from its first byte: none waits for another's deadline.
    out.expect(all(h is not None and h <= limit for h in held), f"slow clients not cut in time: {held}")
    out.expect(all(r.seconds <= limit + 1 for r in with_many + after),
               "a request waited longer than REQUEST_TIMEOUT for the slow clients")
    return out


# --------------------------------------------------------------------------- the command

SCENARIOS: dict[str, tuple[dict[str, str], Callable[..., Outcome], bool]] = {
    # name: (server environment, scenario, needs a private copy of the models)
    "worker-kill": ({}, worker_kill, False),
    "sigterm": ({"DRAIN_SECONDS": "2", "GRACEFUL_TIMEOUT": "20"}, master_sigterm, False),
    "hot-reload": ({"POLL_SECONDS": "0.5"}, hot_reload, True),
    "unreadable": ({"POLL_SECONDS": "0.5"}, unreadable, True),
    "slow-clients": ({"REQUEST_TIMEOUT": str(SLOW_TIMEOUT)}, slow_clients, False),
}


def run(name: str, workdir: Path) -> Outcome:
    env, scenario, private_models = SCENARIOS[name]
    models = MODELS
    if private_models:
        models = workdir / "models"
        shutil.copytree(MODELS, models)
    server = GunicornServer({"WEB_CONCURRENCY": "2", "MODEL_BASE_PATH": str(models), "ACCESS_LOG": "", **env},
                            workdir / "server.log")
    try:
        server.wait_ready()
        if private_models:
            return scenario(server, workdir, models)
        return scenario(server, workdir)
    finally:
        server.stop()


def print_outcome(outcome: Outcome) -> None:
    print(f"\n## {outcome.name}: {'OK' if not outcome.problems else 'PROBLEMS'}")
    width = max(len(key) for key in outcome.figures) if outcome.figures else 0
    for key, value in outcome.figures.items():
        print(f"  {key:<{width}}  {value}")
    for problem in outcome.problems:
        print(f"  PROBLEM: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    args = parser.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    problems = 0
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        for name in names:
            workdir = Path(tmp) / name
            workdir.mkdir()
            print(f"running {name} ...", flush=True)
            outcome = run(name, workdir)
            print_outcome(outcome)
            problems += len(outcome.problems)
    print(f"\n{len(names)} scenario(s), {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
