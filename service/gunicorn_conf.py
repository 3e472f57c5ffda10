"""gunicorn settings from the environment. Defaults suit a 2-core machine."""

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

bind = os.environ.get("BIND", "127.0.0.1:8501")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gevent, with requests taken in turn, connections spread and a deadline per request (service/worker.py).
worker_class = "service.worker.FairGeventWorker"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("KEEPALIVE_SECONDS", "5"))
# Each worker imports service.wsgi itself, so no model or TensorFlow runtime state crosses a fork
# (only the TensorFlow import does: on_starting).
preload_app = False
# gunicorn's control socket (gunicornc) would live in $HOME, shared by every server of the
# user and unwritable on a read-only root filesystem; nothing here uses it.
control_socket_disable = True
wsgi_app = "service.wsgi:app"
# One log format: the app writes a JSON line per request (service/middleware/observe.py), with the route,
# model, version and request id gunicorn cannot know, so gunicorn's plain access log stays off;
# ACCESS_LOG ("-" stdout, a path, "" off) steers the app's line instead (service/ops/logs.py).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
logger_class = "service.ops.logs.GunicornJsonLogger"
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# After SIGTERM a worker answers readiness with 503 but keeps serving this long, so a load
# balancer stops sending first (service/ops/lifecycle.py); then in-flight requests finish.
# The master's GRACEFUL_TIMEOUT counts from its SIGTERM and covers the drain too.
_drain_seconds = float(os.environ.get("DRAIN_SECONDS", "0"))
_metrics_dir_created: str | None = None


def on_starting(server: Any) -> None:
    """Master, before the first fork: a clean PROMETHEUS_MULTIPROC_DIR for this run's workers,
    and TensorFlow imported once for all of them.

    prometheus_client reads the variable when a worker first imports it; files left by an
    earlier run would add old counts to this one, so a given folder is emptied, and without
    one a fresh temporary folder is made (and removed in on_exit).
    """
    global _metrics_dir_created  # noqa: PLW0603 - gunicorn hooks share state through the config module
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for old in Path(path).glob("*.db"):
            old.unlink()
    else:
        path = _metrics_dir_created = tempfile.mkdtemp(prefix="model-server-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    # TensorFlow (and scipy) imported once here, before the workers fork, is shared by them instead of being
    # imported by each: worker PSS 238 instead of 455 MiB with the committed models, and a
    # replacement worker starts sooner. Importing is safe before a fork; loading a model is not,
    # so models still load in each worker (service/wsgi.py).
    from service.runtime import import_shared_libraries

    import_shared_libraries()
    # And kept out of the collector: a collection writes to every object it visits, and each
    # page written in a worker becomes the worker's own copy. Frozen before the fork, the
    # import's 316,000 objects are never visited: worker PSS 230 -> 191 MiB, master 407 -> 368
    # MiB, and a worker's full collection takes 6-11 ms instead of 180-190 ms (a pause of every
    # request in flight). Nothing is lost: modules live as long as the process anyway.
    gc.freeze()
    if _drain_seconds >= graceful_timeout:
        server.log.warning("DRAIN_SECONDS=%g is not below GRACEFUL_TIMEOUT=%d: workers still draining when "
                           "the timeout ends are killed with their requests", _drain_seconds, graceful_timeout)


def post_fork(server: Any, worker: Any) -> None:
    """Worker, before it imports the app: JSON logs from the first model load on."""
    from service.ops.logs import configure_logging

    configure_logging()


def post_worker_init(worker: Any) -> None:
    """Worker, after gunicorn set its signal handlers: SIGTERM drains first."""
    from service.ops.lifecycle import install_drain

    install_drain(worker, _drain_seconds)


def child_exit(server: Any, worker: Any) -> None:
    """Master: a dead worker's live gauges (queue depth, memory) must leave the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _metrics_dir_created:
        shutil.rmtree(_metrics_dir_created, ignore_errors=True)
