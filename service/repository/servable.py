"""What a loaded model version offers the rest of the server: its signatures and its card."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from preprocessing.card import CardPipeline


@dataclass(frozen=True)
class TensorSpec:
    name: str                          # key in the signature
    dtype: str                         # numpy name: "float32", "int64", "uint8", "object" for strings
    shape: tuple[int | None, ...]      # with the batch dimension first; None where any size fits

    @cached_property
    def instance_shape(self) -> tuple[int | None, ...]:
        return self.shape[1:]


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    function: Callable[..., dict[str, Any]] = field(repr=False, compare=False)
    method_name: str = "tensorflow/serving/predict"
    backend: str = "tensorflow"        # or "litert" once compiled (see repository/compiled.py)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on a batch already validated against `inputs`; returns numpy arrays by output key."""
        results = self.function(**inputs)
        return {key: value if isinstance(value, np.ndarray) else value.numpy() for key, value in results.items()}


@dataclass(frozen=True)
class ModelCard:
    """The card of one version, from `assets.extra/model_card.json` or made from its signature."""

    raw: dict[str, Any]                          # as published (what /api/models/{name} shows)
    task: str                                    # "classification", "regression" or "tensor"
    input_name: str
    output_name: str
    input_kind: str                              # "features", "image" or "tensor"
    feature_names: tuple[str, ...] = ()          # for "features": column order of the input
    class_names: tuple[str, ...] = ()            # for "classification": index -> label
    class_names_es: tuple[str, ...] = ()         # the lesson's Spanish names, where the card has them
    golden: dict[str, Any] | None = None         # golden.json: inputs and the outputs they must give
    extra_dir: Path | None = None                # assets.extra, for plots
    image_pipeline: CardPipeline | None = field(default=None, compare=False)  # for "image": built from the card

    @cached_property
    def value_range(self) -> tuple[float, float] | None:
        """The [low, high] every value of an image input must lie in, if the card gives one."""
        found = self.raw.get("input", {}).get("image", {}).get("value_range")
        return (found[0], found[1]) if found else None


@dataclass(frozen=True)
class Servable:
    name: str
    version: int
    path: Path
    card: ModelCard
    signatures: dict[str, Signature]
    default_signature: str = "serving_default"
    loaded_seconds: float = 0.0
    handle: Any = field(default=None, repr=False, compare=False)  # keeps the SavedModel's objects alive
    _unloaded: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)

    @property
    def unloaded(self) -> bool:
        return self._unloaded.is_set()

    def unload(self) -> None:
        """Mark this version unloaded, once the manager no longer hands it out.

        Nothing is torn down here: a request already running on this version must finish
        correctly, so its TensorFlow and LiteRT objects go when the last holder lets go. What
        this changes is that nobody may start holding it for longer than a request: the
        Batcher runs it unbatched instead of giving it a new lane (and thread) to live in.
        """
        self._unloaded.set()

    def signature(self, name: str | None) -> Signature:
        from service.errors import NotFound

        key = name or self.default_signature
        try:
            return self.signatures[key]
        except KeyError:
            raise NotFound(
                f"model {self.name!r} version {self.version} has no signature {key!r}; "
                f"it has {', '.join(sorted(self.signatures))}"
            ) from None
