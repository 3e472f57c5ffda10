"""gunicorn's gevent worker, made fair: requests taken in turn, connections spread over workers,
and a deadline on every request.

One thread per worker runs every connection as a greenlet, so no request waits for the GIL
behind seven others. The thread worker this replaces (gthread, 2 workers x 8 threads) spent
580-790 us of CPU per liveness request (one worker, 8 connections), about 40% of it in the
kernel switching threads, and the order in which eight threads got the GIL spread the
latency: at 64 connections the liveness route's p99 was 45-65 ms for a p50 of 12 ms. Here a
request runs from its first byte to its answer without a switch, unless it waits for the
network: 304 us of CPU per liveness request, and p99 19-20 ms at 64 connections.

Four things gunicorn's own gevent worker does not do:

- Take turns. A greenlet only lets go when it waits, and a keep-alive client that sends its
  next request at once is never waited for: a few connections had the worker to themselves
  (p50 0.7 ms, p99 1.5 s at 64 connections). After each answer a connection now waits until
  the event loop has nothing else to do (`gevent.idle()`), so every ready connection is served
  once before any is served twice.
- Spread connections. Workers race for each new connection, and one took 45 of 64 while the
  other was busy for a moment; keep-alive connections stay where they land, so that worker's
  clients then wait twice as long. A worker holding BALANCE_CONNECTIONS connections leaves the
  next one ACCEPT_DEFER_SECONDS to the others, then takes one only, so that two busy workers
  take turns (not with a single worker, where there is nobody to leave it to).
- Bound each request. A slow client (a byte a second, or a Content-Length it never sends)
  costs a greenlet, not a thread, so it holds nobody else up; it is still cut off after
  REQUEST_TIMEOUT seconds (default: GUNICORN_TIMEOUT): the request line and headers within
  min(KEEPALIVE_SECONDS, REQUEST_TIMEOUT) of the previous answer, and the body, the app and the
  answer within REQUEST_TIMEOUT. A request that runs out of time is closed without an answer.
- Answer in one send. gunicorn writes the status line and headers, then the body, in two
  calls: two TCP segments, and a client that wakes up for each. The header block now waits
  for the first body bytes and goes out with them (OneWriteResponse).

What of gunicorn and gevent this relies on (the module attribute it replaces, methods it
overrides or calls, and the source of GeventWorker.run, which FairGeventWorker.run replaces
whole) is checked when a worker starts (`check_internals`): a gunicorn or gevent that changed any
of it makes the worker refuse to boot, naming both versions, instead of serving without a piece.

gevent patches the standard library when the worker starts (after the fork, before the app
is imported), so the app's threads (model watcher, metrics sampler, batcher) are greenlets of
the same loop. Long blocking calls, a model load (0.1-0.8 s for the committed models) or the
memory read, run in gevent's native threads instead (service/runtime.py, off_the_loop).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hashlib
import inspect
import os
import socket
import termios
import textwrap
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import gevent
import gunicorn
from gevent.baseserver import BaseServer
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.http import wsgi
from gunicorn.sock import ssl_context
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

# A worker holding this many connections leaves a new one to the others for a moment. Each such
# accept waits for a round of the worker's other connections: measured with 64 wrk connections
# opening at once, 8 spread them as evenly as 24 but kept the last ones waiting up to 300 ms
# for their first answer (24: 120-180 ms); without the rule they split 21/45 to 28/38.
BALANCE_CONNECTIONS = 24
# How long that moment is: the other worker takes a waiting connection within it when it can.
ACCEPT_DEFER_SECONDS = 0.002
# Body bytes the header block is joined to: beyond this, copying them costs more than a send.
ONE_WRITE_MAX_BYTES = 64 * 1024


def request_timeout(default: float) -> float:
    """REQUEST_TIMEOUT from the environment (seconds, > 0), else `default`."""
    raw = os.environ.get("REQUEST_TIMEOUT", "").strip()
    if not raw:
        return float(default)
    value = float(raw)
    if value <= 0:
        raise ValueError(f"REQUEST_TIMEOUT={raw!r}: must be positive")
    return value


class BalancedServer(StreamServer):
    """gevent's StreamServer accepting one connection at a time, and none for a moment while
    its worker already holds `balance_at` connections (and other workers exist to take it)."""

    max_accept = 1

    def __init__(self, listener: Any, handle: Any, connections: Pool, balance_at: int | None,
                 **ssl_args: Any) -> None:
        # The pool's spawn, not the pool: gevent would otherwise use the pool's own full().
        super().__init__(listener, handle=handle, spawn=connections.spawn, **ssl_args)
        self.connections = connections
        self.balance_at = balance_at
        self._take_one = False
        self._resume: Any = None

    def full(self) -> bool:
        """Asked by gevent before each accept; True pauses accepting until `_resume` fires."""
        busy = (self.balance_at is not None and len(self.connections) >= self.balance_at
                and not self._take_one)
        if busy or self.connections.full():
            if self._resume is None:
                self._resume = self.loop.timer(ACCEPT_DEFER_SECONDS)
                self._resume.start(self._accept_again)
            return True
        self._take_one = False
        return False

    def _accept_again(self) -> None:
        # Had another worker been free, it would have taken the waiting connection by now.
        self._resume.close()
        self._resume = None
        self._take_one = True
        if self.started:
            self.start_accepting()


class OneWriteResponse(wsgi.Response):
    """gunicorn's response, its header block sent together with the first body bytes.

    The block is held only once the app hands over body bytes: a file sent with sendfile, and a
    response without a body, get their headers as gunicorn sends them. What is held goes out
    at the latest in `close`.
    """

    _held = b""

    def write(self, arg: bytes) -> None:
        if not self.headers_sent:
            # gunicorn's own send_headers builds the block, into a stand-in for the socket, so
            # that whatever a new gunicorn puts in it is kept without a copy of that code here.
            sock, self.sock = self.sock, _HeaderBlock()
            try:
                self.send_headers()
            finally:
                self._held, self.sock = self.sock.data, sock
        super().write(arg)

    def _emit_body(self, data: bytes) -> None:
        held, self._held = self._held, b""
        if held and not self.chunked and len(data) <= ONE_WRITE_MAX_BYTES:
            self.sock.sendall(held + data)
            return
        if held:
            self.sock.sendall(held)
        super()._emit_body(data)

    def close(self) -> None:
        held, self._held = self._held, b""
        if held:                                      # HEAD, or a body cut to Content-Length
            self.sock.sendall(held)
        super().close()


class _HeaderBlock:
    """Takes the place of a response's socket while gunicorn writes the header block to it."""

    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data


