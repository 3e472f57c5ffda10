"""Per-process runtime: TensorFlow settings, applied once in each worker before the first
model loads, and long blocking calls moved off the worker's event loop."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import gevent
from gevent import monkey

from service.config import Config

P = ParamSpec("P")
R = TypeVar("R")

_configured = False


def import_tensorflow() -> None:
    """Import TensorFlow with its C++ logging at warnings and above (what every process here wants)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401


def import_shared_libraries() -> None:
    """What every worker imports, imported once in gunicorn's master so the workers share it:
    TensorFlow, and the scipy modules of the photo pipelines (about 18 MiB more in each worker else)."""
    import_tensorflow()
    import scipy.cluster.vq
    import scipy.ndimage  # noqa: F401


def configure_tensorflow(config: Config) -> None:
    """Pin TensorFlow's thread pools: with several workers per machine, one pool per core
    per worker would oversubscribe the cores and slow every request down."""
    global _configured  # noqa: PLW0603 - TensorFlow accepts these settings once per process
    if _configured:
        return
    import_tensorflow()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(config.tf_intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.tf_inter_op_threads)
    except RuntimeError:
        # Already running (an app built inside a process that used TensorFlow, as tests do).
        logging.getLogger(__name__).warning("TensorFlow already initialised; thread pools left as they are")
    _configured = True


def off_the_loop(function: Callable[P, R]) -> Callable[P, R]:
    """`function`, run in one of gevent's native threads when this process serves on gevent.

    A gunicorn worker here answers every connection from one event loop (threading is
    monkey-patched there): a call that holds it for long, like a model load (0.3-0.8 s) or a
    read of /proc/self/smaps (13 ms), would stop every connection of the worker. In a native
    thread only the calling greenlet waits, and the loop answers the others meanwhile. Without
    gevent (tests, scripts) `function` is returned as it is.
    """
    if not monkey.is_module_patched("threading"):
        return function

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return gevent.get_hub().threadpool.apply(function, args, kwargs)

    return run


def reclaim_memory() -> None:
    """Collect the garbage an unloaded model leaves and give the freed heap back to the system.

    A SavedModel's Python objects form reference cycles, so its tensors wait for a full
    collection, which Python runs rarely. Freed, they stay in glibc's heaps (one arena per
    thread that loaded or served a model), so the worker's RSS would not shrink: malloc_trim
    returns their free pages. The collection holds the GIL wherever it runs (130-140 ms with
    TensorFlow loaded, scripts/reload_memory.py), the pause Python's own full collections
    take; the trim releases the GIL, so it runs off the loop.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        off_the_loop(trim)(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None under another C library (musl has no such call)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
