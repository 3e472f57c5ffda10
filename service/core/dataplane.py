"""The data plane: the one transport-free path every door's request takes, as MLServer's and
KServe's `DataPlane`.

A door reads its wire format into a payload and hands it here with the model it names; the
data plane looks the version up (once), has the payload decode itself against the resolved
signature, validates, batches, runs and times the call, and hands back the outputs with the
version and signature that answered. Nothing here knows about HTTP, Flask or a wire format:
the gRPC doors call the same `infer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Protocol

import numpy as np

from service.config import Config
from service.core.batching import Batcher, QueueObserver
from service.core.validation import validate_inputs
from service.errors import InvalidInput, NotFound
from service.ops import context
from service.repository.manager import AVAILABLE, ModelManager, VersionState
from service.repository.servable import Servable, Signature


class Payload(Protocol):
    """A request as a door's codec holds it, not yet turned into arrays: the signature it asks
    for, and how to decode it once the data plane has found the version and that signature."""

    @property
    def signature_name(self) -> str | None: ...

    def decode(self, signature: Signature, servable: Servable) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class Inference:
    """What answered a request: the version, its signature, and the output arrays by name."""

    servable: Servable
    signature: Signature
    outputs: dict[str, np.ndarray]


class DataPlane:
    def __init__(self, manager: ModelManager, config: Config, observe_queue: QueueObserver | None = None) -> None:
        self.manager = manager
        self.config = config
        self.batcher = (
            Batcher(config.batch_max_size, config.batch_max_wait_us, config.batch_queue_size, observe_queue)
            if config.batching else None
        )
        if self.batcher is not None:
            # A version's lanes hold it; they go when it does.
            manager.add_unload_listener(self.batcher.release)

    # ----------------------------------------------------------------- lookup

    def servable(self, name: str, version: str | int | None = None, label: str | None = None) -> Servable:
        """The version a request names: by number, by label, or by default the highest served."""
        servable = self.manager.servable(name, request_version(version), label)
        context.note_servable(servable)  # the request's model and version, for its metrics and access line
        return servable

    def version_states(self, name: str, version: str | int | None = None,
                       label: str | None = None) -> list[VersionState]:
        """Every version the manager knows of `name`, or only the one named by version or label."""
        states = self.manager.version_states(name)
        if version is None and label is None:
            return states
        wanted = self.servable(name, version, label).version
        return [s for s in states if s.version == wanted]

    def available_versions(self, name: str) -> list[int]:
        return [s.version for s in self.manager.version_states(name) if s.state == AVAILABLE]

    # ----------------------------------------------------------------- inference

    def infer(self, name: str, payload: Payload, version: str | int | None = None,
              label: str | None = None) -> Inference:
        servable = self.servable(name, version, label)
        signature = servable.signature(payload.signature_name)
        inputs = payload.decode(signature, servable)
        typed, rows = validate_inputs(inputs, signature, servable.card, self.config.max_instances)
        # Timed here, the one place every door's model call passes: the request's phases follow.
        started = perf_counter()
        outputs = signature(typed) if self.batcher is None else self.batcher.run(servable, signature, typed, rows)
        context.note_inference(servable, started)
        _require_finite(outputs)
        return Inference(servable, signature, outputs)


def _require_finite(outputs: dict[str, np.ndarray]) -> None:
    """A model can overflow on a finite input (3e38 into y = 2x - 1), and JSON has no infinity:
    the doors would write null. Say why instead."""
    for name, array in outputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"output {name!r} is not a finite {array.dtype} for this input: "
                               "the input is outside the range the model can compute")


def request_version(version: str | int | None) -> int | None:
    """A version as a request names it (a path segment or a field); anything but a positive
    integer names no version there can be."""
    if version is None or isinstance(version, int):
        return version
    if not version.isascii() or not version.isdigit() or len(version) > 18 or int(version) == 0:
        raise NotFound(f"version must be a positive integer, got {version[:40]!r}")
    return int(version)
