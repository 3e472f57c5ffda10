"""Encoded image files sent where an image model takes pixels: the batch the model receives.

TensorFlow Serving passes b64 bytes to string inputs only, and the Open Inference Protocol
BYTES tensors likewise; for an image model this server decodes them as image files, which is
what a client sending bytes to it means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.codecs.images import prepare_image
from service.errors import InvalidInput
from service.repository.servable import ModelCard


def takes_images(card: ModelCard, input_name: str) -> bool:
    return card.input_kind == "image" and input_name == card.input_name


def image_batch(files: Sequence[bytes], card: ModelCard, max_pixels: int, where: str) -> np.ndarray:
    """Each file through the card's pipeline, stacked; an error names the input and the image."""
    if not files:
        raise InvalidInput(f"{where}: no images")
    return np.stack([prepare_image(data, card.image_pipeline, max_pixels, f"{where}, image {i}").array
                     for i, data in enumerate(files)])
