"""The gunicorn worker's own scheduling: connections spread over workers, busy connections kept on their thread."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest
import requests
from gunicorn.workers.gthread import ThreadWorker

from service.worker import ACCEPT_DEFER_SECONDS, LINGER_SECONDS, DeadlineThreadWorker


def make_worker(threads: int = 4, workers: int = 2) -> DeadlineThreadWorker:
    """The worker's state as gunicorn leaves it after init_process, without a process around it."""
    w = DeadlineThreadWorker.__new__(DeadlineThreadWorker)
    w.cfg = SimpleNamespace(threads=threads, workers=workers)
    w.request_timeout = 30.0
    w.alive = True
    w.nr_conns = 0
    w._accepting = True
    w._deadlines = {}
    w._deadlines_lock = threading.Lock()
    w._accept_resume_at = 0.0
    w._take_one = False
    w._waiting = 0
    w._waiting_lock = threading.Lock()
    return w


@pytest.fixture
def gthread(monkeypatch):
    """Record what the worker asks of gunicorn's ThreadWorker instead of touching sockets."""
    calls: list[tuple] = []

    def accept(self, listener):
        calls.append(("accept",))
        self.nr_conns += 1

    def set_accept_enabled(self, enabled):
        calls.append(("enabled", enabled))
        self._accepting = enabled

    monkeypatch.setattr(ThreadWorker, "accept", accept)
    monkeypatch.setattr(ThreadWorker, "set_accept_enabled", set_accept_enabled)
    return calls


def test_a_worker_with_a_connection_per_thread_leaves_a_new_one_to_others_for_a_moment(gthread):
    w = make_worker(threads=2)
    w.accept(None)
    w.accept(None)
    assert gthread == [("accept",), ("accept",)]
    gthread.clear()

    w.accept(None)                                    # a third connection: deferred, not taken
    assert gthread == [("enabled", False)] and w.nr_conns == 2
    w.set_accept_enabled(True)                        # gthread's loop asks again at once: not yet
    assert gthread == [("enabled", False)]
    time.sleep(ACCEPT_DEFER_SECONDS * 1.5)
    w.set_accept_enabled(True)                        # the deferral is over
    w.accept(None)                                    # nobody else took it: this worker does,
    w.accept(None)                                    # but only that one: the next is deferred
    assert gthread[1:] == [("enabled", True), ("accept",), ("enabled", False)] and w.nr_conns == 3


def test_a_single_worker_does_not_defer(gthread):
    alone = make_worker(threads=2, workers=1)         # nobody to leave it to
    alone.nr_conns = 9
    alone.accept(None)
    assert gthread == [("accept",)]


def test_the_wait_is_cut_short_so_a_deferral_ends_on_time(monkeypatch):
    waited: list[float] = []
    monkeypatch.setattr(ThreadWorker, "wait_for_and_dispatch_events", lambda self, timeout: waited.append(timeout))
    w = make_worker()
    w.wait_for_and_dispatch_events(1.0)
    w._accept_resume_at = time.monotonic() + 0.002
    w.wait_for_and_dispatch_events(1.0)
    assert waited[0] == 1.0 and 0 < waited[1] <= 0.002


def fake_handle(monkeypatch, answers: list[object]) -> list[int]:
    """gunicorn's handle() answering `answers` in turn (True: keep-alive); returns the deadlines seen."""
    seen: list[int] = []

    def handle(self, conn):
        seen.append(len(self._deadlines))             # each request runs under a deadline
        return answers.pop(0)

    monkeypatch.setattr(ThreadWorker, "handle", handle)
    return seen


def test_a_thread_serves_a_busy_keep_alive_connection_itself(monkeypatch):
    w = make_worker(threads=4)
    w.nr_conns, w._waiting = 2, 1
    seen = fake_handle(monkeypatch, [True, True, False])
    monkeypatch.setattr(DeadlineThreadWorker, "_next_soon", staticmethod(lambda conn: True))
    assert w.handle(object()) is False                # three requests, then the client closed
    assert seen == [1, 1, 1] and w._waiting == 0 and w._deadlines == {}


@pytest.mark.parametrize("situation", ["other connection waiting", "more connections than threads",
                                       "stopping", "no next request"])
def test_the_connection_goes_back_to_the_main_loop(monkeypatch, situation):
    w = make_worker(threads=4)
    w.nr_conns = 5 if situation == "more connections than threads" else 2
    w.alive = situation != "stopping"
    fake_handle(monkeypatch, [True, True])

    def next_soon(conn):
        if situation == "other connection waiting":
            w._waiting = 1                            # another connection queued meanwhile
            return True
        return situation != "no next request"

    monkeypatch.setattr(DeadlineThreadWorker, "_next_soon", staticmethod(next_soon))
    assert w.handle(object()) is True                 # kept alive, handed back after one request
    assert w._deadlines == {}


def test_next_soon_sees_a_waiting_request_and_gives_up_after_the_linger():
    ours, client = socket.socketpair()
    with ours, client:
        conn = SimpleNamespace(sock=ours, parser=SimpleNamespace(unreader=SimpleNamespace(buf=_Buffer(b""))))
        started = time.monotonic()
        assert DeadlineThreadWorker._next_soon(conn) is False
        assert time.monotonic() - started >= LINGER_SECONDS * 0.9
        client.sendall(b"GET / HTTP/1.1\r\n")
        assert DeadlineThreadWorker._next_soon(conn) is True
        already_read = SimpleNamespace(sock=ours, parser=SimpleNamespace(unreader=SimpleNamespace(buf=_Buffer(b"G"))))
        assert DeadlineThreadWorker._next_soon(already_read) is True


class _Buffer:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def getvalue(self) -> bytes:
        return self.data


@pytest.mark.slow
def test_a_busy_keep_alive_client_does_not_starve_another(gunicorn_factory, models_copy):
    """One worker, one thread: a client sending requests back to back, and another asking once."""
    server = gunicorn_factory({"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "1", "MODEL_BASE_PATH": str(models_copy)})
    stop = threading.Event()
    answered = []

    def busy() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                answered.append(session.get(f"{server.url}/v2/health/live", timeout=10).status_code)

    hammer = threading.Thread(target=busy)
    hammer.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        response = requests.get(f"{server.url}/v2/health/ready", timeout=10)
        took = time.monotonic() - started
    finally:
        stop.set()
        hammer.join(timeout=15)
    assert response.status_code == 200
    assert took < 2.0, f"the second client waited {took:.2f} s"
    assert len(answered) > 10 and set(answered) == {200}
