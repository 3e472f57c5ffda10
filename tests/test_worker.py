"""The gunicorn worker's own scheduling: connections spread over workers, served in turn, closed on stop.

Its deadlines are tested end to end: slow clients in tests/test_faults.py, bodies that never
come in the catalogue of tests/test_reliability.py."""

from __future__ import annotations

import signal
import socket
import threading
import time

import gevent
import pytest
from gevent.pool import Pool

from service.worker import ACCEPT_DEFER_SECONDS, BalancedServer, FairGeventWorker


@pytest.fixture
def listener():
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def hold(pool: Pool, count: int) -> None:
    """`count` connections in the worker: greenlets that stay until the pool is killed."""
    for _ in range(count):
        pool.spawn(gevent.sleep, 60)


def test_a_worker_holding_its_share_leaves_a_new_connection_to_others_for_a_moment(listener):
    pool = Pool(100)
    server = BalancedServer(listener, lambda *args: None, pool, balance_at=3)
    server.start()
    try:
        hold(pool, 2)
        assert server.full() is False                 # under its share: accepted at once
        hold(pool, 1)
        assert server.full() is True                  # its share: deferred, not taken
        assert server.full() is True                  # asked again at once: still not
        gevent.sleep(ACCEPT_DEFER_SECONDS * 3)        # the deferral is over: nobody else took it,
        assert server.full() is False                 # so this worker does,
        assert server.full() is True                  # but only that one: the next is deferred
    finally:
        server.stop()
        pool.kill()


def test_a_single_worker_does_not_defer(listener):
    pool = Pool(100)
    server = BalancedServer(listener, lambda *args: None, pool, balance_at=None)   # nobody to leave it to
    try:
        hold(pool, 50)
        assert server.full() is False
    finally:
        pool.kill()


def test_a_full_pool_pauses_accepting_and_resumes_when_a_connection_ends(listener):
    pool = Pool(2)
    server = BalancedServer(listener, lambda *args: None, pool, balance_at=None)
    server.start()
    try:
        pool.spawn(gevent.sleep, 60)
        short = pool.spawn(gevent.sleep, 0)
        assert server.full() is True                  # WORKER_CONNECTIONS reached
        short.join()
        gevent.sleep(ACCEPT_DEFER_SECONDS * 3)
        assert server.full() is False
    finally:
        server.stop()
        pool.kill()


PIPELINED = 300


def _read_answers(sock: socket.socket, sent_at: float, finished: list[float]) -> None:
    """Read until PIPELINED answers came back; note how long after sending the last one arrived."""
    seen = b""
    while seen.count(b"HTTP/1.1 200 OK") < PIPELINED:
        chunk = sock.recv(65536)
        if not chunk:
            break
        seen += chunk
    finished.append(time.monotonic() - sent_at if seen.count(b"HTTP/1.1 200 OK") == PIPELINED else float("inf"))


@pytest.mark.slow
def test_connections_with_requests_waiting_are_served_in_turn(gunicorn_factory, models_copy):
    """One worker, four connections with 300 requests each already sent (pipelined): served one
    request per connection in turn, they all finish near the end; served one connection after
    the other (gevent's own worker), the first would finish after about a quarter of the time."""
    server = gunicorn_factory({"WEB_CONCURRENCY": "1", "MODEL_BASE_PATH": str(models_copy), "ACCESS_LOG": ""})
    request = f"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    connections = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(4)]
    finished: list[float] = []
    try:
        sent_at = time.monotonic()
        for sock in connections:
            sock.sendall(request * PIPELINED)
        readers = [threading.Thread(target=_read_answers, args=(sock, sent_at, finished)) for sock in connections]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout=60)
    finally:
        for sock in connections:
            sock.close()
    assert len(finished) == 4 and max(finished) < 60, finished
    assert min(finished) >= 0.7 * max(finished), [f"{t:.3f} s" for t in sorted(finished)]


@pytest.mark.slow
def test_a_stopping_worker_closes_idle_keep_alive_connections_at_once(gunicorn_factory, models_copy):
    """Idle keep-alive connections would otherwise hold the stop for KEEPALIVE_SECONDS (here 30)."""
    server = gunicorn_factory({"MODEL_BASE_PATH": str(models_copy), "KEEPALIVE_SECONDS": "30", "ACCESS_LOG": ""})
    request = f"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    connections = []
    for _ in range(6):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(request)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
        connections.append(sock)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        assert server.process.wait(timeout=25) == 0
    finally:
        for sock in connections:
            sock.close()
    assert time.monotonic() - started < 5


def test_close_idle_spares_connections_answering_or_with_a_request_waiting():
    worker = FairGeventWorker.__new__(FairGeventWorker)     # the state gunicorn leaves, without a process
    pairs = [socket.socketpair() for _ in range(3)]
    idle, waiting, answering = (ours for ours, _ in pairs)
    worker._answering = {idle: False, waiting: False, answering: True}
    try:
        pairs[1][1].sendall(b"GET / HTTP/1.1\r\n")         # its next request has arrived, not read yet
        worker.close_idle()
        for _, theirs in pairs:
            theirs.settimeout(0.2)
        assert pairs[0][1].recv(10) == b""                  # shut down: the client sees the end
        for _, theirs in pairs[1:]:
            with pytest.raises(TimeoutError):               # still open
                theirs.recv(10)
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
