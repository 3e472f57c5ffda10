"""Prometheus metrics, right under several gunicorn workers.

Each worker is its own process with its own counters, and a scrape reaches one of them, so
with PROMETHEUS_MULTIPROC_DIR set (service/gunicorn_conf.py sets a fresh one per server run)
prometheus_client keeps every value in a per-process mmap file there and `/metrics` merges
all files: any worker answers for the whole server. Without it (the in-process test app)
the ordinary single-process registry is used.

Label values are bounded on purpose: `route` is the Flask URL rule, never the raw path, and
`model`/`version` come from a version the server actually resolved, never from the URL, so
a client probing random URLs cannot create new series.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from service.ops import context
from service.runtime import off_the_loop

log = logging.getLogger(__name__)

# prometheus_client chose its mode from the same variable when it was first imported.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
SAMPLE_SECONDS = 1.0       # queue depth
MEMORY_EVERY = 10          # memory every 10 samples: reading smaps costs more than a queue size

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LOAD = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

REQUESTS = Counter(
    "model_server_requests", "HTTP requests answered, by model, version, route (URL rule) and status.",
    ["model", "version", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "model_server_request_duration_seconds", "Time in the app per request, by route (URL rule).",
    ["route"], buckets=_LATENCY,
)
PHASE_SECONDS = Histogram(
    "model_server_request_phase_seconds",
    "Time per phase of an inference request: decode (request start to the model call: body, parsing, "
    "validation), queue (waiting for a batch), inference (the model call), encode (model call end "
    "to response ready).",
    ["phase", "model"], buckets=_LATENCY,
)
BATCH_SIZE = Histogram(
    "model_server_batch_size", "Instances in the model call a request was part of (recorded by the batcher).",
    ["model"], buckets=_BATCH,
)
QUEUE_DEPTH = Gauge(
    "model_server_queue_depth", "Requests waiting in batch queues, sampled each second, summed over live workers.",
    ["model"], multiprocess_mode="livesum",
)
MODEL_LOAD_SECONDS = Histogram(
    "model_server_model_load_seconds", "Time to load and self-test one model version, per worker.",
    ["model"], buckets=_LOAD,
)
MODEL_LOAD_FAILURES = Counter(
    "model_server_model_load_failures", "Model versions that failed to load or to pass their golden self-test.",
    ["model"],
)
WORKER_MEMORY = Gauge(
    "model_server_worker_memory_bytes", "Memory of each live worker process: rss, and pss (shared pages split).",
    ["kind"], multiprocess_mode="liveall",
)

# labels() validates and locks on every call; a plain dict of children costs one lookup.
# Races only ever store the same child twice.
_requests: dict[tuple[str, str, str, int], Counter] = {}
_durations: dict[str, Histogram] = {}
_phases: dict[tuple[str, str], Histogram] = {}


def observe_request(route: str, status: int, ctx: context.RequestContext | None, ended: float) -> None:
    """Count one answered request and time it; split into phases if it called a model."""
    model = version = ""
    if ctx is not None:
        model = ctx.model or ""
        version = "" if ctx.version is None else str(ctx.version)
    key = (model, version, route, status)
    counter = _requests.get(key)
    if counter is None:
        counter = _requests[key] = REQUESTS.labels(model, version, route, str(status))
    counter.inc()
    if ctx is None:
        return
    duration = _durations.get(route)
    if duration is None:
        duration = _durations[route] = REQUEST_SECONDS.labels(route)
    duration.observe(ended - ctx.started)
    if ctx.infer_start is not None and ctx.infer_end is not None:
        queue = ctx.queue_seconds
        _phase("decode", model).observe(ctx.infer_start - ctx.started)
        if queue:
            _phase("queue", model).observe(queue)
        _phase("inference", model).observe(max(ctx.infer_end - ctx.infer_start - queue, 0.0))
        _phase("encode", model).observe(ended - ctx.infer_end)


def _phase(phase: str, model: str) -> Histogram:
    child = _phases.get((phase, model))
    if child is None:
        child = _phases[(phase, model)] = PHASE_SECONDS.labels(phase, model)
    return child


# --------------------------------------------------------------------------- for the batcher

def record_queue(seconds: float, batch_size: int, model: str = "") -> None:
    """One request waited `seconds` in a batch queue and ran in a call of `batch_size` instances.

    Matches the batcher's observer signature `(seconds, rows)`. Called from the request's own
    thread, the wait is subtracted from that request's inference phase and labelled with its
    model; called from the batcher's thread it is recorded on its own, under `model`.
    """
    ctx = context.current()
    if ctx is not None:
        context.note_queue(seconds)
        model = ctx.model or model
    else:
        _phase("queue", model).observe(seconds)
    BATCH_SIZE.labels(model).observe(batch_size)


# --------------------------------------------------------------------------- from the model manager

def observe_model_load(name: str, version: int, seconds: float, error: str | None) -> None:
    """ModelManager's load observer: every attempt's time, and failures counted."""
    MODEL_LOAD_SECONDS.labels(name).observe(seconds)
    if error is not None:
        MODEL_LOAD_FAILURES.labels(name).inc()


# --------------------------------------------------------------------------- memory, per worker

def sample_memory() -> None:
    """RSS and PSS of this process from /proc (Linux); silently nothing elsewhere.

    The kernel walks every mapping of the process to answer, 13 ms for a worker holding
    TensorFlow: off the event loop.
    """
    found = off_the_loop(_memory)()
    for kind, value in found.items():
        WORKER_MEMORY.labels(kind).set(value)


def _memory() -> dict[str, float]:
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        try:  # kernels before 4.14: RSS only, in pages
            pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return {}
        return {"rss": float(pages * os.sysconf("SC_PAGE_SIZE"))}
    found = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            found[key.lower()] = float(int(rest.split()[0]) * 1024)
    return found


_sampler_pid: int | None = None
_sampler_lock = threading.Lock()


def start_sampler(queue_depths: Callable[[], dict[str, int]] | None = None,
                  interval: float = SAMPLE_SECONDS, memory_every: int = MEMORY_EVERY) -> None:
    """A daemon thread setting this worker's gauges: queue depth every `interval`, memory every
    `memory_every` intervals. Sampling keeps both off the request path, and a scrape answered by
    another worker still sees this one's numbers. Once per process (threads do not survive fork)."""
    global _sampler_pid  # noqa: PLW0603 - one sampler per process
    with _sampler_lock:
        if _sampler_pid == os.getpid():
            return
        _sampler_pid = os.getpid()
    sample_memory()

    def run() -> None:
        tick = 0
        stop = threading.Event()  # never set: the thread is a daemon and ends with the worker
        while not stop.wait(interval):
            tick += 1
            try:
                if queue_depths is not None:
                    for model, depth in queue_depths().items():
                        QUEUE_DEPTH.labels(model).set(depth)
                if tick % memory_every == 0:
                    sample_memory()
            except Exception:
                log.exception("sampling gauges failed; trying again next time")

    threading.Thread(target=run, name="metrics-sampler", daemon=True).start()


# --------------------------------------------------------------------------- exposition

def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """`/metrics`: every worker's files merged, or this process's registry. The format follows
    the scraper's Accept header (OpenMetrics when asked for), else Prometheus text 0.0.4."""
    sample_memory()
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
