"""The gunicorn worker's own scheduling: connections spread over workers, served in turn, closed on stop.

Its deadlines are tested end to end: slow clients in tests/e2e/test_faults.py, bodies that never
come in the catalogue of tests/integration/test_reliability.py."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import gevent
import pytest
from gevent.pool import Pool
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from loadtest.server import ROOT, free_port
from service.worker import (
    ACCEPT_DEFER_SECONDS,
    ONE_WRITE_MAX_BYTES,
    BalancedServer,
    FairGeventWorker,
    OneWriteResponse,
)


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


class _Sends:
    """A socket that records what is sent, one entry per call."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.calls.append(bytes(data))


def _answer(response_class: type, request: bytes, status: str, headers: list[tuple[str, str]],
            items: list[bytes]) -> list[bytes]:
    """Answer `request` as gunicorn's worker does, through `response_class`; what was sent, per call."""
    cfg = Config()
    req = next(iter(RequestParser(cfg, iter([request]), ("127.0.0.1", 5000))))
    sock = _Sends()
    resp, _environ = wsgi.create(req, sock, ("127.0.0.1", 5000), ("127.0.0.1", 8501), cfg,
                                 response_class=response_class)
    resp.start_response(status, headers)
    for item in items:
        resp.write(item)
    resp.close()
    return sock.calls


GET = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
JSON = [("Content-Type", "application/json")]
BIG = b"x" * (ONE_WRITE_MAX_BYTES + 1)


@pytest.mark.parametrize(("request_bytes", "status", "headers", "items", "sends"), [
    (GET, "200 OK", [*JSON, ("Content-Length", "11")], [b'{"live":1}\n'], (2, 1)),      # the usual answer
    (GET, "200 OK", [*JSON, ("Content-Length", "6")], [b"ab", b"cd", b"ef"], (4, 3)),    # streamed
    (GET, "200 OK", JSON, [b"ab", b"", b"cd"], (4, 4)),                                  # chunked: as gunicorn
    (HEAD, "200 OK", [*JSON, ("Content-Length", "2")], [b"ab"], (1, 1)),                 # no body on the wire
    (GET, "204 No Content", [], [], (1, 1)),                                             # nothing to write
    (GET, "200 OK", [("Content-Length", "2")], [b"abcdef"], (2, 1)),                     # cut to Content-Length
    (GET, "200 OK", [("Content-Length", "2")], [b"", b"ab"], (3, 2)),                    # an empty first item
    (GET, "200 OK", [("Content-Length", str(len(BIG)))], [BIG], (2, 2)),                 # too big to copy
], ids=["one item", "streamed", "chunked", "head", "no content", "cut", "empty first", "big"])
def test_one_write_response_sends_the_same_bytes_in_fewer_calls(monkeypatch, request_bytes, status, headers,
                                                                 items, sends):
    monkeypatch.setattr(util, "http_date", lambda *args: "Fri, 27 Nov 2026 19:00:00 GMT")
    stock = _answer(wsgi.Response, request_bytes, status, headers, items)
    ours = _answer(OneWriteResponse, request_bytes, status, headers, items)
    assert b"".join(ours) == b"".join(stock)
    assert (len(stock), len(ours)) == sends


def _segments_received(sock: socket.socket) -> int:
    """tcpi_segs_in of Linux's struct tcp_info: segments this socket has received."""
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), 140)[0]


def test_an_answer_leaves_the_server_in_one_tcp_segment(server):
    """gunicorn alone sends the headers and the body in two (2.0 per answer, measured)."""
    request = f"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        before = _segments_received(sock)
        for _ in range(20):
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            head, _, body = answer.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            while len(body) < length:
                body += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200 OK") and len(body) == length
        received = _segments_received(sock) - before
    assert received <= 25, f"{received} segments for 20 answers"


# gunicorn as `make serve` runs it, in a process where a method the worker relies on is gone.
_GUNICORN_WITHOUT_EMIT_BODY = """
import sys
from gunicorn.app.wsgiapp import run
from gunicorn.http import wsgi
del wsgi.Response._emit_body
sys.argv = ["gunicorn", "-c", "service/gunicorn_conf.py"]
run()
"""


@pytest.mark.slow
def test_on_changed_gunicorn_internals_the_worker_refuses_to_boot_and_says_why():
    env = {"BIND": f"127.0.0.1:{free_port()}", "WEB_CONCURRENCY": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", _GUNICORN_WITHOUT_EMIT_BODY], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 3, done.stderr[-3000:]          # gunicorn's "worker failed to boot"
    assert ("service.worker.FairGeventWorker cannot run on the installed gunicorn 27.0.1 and gevent 26.9.0 "
            "(written for gunicorn 27.0.1 and gevent 26.9.0): gunicorn.http.wsgi.Response._emit_body is missing."
            in done.stderr)
    assert "Reason: Worker failed to boot." in done.stderr
