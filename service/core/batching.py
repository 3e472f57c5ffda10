"""Adaptive micro-batching, per worker and per served signature, as TensorFlow Serving and
Triton do it: requests that arrive together share one model call.

Each (model, version, signature) gets a bounded queue and one thread. The thread takes the
first waiting request, then gathers more until the batch holds `max_batch_size` instances
or `max_wait_us` has passed since that first request, runs the signature once on the
concatenated inputs and hands every request its own rows. A full queue answers 503 at
once: waiting without bound would only turn overload into timeouts. When a version is
unloaded, `release()` closes its lanes, so no queue or thread keeps its model in memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from service.errors import Unavailable
from service.repository.servable import Servable, Signature

IDLE_SECONDS = 30.0

# Called with (seconds waited in the queue, instances in the batch) for each request, in its thread.
QueueObserver = Callable[[float, int], None]


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    enqueued: float
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None
    waited: float = 0.0                 # seconds in the queue, set by the lane's thread
    batch_rows: int = 0                 # instances in the call this request rode in


class _Lane:
    """The queue and thread of one signature of one version."""

    def __init__(self, signature: Signature, max_batch_size: int, max_wait_s: float, max_queue: int,
                 observe: QueueObserver | None) -> None:
        self.signature = signature
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        # Unbounded, so close() can always queue its marker; submit() keeps requests to max_queue.
        self.queue: queue.Queue[_Pending | None] = queue.Queue()
        self.observe = observe
        # The thread ends after IDLE_SECONDS without work, or once the lane is closed and
        # drained; `_running` and `_closed` under `_state` make start, close and exit race-free.
        self._state = threading.Lock()
        self._running = False
        self._closed = False

    def submit(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray] | None:
        """The outputs for `inputs`, or None when the lane is closed (the caller runs them itself)."""
        pending = _Pending(inputs, rows, time.perf_counter())
        with self._state:
            if self._closed:
                return None
            if self.queue.qsize() >= self.max_queue:
                raise Unavailable("server busy: the inference queue is full; retry shortly")
            self.queue.put_nowait(pending)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name=f"batcher-{self.signature.name}", daemon=True).start()
        pending.done.wait()
        if self.observe is not None:
            # Here, in the request's own thread, so the observer can tell which request waited.
            self.observe(pending.waited, pending.batch_rows)
        if pending.error is not None:
            raise pending.error
        assert pending.outputs is not None
        return pending.outputs

    def close(self) -> None:
        """Let the requests already queued run, then end the thread; later ones are turned away."""
        with self._state:
            self._closed = True
            if self._running:
                self.queue.put_nowait(None)  # behind every queued request: the thread drains, then ends

    def _run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._state:
                    if self.queue.empty():
                        self._running = False
                        return
                continue
            if first is None:
                return
            batch, rows = [first], first.rows
            deadline = first.enqueued + self.max_wait_s
            closing = False
            while rows < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                try:
                    item = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
                rows += item.rows
            self._execute(batch, rows)
            if closing:
                return

    def _execute(self, batch: list[_Pending], rows: int) -> None:
        started = time.perf_counter()
        try:
            if len(batch) == 1:
                results = [self.signature(batch[0].inputs)]
            else:
                joined = {key: np.concatenate([p.inputs[key] for p in batch]) for key in batch[0].inputs}
                outputs = self.signature(joined)
                bounds = np.cumsum([p.rows for p in batch])[:-1]
                parts = {key: np.split(value, bounds) for key, value in outputs.items()}
                results = [{key: parts[key][i] for key in parts} for i in range(len(batch))]
            for pending, result in zip(batch, results, strict=True):
                pending.outputs = result
        except Exception as exc:
            for pending in batch:
                pending.error = exc
        for pending in batch:
            pending.waited = started - pending.enqueued
            pending.batch_rows = rows
            pending.done.set()


class Batcher:
    def __init__(self, max_batch_size: int, max_wait_us: int, max_queue: int,
                 observe: QueueObserver | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_us / 1e6
        self.max_queue = max_queue
        self.observe = observe
        self._lanes: dict[tuple[str, int, str], _Lane] = {}
        self._lock = threading.Lock()

    def run(self, servable: Servable, signature: Signature, inputs: dict[str, np.ndarray],
            rows: int) -> dict[str, np.ndarray]:
        lane = self._lane(servable, signature) if rows < self.max_batch_size else None
        outputs = lane.submit(inputs, rows) if lane is not None else None
        if outputs is None:
            # A full batch would only wait in a queue; an unloaded version must not get a lane to live on in.
            if self.observe is not None:
                self.observe(0.0, rows)
            return signature(inputs)
        return outputs

    def _lane(self, servable: Servable, signature: Signature) -> _Lane | None:
        key = (servable.name, servable.version, signature.name)
        lane = self._lanes.get(key)
        if lane is not None and lane.signature is signature:
            return lane
        with self._lock:
            # Checked under the lock release() takes, after unload() set it: no lane outlives release().
            if servable.unloaded:
                return None
            lane = self._lanes.get(key)
            if lane is None or lane.signature is not signature:
                lane = _Lane(signature, self.max_batch_size, self.max_wait_s, self.max_queue, self.observe)
                self._lanes[key] = lane
            return lane

    def release(self, name: str, version: int) -> None:
        """Drop the lanes of an unloaded version: their queued requests finish, their threads end.

        Call it after `Servable.unload()`, so no request can open a new lane for the version.
        """
        with self._lock:
            keys = [key for key in self._lanes if key[:2] == (name, version)]
            lanes = [self._lanes.pop(key) for key in keys]
        for lane in lanes:
            lane.close()

    def queue_depths(self) -> dict[str, int]:
        """Requests waiting now, by model (for the queue depth gauge, sampled off the hot path)."""
        depths: dict[str, int] = {}
        for (model, _version, _signature), lane in list(self._lanes.items()):
            depths[model] = depths.get(model, 0) + lane.queue.qsize()
        return depths
