"""The compiled path: a version's signatures converted to a LiteRT (TensorFlow Lite) model.

A SavedModel signature call costs 300-500 us of fixed TensorFlow overhead for a few
microseconds of maths; the same graph in a LiteRT interpreter costs 4-10 us. A signature
is switched over only when its outputs match the SavedModel's within COMPILED_ATOL on the
golden inputs, so the compiled path never changes an answer beyond float rounding.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from service.repository.servable import Signature

log = logging.getLogger(__name__)

COMPILED_ATOL = 1e-5
BACKEND = "litert"


class _LockedRunner:
    """A LiteRT signature runner for many request threads: the interpreter is not thread-safe."""

    def __init__(self, runner: Any, lock: threading.Lock) -> None:
        self._runner = runner
        self._lock = lock

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            return self._runner(**inputs)


def compile_signatures(path: Path, signatures: dict[str, Signature], probes: dict[str, dict[str, np.ndarray]],
                       where: str) -> dict[str, Signature]:
    """Return `signatures` with every one that converts and matches on its probe inputs compiled.

    `probes` holds, per signature, a batch to compare both paths on (the golden inputs).
    Anything that fails keeps the SavedModel function: compilation is an optimisation only.
    """
    try:
        interpreter = _interpreter(path, [key for key in signatures if key in probes])
    except Exception as exc:  # the converter raises many types; any of them means "not compiled"
        log.info("%s: not compiled to LiteRT (%s)", where, " ".join(str(exc).split())[:200])
        return signatures
    if interpreter is None:
        return signatures
    lock = threading.Lock()
    available = interpreter.get_signature_list()
    compiled = dict(signatures)
    for key, signature in signatures.items():
        if key not in available or key not in probes:
            continue
        fast = dataclasses.replace(signature, function=_LockedRunner(interpreter.get_signature_runner(key), lock),
                                   backend=BACKEND)
        difference = _difference(signature, fast, probes[key])
        if difference is None or difference > COMPILED_ATOL:
            log.warning("%s: signature %r kept on TensorFlow: compiled outputs differ by %s", where, key, difference)
            continue
        compiled[key] = fast
    return compiled


def _interpreter(path: Path, keys: list[str]) -> Any:
    if not keys:
        return None
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_saved_model(str(path), signature_keys=keys)
    # One thread: gunicorn runs one process per core, and each must not take the other's.
    return Interpreter(model_content=converter.convert(), num_threads=1)


def _difference(reference: Signature, fast: Signature, inputs: dict[str, np.ndarray]) -> float | None:
    try:
        expected, got = reference(inputs), fast(inputs)
    except Exception as exc:
        log.warning("compiled signature %r failed on its probe: %s", reference.name, exc)
        return None
    if set(expected) != set(got):
        return None
    worst = 0.0
    for key, value in expected.items():
        other = np.asarray(got[key])
        if other.shape != value.shape:
            return None
        if value.dtype.kind in "fiub":
            worst = max(worst, float(np.max(np.abs(value.astype(np.float64) - other.astype(np.float64)), initial=0)))
        elif not np.array_equal(value, other):
            return None
    return worst
