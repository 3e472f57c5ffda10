"""A model card's `input` block to the pipeline object that prepares its images, checked once.

The server builds it when it reads a version's card (so a card naming an unknown pipeline or
bad parameters stops the version from loading); training records `pipeline.spec()` in the
cards it writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from PIL import Image

from preprocessing.pipelines import PIPELINES, FashionMnistPhoto, ImagePipeline, Resize

NUMERIC_DTYPES = ("float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64")


class PipelineError(ValueError):
    """The card's input asks for preprocessing this code does not have, or describes no image."""


@dataclass(frozen=True)
class CardPipeline:
    """A card's image preprocessing: the pipeline, and the shape and dtype of one model input."""

    pipeline: ImagePipeline
    shape: tuple[int, ...] | None    # the card's instance shape, when fully known
    dtype: str | None                # the card's dtype, when numeric

    def to_array(self, seen: Image.Image) -> np.ndarray:
        """The model input for one instance from what the pipeline's `run` returned."""
        array = self.pipeline.to_array(seen)
        if self.shape is not None and math.prod(self.shape) == array.size:
            array = array.reshape(self.shape)
        return array if self.dtype is None else array.astype(self.dtype, copy=False)


def pipeline_for(card_input: Mapping[str, Any]) -> CardPipeline:
    """The pipeline a card's `input` asks for, with the parameters it recorded over the card's shape.

    Without `input.image.preprocessing`: `fashion_mnist_photo` for grayscale models trained on
    dark backgrounds, `resize` for any other image model. Without a recorded version: version 1,
    which is what every card that records none was validated with (a later version must never
    change the answers of a model published before it). Raises PipelineError.
    """
    height, width, channels = _image_shape(card_input)
    image = card_input.get("image") or {}
    background = image.get("background")
    chosen = image.get("preprocessing") or {}
    if not isinstance(chosen, Mapping):
        raise PipelineError(f"image preprocessing must be an object, not {chosen!r}")
    name = chosen.get("name") or (FashionMnistPhoto.name if background == "dark" and channels == 1
                                  else Resize.name)
    versions = sorted(version for known, version in PIPELINES if known == name)
    if not versions:
        known = ", ".join(sorted({known for known, _ in PIPELINES}))
        raise PipelineError(f"the model card asks for image preprocessing {name!r}; this server knows {known}")
    version = chosen.get("version") or versions[0]
    if (name, version) not in PIPELINES:
        raise PipelineError(f"the model card asks for image preprocessing {name!r} version {version!r}; "
                            f"this server has versions {versions}")
    cls = PIPELINES[(name, version)]
    params: dict[str, Any] = {"height": height, "width": width}
    if cls is Resize:
        params.update(channels=channels, background=background, value_range=image.get("value_range") or (0, 255))
    recorded = chosen.get("params") or {}
    if not isinstance(recorded, Mapping):
        raise PipelineError(f"image preprocessing {name!r} version {version}: params must be an object")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(recorded) - allowed)
    if unknown:
        raise PipelineError(f"image preprocessing {name!r} version {version} has no parameters {unknown}")
    params.update(recorded)
    if "value_range" in params:
        params["value_range"] = _pair(params["value_range"])
    try:
        pipeline = cls(**params)
    except ValueError as exc:
        raise PipelineError(f"image preprocessing {name!r} version {version}: {exc}") from None
    shape = card_input.get("shape")
    dtype = card_input.get("dtype") or "float32"
    return CardPipeline(pipeline, tuple(shape) if shape and None not in shape else None,
                        dtype if dtype in NUMERIC_DTYPES else None)


def _pair(value: Any) -> Any:
    """JSON's [low, high] as the tuple of floats the pipeline keeps; anything else as it is, to be refused."""
    if isinstance(value, list | tuple) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return tuple(float(v) for v in value)
    return value


def _image_shape(card_input: Mapping[str, Any]) -> tuple[int, int, int]:
    image = card_input.get("image") or {}
    shape = [s for s in card_input.get("shape") or [] if s is not None]
    height = image.get("height") or (shape[0] if len(shape) >= 2 else None)
    width = image.get("width") or (shape[1] if len(shape) >= 2 else None)
    channels = image.get("channels") or (shape[2] if len(shape) >= 3 else 1)
    if not height or not width or channels not in (1, 3):
        raise PipelineError(f"the model card's input does not describe an image (shape {card_input.get('shape')})")
    return int(height), int(width), int(channels)
