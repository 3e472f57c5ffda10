"""The loader: one version folder in, one ready-to-serve Servable out (or a LoadError).

"Ready" means proven: the golden set written at training time is run through the loaded
signature and must give the recorded outputs, which also warms the graph up so the first
real request does not pay for tracing. TensorFlow is imported here, when a version is
loaded, never when the module is imported.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.repository.card import CardError, read_card
from service.repository.compiled import compile_signatures
from service.repository.servable import Servable, Signature, TensorSpec

log = logging.getLogger(__name__)

GOLDEN_RTOL = 1e-5
_MAX_MESSAGE = 400
# Absolute paths in TensorFlow's messages, e.g. "/srv/models/iris/2/saved_model.pb".
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[\w.\-]+){2,}/?")


class LoadError(Exception):
    """A version could not be loaded; the message names the model and version, never a path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def load_servable(name: str, version: int, path: Path, compile_litert: bool = True) -> Servable:
    """Load `path` as version `version` of model `name`, self-test it, and return it.

    With `compile_litert`, signatures that reproduce the SavedModel as LiteRT run on it.

    Raises LoadError for anything that goes wrong (unreadable SavedModel, no usable signature,
    bad card, golden outputs not reproduced).
    """
    where = f"model {name!r} version {version}"
    path = Path(path)
    try:
        import tensorflow as tf

        # Timed from here: the first version loaded in a process would otherwise carry TensorFlow's import.
        started = time.perf_counter()
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise LoadError(f"{where}: cannot load the SavedModel: {scrub(exc, path, name, version)}") from None
        signatures = _signatures(loaded)
        if not signatures:
            raise LoadError(f"{where}: the SavedModel has no signatures to serve")
        default = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        try:
            card = read_card(path, signatures[default], name=name, version=version)
        except CardError as exc:
            raise LoadError(f"{where}: {exc}") from None
        if card.golden is not None:
            _self_test(card.golden, signatures, where)
        else:
            _warm_up(signatures[default], where)
        if compile_litert and card.golden is not None:
            signatures = compile_signatures(path, signatures, _probes(card.golden, signatures), where)
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"{where}: {scrub(exc, path, name, version)}") from None
    return Servable(
        name=name, version=version, path=path, card=card, signatures=signatures, default_signature=default,
        loaded_seconds=time.perf_counter() - started, handle=loaded,
    )


def scrub(exc: BaseException, path: Path | None = None, name: str = "", version: int | None = None) -> str:
    """A one-line message for `exc` with file system paths replaced by the model and version."""
    text = str(exc).strip() or type(exc).__name__
    text = " ".join(text.split())
    if path is not None:
        short = f"{name}/{version}" if name else "<model>"
        for variant in sorted({str(path), str(path.absolute()), str(path.resolve())}, key=len, reverse=True):
            text = text.replace(variant, short)
    text = _ABSOLUTE_PATH.sub("<path>", text)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE - 3] + "..."


def _signatures(loaded: Any) -> dict[str, Signature]:
    signatures: dict[str, Signature] = {}
    for key, function in loaded.signatures.items():
        args, kwargs = function.structured_input_signature
        if args:
            log.warning("signature %r takes positional inputs, which cannot be named in a request; skipped", key)
            continue
        outputs = function.structured_outputs
        if not isinstance(outputs, dict):
            log.warning("signature %r does not return named outputs; skipped", key)
            continue
        signatures[key] = Signature(
            name=key,
            inputs={k: _spec(k, s) for k, s in sorted(kwargs.items())},
            outputs={k: _spec(k, s) for k, s in sorted(outputs.items())},
            function=function,
        )
    return signatures


def _spec(key: str, spec: Any) -> TensorSpec:
    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    # Unknown rank cannot be written as a tuple; one free batch dimension is the least wrong.
    shape = tuple(dims) if dims is not None else (None,)
    return TensorSpec(name=key, dtype=np.dtype(spec.dtype.as_numpy_dtype).name, shape=shape)


def _self_test(golden: dict[str, Any], signatures: dict[str, Signature], where: str) -> None:
    signature_name = golden.get("signature_name", "serving_default")
    signature = signatures.get(signature_name)
    if signature is None:
        raise LoadError(f"{where}: golden set is for signature {signature_name!r}, which the model does not have")
    given = golden["inputs"]
    if set(given) != set(signature.inputs):
        raise LoadError(f"{where}: golden inputs {sorted(given)} do not match the inputs of signature "
                        f"{signature_name!r} {sorted(signature.inputs)}")
    try:
        inputs = {key: np.asarray(value, dtype=signature.inputs[key].dtype) for key, value in given.items()}
    except (TypeError, ValueError) as exc:
        raise LoadError(f"{where}: golden inputs cannot be read as the signature's dtypes: {exc}") from None
    try:
        results = signature(inputs)
    except Exception as exc:
        raise LoadError(f"{where}: golden inputs fail on signature {signature_name!r}: {scrub(exc)}") from None

    atol = float(golden.get("atol", 1e-5))
    for key, expected_raw in golden["outputs"].items():
        if key not in results:
            raise LoadError(f"{where}: golden output {key!r} is not an output of signature {signature_name!r}")
        actual = np.asarray(results[key])
        expected = np.asarray(expected_raw, dtype=object if actual.dtype.kind in "OSU" else None)
        if expected.shape != actual.shape:
            raise LoadError(f"{where}: golden output {key!r} has shape {list(actual.shape)}, "
                            f"expected {list(expected.shape)}")
        if actual.dtype.kind in "OSU":
            if not all(_text(a) == _text(e) for a, e in zip(actual.ravel(), expected.ravel(), strict=True)):
                raise LoadError(f"{where}: golden output {key!r} differs from the recorded strings")
            continue
        actual_f = actual.astype(np.float64)
        expected_f = expected.astype(np.float64)
        if not np.allclose(actual_f, expected_f, atol=atol, rtol=GOLDEN_RTOL, equal_nan=True):
            worst = float(np.nanmax(np.abs(actual_f - expected_f))) if actual_f.size else float("nan")
            raise LoadError(f"{where}: golden output {key!r} differs by {worst:.3g} > atol {atol:g} "
                            f"(rtol {GOLDEN_RTOL:g}); the model does not reproduce its recorded outputs")


def _probes(golden: dict[str, Any], signatures: dict[str, Signature]) -> dict[str, dict[str, np.ndarray]]:
    """The golden inputs, for every signature that takes the same inputs as the golden one."""
    source = signatures[golden.get("signature_name", "serving_default")]
    inputs = {key: np.asarray(value, dtype=source.inputs[key].dtype) for key, value in golden["inputs"].items()}
    return {key: inputs for key, sig in signatures.items() if sig.inputs == source.inputs}


def _warm_up(signature: Signature, where: str) -> None:
    """Trace the graph once with a zero batch, when every input's instance shape is known."""
    inputs: dict[str, np.ndarray] = {}
    for key, spec in signature.inputs.items():
        if any(d is None for d in spec.instance_shape):
            return
        shape = tuple(1 if d is None else d for d in spec.shape)
        inputs[key] = np.full(shape, b"", dtype=object) if spec.dtype == "object" else np.zeros(shape, spec.dtype)
    try:
        signature(inputs)
    except Exception as exc:
        # Zeros need not be valid input (a string parser, an id lookup), so a model we know
        # nothing about is not failed for rejecting them; the first request will tell.
        log.warning("%s: warm-up with a zero batch failed: %s", where, scrub(exc))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