class FairGeventWorker(GeventWorker):
    """GeventWorker whose connections take turns, spread over workers, under a deadline each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout(self.cfg.timeout)
        # Every open connection's socket -> whether a request of it is being answered.
        self._answering: dict[Any, bool] = {}

    def init_process(self) -> None:
        check_internals()
        # AsyncWorker.handle_request builds every response with wsgi.create and no class of its
        # own, so wsgi.create takes its module's Response; gunicorn has no setting for it. The
        # module is replaced after the fork, so in this worker's process only.
        wsgi.Response = OneWriteResponse
        super().init_process()

    def run(self) -> None:
        """gunicorn's GeventWorker.run with BalancedServer, then the same graceful stop."""
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        balance_at = BALANCE_CONNECTIONS if self.cfg.workers > 1 else None
        servers = []
        for sock in self.sockets:
            sock.setblocking(1)
            server = BalancedServer(sock, partial(self.handle, sock), Pool(self.worker_connections), balance_at,
                                    **ssl_args)
            server.start()
            servers.append(server)
        while self.alive:
            self.notify()
            gevent.sleep(1.0)
        for server in servers:
            server.close()                            # no new connections; the open ones finish
        stop_by = time.monotonic() + self.cfg.graceful_timeout
        while any(len(server.connections) for server in servers) and time.monotonic() < stop_by:
            self.close_idle()
            self.notify()
            gevent.sleep(0.1)
        for server in servers:
            server.stop(timeout=1)

    def close_idle(self) -> None:
        """Close the connections waiting for their next request, so that a stopping worker does
        not wait KEEPALIVE_SECONDS for clients that may send nothing more. Those answering, and
        those whose next request has arrived but waits for its turn, are answered first, with
        `Connection: close`."""
        for sock, answering in list(self._answering.items()):
            if answering:
                continue
            with contextlib.suppress(OSError):        # the client may be gone already
                if not _bytes_waiting(sock):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self._answering[client] = False
        try:
            super().handle(listener, client, addr)
        finally:
            del self._answering[client]

    def timeout_ctx(self) -> gevent.Timeout:
        """The wait for a request line and headers (gunicorn: KEEPALIVE_SECONDS); ends silently."""
        return gevent.Timeout(min(self.cfg.keepalive, self.request_timeout), False)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        """One request under its deadline; then the other ready connections go first."""
        deadline = gevent.Timeout(self.request_timeout)
        deadline.start()
        self._answering[sock] = True
        try:
            super().handle_request(listener_name, req, sock, addr)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            self.log.warning("request from %s not done after %g s (REQUEST_TIMEOUT): connection closed",
                             _address(addr), self.request_timeout)
            raise StopIteration from None             # gunicorn closes the connection
        finally:
            deadline.close()
            self._answering[sock] = False
        gevent.idle()


