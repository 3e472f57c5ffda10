"""Graceful shutdown: readiness turns 503 first, traffic drains, in-flight requests finish.

What gunicorn does on SIGTERM to the master: it closes its own copy of the listening socket,
sends SIGTERM to every worker and waits up to `graceful_timeout` before SIGKILL. A worker
(service/worker.py) on SIGTERM stops accepting, answers what it already read with
`Connection: close`, closes the keep-alive connections waiting for a next request and exits
when its connections are done.

What it does not do is tell a load balancer first. Connections already queued in the listen
backlog when the workers stop accepting are reset, and a balancer that still believes the
pod is ready keeps sending new ones. So each worker takes over SIGTERM (`install_drain`):
readiness answers 503 at once, the worker keeps accepting and serving for DRAIN_SECONDS
(the balancer's probe notices and stops routing; Kubernetes' preStop sleep plays the same
role), and only then hands over to gunicorn's own graceful stop. The workers still hold the
listening socket after the master closed its copy, so they can keep accepting meanwhile.

Keep DRAIN_SECONDS + the longest request below GRACEFUL_TIMEOUT: the master's clock starts
at its SIGTERM and it kills whatever still runs when it expires.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import gevent

log = logging.getLogger(__name__)

# Readiness endpoints (Flask endpoint names) that answer 503 while this worker drains.
READINESS_ENDPOINTS = frozenset({"health.ready", "v2.model_ready"})

_draining = threading.Event()


def draining() -> bool:
    return _draining.is_set()


def start_draining() -> None:
    _draining.set()


def install_drain(worker: Any, drain_seconds: float) -> None:
    """Replace the gunicorn worker's SIGTERM handler with: draining now, gunicorn's own
    graceful stop (`worker.handle_exit`) after `drain_seconds`. Call it from post_worker_init.

    The worker is gevent's (service/worker.py): a plain signal handler runs in whatever greenlet
    is current, the event loop's own included, where waiting for anything (a lock, a timer
    thread starting) is an error that reaches the requests in flight: with one, the drain test
    saw connections reset at the SIGTERM in two runs of the whole suite (4 and 55 requests).
    gevent's signal handler runs it in a greenlet of its own, which may wait.
    """
    graceful_stop = worker.handle_exit

    def on_sigterm() -> None:
        if draining():
            return  # a repeated SIGTERM changes nothing: the drain is already under way
        start_draining()
        log.info("SIGTERM: readiness answers 503; serving for %.1f s more, then finishing in-flight requests",
                 drain_seconds)
        gevent.sleep(max(drain_seconds, 0.0))   # this greenlet only: the others keep serving
        graceful_stop(signal.SIGTERM, None)

    gevent.signal_handler(signal.SIGTERM, on_sigterm)
