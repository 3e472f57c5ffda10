"""Per-process TensorFlow settings, applied once in each worker before the first model loads."""

from __future__ import annotations

import logging
import os

from service.config import Config

_configured = False


def import_tensorflow() -> None:
    """Import TensorFlow with its C++ logging at warnings and above (what every process here wants)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401


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
