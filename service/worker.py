"""gunicorn's gthread worker with a deadline on every request, so slow clients cannot hold threads.

A gthread worker gives a connection one of its threads as soon as the first bytes arrive, and
that thread then reads the request with blocking reads that have no time limit. GUNICORN_TIMEOUT
does not help: for gthread it is only the heartbeat between a worker's main loop and the master,
and the main loop keeps beating while its threads wait. So a client sending a byte a second
(slowloris), or announcing a Content-Length it never sends, keeps a thread for as long as it
likes; as many such clients as threads (2 workers x 8 by default) and nobody else is served
(measured before this worker: 20 trickling connections, every other request timed out until
they left).

This worker gives each request REQUEST_TIMEOUT seconds (default: GUNICORN_TIMEOUT), from the
moment a thread takes the connection up to the end of its response. The main loop checks the
deadlines about once a second; an overdue connection is shut down, which ends the blocked read
at once and frees the thread. A request that cannot be read or answered in that time is cut off
with no answer, which is what the sync worker's GUNICORN_TIMEOUT does to a whole worker.

It also spreads connections over the workers. gthread workers race to accept from the shared
socket, and one of them often takes a whole burst of keep-alive connections while the other
is busy for a moment: measured with 16 wrk connections, one worker held all 16 in two runs
of five, and the server answered 1,300 req/s instead of 3,700-4,400 (one core idle, eight
threads fighting over one GIL). So a worker with as many connections as threads leaves a new
one ACCEPT_DEFER_SECONDS to the others before it takes it, and takes one only, so that two busy
workers take turns (not with a single worker, where there is nobody to leave it to). Taking
whatever else waited for ACCEPT_DEFER_SECONDS more, as this worker first did, split 64 wrk
connections 40/24, 45/19 and 56/8 in three runs; one at a time, 30/34 at worst in five.

And it keeps a busy keep-alive connection on its thread. gthread hands every request from the
main thread to a pool thread and the connection back, and on this machine (a VM) the thread
switches cost more than the app: perf on a worker answering the liveness route put half its
CPU time in the kernel's task switching. A thread that has answered waits up to LINGER_SECONDS
for the same client's next request and serves it itself: 12-15% less CPU per request. Only
while the worker has no more connections than threads and none is waiting for a thread (one
that arrives meanwhile waits LINGER_SECONDS at most), and not when the worker is stopping.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# How long a worker with a connection per thread leaves a new one to a less busy worker.
ACCEPT_DEFER_SECONDS = 0.002
# How long a thread waits for a keep-alive client's next request: a client answering at once
# (a load generator, a service calling in a loop) is back within a millisecond or two here;
# waiting longer would hold a thread for clients that are not coming back soon.
LINGER_SECONDS = 0.002


def request_timeout(default: float) -> float:
    """REQUEST_TIMEOUT from the environment (seconds, > 0), else `default`."""
    raw = os.environ.get("REQUEST_TIMEOUT", "").strip()
    if not raw:
        return float(default)
    value = float(raw)
    if value <= 0:
        raise ValueError(f"REQUEST_TIMEOUT={raw!r}: must be positive")
    return value


class DeadlineThreadWorker(ThreadWorker):
    """ThreadWorker whose requests each get at most `request_timeout` seconds of a thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout(self.cfg.timeout)
        # id(conn) -> (deadline, conn) for every connection a thread is working on.
        self._deadlines: dict[int, tuple[float, Any]] = {}
        self._deadlines_lock = threading.Lock()
        self._accept_resume_at = 0.0    # while deferring: when this worker listens again
        self._take_one = False          # after a deferral: the next connection is taken
        self._waiting = 0               # connections handed to the pool and not yet taken by a thread
        self._waiting_lock = threading.Lock()

    def accept(self, listener: Any) -> None:
        """In the main loop: take a new connection, unless a less busy worker should have it first.

        Idle keep-alive connections count: they are busy again a moment later, and counting only
        the busy ones let bursts pile up on one worker again (measured: a row at half speed).
        """
        if self.cfg.workers > 1 and self.nr_conns >= self.cfg.threads and not self._take_one:
            self._accept_resume_at = time.monotonic() + ACCEPT_DEFER_SECONDS
            super().set_accept_enabled(False)
            return
        self._take_one = False
        super().accept(listener)

    def set_accept_enabled(self, enabled: bool) -> None:
        """gthread's main loop re-enables accepting on every turn; not before a deferral is over.

        After one, the connection still waiting is taken: had another worker been free, it
        would have taken it by now.
        """
        if enabled and not self._accepting and self._accept_resume_at:
            if time.monotonic() < self._accept_resume_at:
                return
            self._accept_resume_at = 0.0
            self._take_one = True
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """gthread's wait, cut short so a deferral ends on time."""
        remaining = self._accept_resume_at - time.monotonic()
        if remaining > 0:
            timeout = min(timeout, remaining)
        super().wait_for_and_dispatch_events(timeout)

    def enqueue_req(self, conn: Any) -> None:
        """Hand `conn` to the pool, counting it as waiting until a thread takes it."""
        with self._waiting_lock:
            self._waiting += 1
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        """In a pool thread: requests of `conn`, each under its deadline.

        After a keep-alive answer the thread waits up to LINGER_SECONDS for the client's next
        request and serves it itself, while every connection of the worker can have a thread
        of its own and none is waiting for one.
        """
        with self._waiting_lock:
            self._waiting -= 1
        key = id(conn)
        try:
            while True:
                with self._deadlines_lock:
                    self._deadlines[key] = (time.monotonic() + self.request_timeout, conn)
                result = super().handle(conn)
                if (result is not True or not self.alive or self._waiting or self.nr_conns > self.cfg.threads
                        or not self._next_soon(conn)):
                    return result
        finally:
            with self._deadlines_lock:
                self._deadlines.pop(key, None)

    @staticmethod
    def _next_soon(conn: Any) -> bool:
        """Whether `conn` has its next request (read ahead, in TLS's buffer, or arriving within LINGER_SECONDS)."""
        if conn.parser.unreader.buf.getvalue():
            return True
        pending = getattr(conn.sock, "pending", None)       # an ssl.SSLSocket's decrypted bytes
        if pending is not None and pending():
            return True
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(LINGER_SECONDS * 1000))

    def murder_keepalived(self, force: bool = False) -> None:
        """In the main loop, about once a second: gthread's own clean-up, then ours."""
        super().murder_keepalived(force)
        self.cut_overdue()

    def cut_overdue(self) -> int:
        """Shut down the connections whose request ran past its deadline; how many there were.

        Runs in the main thread, which is also the only one that closes connections (after the
        pool thread is done with one), so a socket is never shut down after its number was reused.
        """
        now = time.monotonic()
        with self._deadlines_lock:
            overdue = [(key, conn) for key, (deadline, conn) in self._deadlines.items() if deadline <= now]
            for key, _ in overdue:
                del self._deadlines[key]
        for _, conn in overdue:
            with contextlib.suppress(OSError):  # the client may be gone already
                conn.sock.shutdown(socket.SHUT_RDWR)
            self.log.warning("request from %s not done after %g s (REQUEST_TIMEOUT): connection closed",
                             _address(conn), self.request_timeout)
        return len(overdue)


def _address(conn: Any) -> str:
    client = getattr(conn, "client", None)
    if isinstance(client, tuple) and len(client) >= 2:
        return f"{client[0]}:{client[1]}"
    return str(client or "unknown")