def _bytes_waiting(sock: Any) -> int:
    """Bytes received on `sock` and not read yet, asked of the kernel without reading them."""
    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    return count[0]


def _address(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr or "unknown")


# ------------------------------------------------------------------ what of gunicorn and gevent is used

# The versions this module was written and measured with; named when the check fails.
WRITTEN_FOR = {"gunicorn": "27.0.1", "gevent": "26.9.0"}
# FairGeventWorker.run replaces GeventWorker.run whole, so a fix in a new gunicorn's run would be
# lost without a sound: the run it was written from, as sha256 of its dedented source.
GEVENT_RUN_SHA256 = "12d2ceb4f5d0c6adcd19afaada09d77c9a20036deecd640c2e59076ca0054d0d"


class IncompatibleInternals(RuntimeError):
    """gunicorn or gevent no longer has what this worker relies on."""


@dataclass(frozen=True)
class Internal:
    """An attribute of gunicorn or gevent this module relies on, and what it must look like."""

    owner: Any                               # a module or a class
    name: str
    params: tuple[str, ...] | None = None    # a function's parameter names, in order
    uses: tuple[str, ...] = ()               # names its code refers to (attributes, globals)

    def problem(self) -> str | None:
        where = f"{_qualified(self.owner)}.{self.name}"
        if not hasattr(self.owner, self.name):
            return f"{where} is missing"
        found = getattr(self.owner, self.name)
        if self.params is not None:
            try:
                params = tuple(inspect.signature(found).parameters)
            except (TypeError, ValueError):
                return f"{where} is no longer a function"
            if params != self.params:
                return f"{where} takes ({', '.join(params)}), not ({', '.join(self.params)})"
        missing = [name for name in self.uses if name not in _names_used(found)]
        if missing:
            return f"{where} no longer refers to {', '.join(missing)}"
        return None


_STOCK_RESPONSE = OneWriteResponse.__base__

