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


class _Runner:
    """One signature of a LiteRT interpreter, for many request greenlets and threads.

    LiteRT's SignatureRunner resizes the input tensors and re-plans the interpreter's memory
    on every call; a server sees the same batch shape call after call, so that happens here
    only when the shape differs from the previous call's (5 us of 170 on an Iris request).
    SetTensor still refuses an array whose shape or dtype does not fit the planned tensor.
    The interpreter is not thread-safe: its signatures share one lock.
    """

    def __init__(self, interpreter: Any, key: str, lock: threading.Lock) -> None:
        self._runner = interpreter.get_signature_runner(key)
        self._wrapper = interpreter._interpreter  # the native calls SignatureRunner makes (private)
        self._subgraph = self._runner._subgraph_index
        self._inputs = {name: details["index"] for name, details in self._runner.get_input_details().items()}
        self._outputs = [(name, details["index"]) for name, details in self._runner.get_output_details().items()]
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._lock = lock

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        shapes = {name: value.shape for name, value in inputs.items()}
        with self._lock:
            if shapes != self._shapes:
                self._shapes = {}                   # a failed resize leaves nothing planned
                results = self._runner(**inputs)    # resize, plan, run
                self._shapes = shapes
                return results
            for name, value in inputs.items():
                self._wrapper.SetTensor(self._inputs[name], value, self._subgraph)
            self._wrapper.Invoke(self._subgraph)
            return {name: self._wrapper.GetTensor(index, self._subgraph) for name, index in self._outputs}


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
        try:
            fast = dataclasses.replace(signature, function=_Runner(interpreter, key, lock), backend=BACKEND)
        except Exception as exc:  # an ai_edge_litert without the private parts _Runner reaches for
            log.warning("%s: signature %r kept on TensorFlow: no LiteRT runner (%s)", where, key, exc)
            continue
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
