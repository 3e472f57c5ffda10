"""One core behind every protocol door: find the version, validate, run the signature."""

from __future__ import annotations

from time import perf_counter

import numpy as np

from service.config import Config
from service.core.batching import Batcher, QueueObserver
from service.core.validation import validate_inputs
from service.errors import InvalidInput, NotFound
from service.ops import context
from service.repository.manager import ModelManager
from service.repository.servable import Servable


class InferenceCore:
    def __init__(self, manager: ModelManager, config: Config, observe_queue: QueueObserver | None = None) -> None:
        self.manager = manager
        self.config = config
        self.batcher = (
            Batcher(config.batch_max_size, config.batch_max_wait_us, config.batch_queue_size, observe_queue)
            if config.batching else None
        )
        if self.batcher is not None:
            manager.add_unload_listener(self.batcher.release)  # an unloaded version's lanes must not keep it

    def servable(self, name: str, version: str | int | None = None, label: str | None = None) -> Servable:
        """The version a request names: by number, by label, or by default the highest served."""
        servable = self.manager.servable(name, parse_version(version), label)
        context.note_servable(servable)  # the request's model and version, for its metrics and access line
        return servable

    def infer(self, servable: Servable, inputs: dict[str, np.ndarray],
              signature_name: str | None = None) -> dict[str, np.ndarray]:
        signature = servable.signature(signature_name)
        typed, rows = validate_inputs(inputs, signature, servable.card, self.config.max_instances)
        # Timed here, the one place every door's model call passes: the request's phases follow.
        started = perf_counter()
        outputs = signature(typed) if self.batcher is None else self.batcher.run(servable, signature, typed, rows)
        context.note_inference(servable, started)
        # JSON has no infinity: the doors would write null. Say why instead (e.g. 3e38 into y = 2x - 1).
        _require_finite(outputs)
        return outputs


def _require_finite(outputs: dict[str, np.ndarray]) -> None:
    """A model can overflow on a finite input (3e38 into y = 2x - 1)."""
    for name, array in outputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"output {name!r} is not a finite {array.dtype} for this input: "
                               "the input is outside the range the model can compute")


def parse_version(version: str | int | None) -> int | None:
    if version is None or isinstance(version, int):
        return version
    if not version.isascii() or not version.isdigit() or len(version) > 18 or int(version) == 0:
        raise NotFound(f"version must be a positive integer, got {version[:40]!r}")
    return int(version)
