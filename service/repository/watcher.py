"""Polls the model folder: a daemon thread calling `manager.refresh()` every `poll_seconds`.

Threads do not survive fork, so each gunicorn worker starts its own watcher after forking.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger(__name__)


class Refreshable(Protocol):
    def refresh(self) -> None: ...


class Watcher:
    """Calls `manager.refresh()` every `poll_seconds` until `stop()`; 0 or less disables polling.

    The first call comes after one interval: whoever starts the watcher is expected to have
    refreshed once already, synchronously, so start-up does not race requests.
    """

    def __init__(self, manager: Refreshable, poll_seconds: float, name: str = "model-watcher") -> None:
        self.manager = manager
        self.poll_seconds = poll_seconds
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            if self.poll_seconds <= 0:
                log.info("model polling disabled (poll_seconds=%s)", self.poll_seconds)
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the thread to end and wait for it (a refresh in progress finishes first)."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.manager.refresh()
            except Exception:
                # refresh() is not meant to raise; if it does, the next poll may well succeed.
                log.exception("model refresh failed; polling continues")