INTERNALS = (
    # OneWriteResponse reaches every request through the module attribute wsgi.create reads...
    Internal(wsgi, "Response"),
    Internal(wsgi, "create", uses=("Response",)),
    Internal(AsyncWorker, "handle_request", params=("self", "listener_name", "req", "sock", "addr"),
             uses=("create",)),
    # ...and relies on how Response writes: the header block through self.sock, then the body.
    Internal(_STOCK_RESPONSE, "__init__", params=("self", "req", "sock", "cfg"),
             uses=("sock", "chunked", "headers_sent")),
    Internal(_STOCK_RESPONSE, "send_headers", params=("self",), uses=("headers_sent", "sock")),
    Internal(_STOCK_RESPONSE, "write", params=("self", "arg"), uses=("send_headers", "_emit_body")),
    Internal(_STOCK_RESPONSE, "_emit_body", params=("self", "data")),
    Internal(_STOCK_RESPONSE, "close", params=("self",)),
    # The deadline and the turns: methods overridden, and the loop that calls them.
    Internal(AsyncWorker, "handle", params=("self", "listener", "client", "addr"),
             uses=("timeout_ctx", "handle_request", "StopIteration")),
    Internal(GeventWorker, "timeout_ctx", params=("self",)),
    Internal(GeventWorker, "handle_request", params=("self", "listener_name", "req", "sock", "addr")),
    Internal(GeventWorker, "init_process", params=("self",)),
    # BalancedServer: gevent asks full() before each of max_accept accepts, and is restarted.
    Internal(StreamServer, "__init__", params=("self", "listener", "handle", "backlog", "spawn", "ssl_args")),
    Internal(BaseServer, "_do_read", uses=("max_accept", "full", "stop_accepting")),
    Internal(BaseServer, "full", params=("self",)),
    Internal(BaseServer, "start_accepting", params=("self",)),
    Internal(BaseServer, "started"),
)


def check_internals() -> None:
    """Raise IncompatibleInternals, naming the installed gunicorn and gevent, if anything in
    INTERNALS, GeventWorker.run's source or gevent's use of a spawn function has changed."""
    problems = [problem for item in INTERNALS if (problem := item.problem()) is not None]
    if hasattr(wsgi, "Response") and wsgi.Response not in (_STOCK_RESPONSE, OneWriteResponse):
        problems.append(f"gunicorn.http.wsgi.Response is {_qualified(wsgi.Response)}, not the class "
                        f"OneWriteResponse extends ({_qualified(_STOCK_RESPONSE)})")
    run_sha256 = _source_sha256(GeventWorker.run)
    if run_sha256 != GEVENT_RUN_SHA256:
        problems.append(f"gunicorn.workers.ggevent.GeventWorker.run is not the one FairGeventWorker.run "
                        f"replaces (source sha256 {run_sha256 or 'unavailable'}, written for {GEVENT_RUN_SHA256})")
    if not _spawn_function_keeps_full():
        problems.append("gevent.baseserver.BaseServer.set_spawn with a function no longer leaves full() to "
                        "the server, so BalancedServer.full would never be asked")
    if problems:
        installed = f"gunicorn {gunicorn.__version__} and gevent {gevent.__version__}"
        written = f"gunicorn {WRITTEN_FOR['gunicorn']} and gevent {WRITTEN_FOR['gevent']}"
        raise IncompatibleInternals(
            f"service.worker.FairGeventWorker cannot run on the installed {installed} (written for {written}): "
            + "; ".join(problems)
            + ". Install the versions it was written for, or review service/worker.py against these.")


def _spawn_function_keeps_full() -> bool:
    # BalancedServer passes its pool's spawn, not the pool, so that gevent keeps asking the
    # server's own full() instead of the pool's; tried on a bare server, no socket needed.
    # A bare function stands for that bound method: no pool is made before gevent's hub is reset.
    probe = BaseServer.__new__(BalancedServer)
    BaseServer.set_spawn(probe, lambda *args: None)
    return probe.pool is None and "full" not in vars(probe)


def _source_sha256(function: Callable[..., Any]) -> str | None:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):              # installed without sources
        return None
    return hashlib.sha256(textwrap.dedent(source).encode()).hexdigest()


def _names_used(found: Any) -> set[str]:
    """Attribute and global names in a function's code, its nested code (comprehensions) included."""
    code = getattr(inspect.unwrap(found), "__code__", None) if callable(found) else None
    names: set[str] = set()
    pending = [code] if code is not None else []
    while pending:
        current = pending.pop()
        names.update(current.co_names)
        pending.extend(const for const in current.co_consts if isinstance(const, types.CodeType))
    return names


def _qualified(owner: Any) -> str:
    if isinstance(owner, types.ModuleType):
        return owner.__name__
    return f"{owner.__module__}.{owner.__qualname__}"
