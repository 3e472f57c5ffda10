"""Small statistics of pixel values (corner patches, uint8 quantiles) and alpha flattening."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

_SORT_AT_MOST = 256


def flatten_alpha(image: Image.Image, background: int = 255) -> Image.Image:
    """Composite "LA"/"RGBA" onto a flat grey level (white by default), as product shots are."""
    if image.mode not in ("LA", "RGBA"):
        return image
    base = image.mode[:-1]
    flat = Image.new(base, image.size, (background,) * len(base) if base == "RGB" else background)
    flat.paste(image.convert(base), mask=image.getchannel("A"))
    return flat


def corners(values: np.ndarray, fraction: float) -> np.ndarray:
    """The four corner patches' values, concatenated; each patch side is `fraction` of its dimension."""
    height, width = values.shape[:2]
    ph, pw = max(1, round(height * fraction)), max(1, round(width * fraction))
    patches = (values[:ph, :pw], values[:ph, -pw:], values[-ph:, :pw], values[-ph:, -pw:])
    return np.concatenate([p.reshape(-1, *values.shape[2:]) for p in patches])


def corner_median(values: np.ndarray, fraction: float) -> float:
    return quantile_u8(corners(values, fraction), 0.5)


def quantile_u8(values: np.ndarray, q: float) -> float:
    """Quantile of uint8 values: the smallest value with at least q of them at or below it."""
    flat = values.reshape(-1)
    if flat.size <= _SORT_AT_MOST:
        # A few values (the corners of a 28x28 upload): sorting them in Python takes 1.7 us, the
        # histogram's three numpy calls 6 us.
        ordered = sorted(flat.tolist())
        return float(ordered[max(math.ceil(q * len(ordered)) - 1, 0)]) if q > 0 else 0.0
    # From the histogram: much cheaper than sorting.
    cumulative = np.cumsum(np.bincount(flat, minlength=256))
    return float(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
