"""Boxes of items and how a box is fitted to the model's frame.

The photo pipelines fit the item's box so that its long direction fills `fill` of the frame,
centred on black (as Zalando made Fashion-MNIST from product shots); training re-fits its
augmented items the same way (training/augment.py, tested against `fit_box`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]    # left, top, right, bottom; exclusive ends


def trimmed_box(mask: np.ndarray, trim: float) -> Box:
    """Bounding box of the mask, ignoring `trim` of its pixels at each side (0: the exact box)."""

    def span(counts: np.ndarray) -> tuple[int, int]:
        cumulative = np.cumsum(counts)
        total = cumulative[-1]
        start = int(np.searchsorted(cumulative, total * trim, side="right"))
        stop = int(np.searchsorted(cumulative, total * (1 - trim), side="left")) + 1
        return start, max(stop, start + 1)

    left, right = span(np.count_nonzero(mask, axis=0))
    top, bottom = span(np.count_nonzero(mask, axis=1))
    return left, top, right, bottom


def item_boxes(images: np.ndarray, level: int = 0) -> np.ndarray:
    """(N, 4) float32 boxes of the pixels above `level` in each of (N, H, W) images; the frame if none is."""
    height, width = images.shape[1:3]
    boxes = [trimmed_box(lit, 0.0) if lit.any() else (0, 0, width, height) for lit in images > level]
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def fit_box(box: Box, size: tuple[int, int], fill: float = 1.0) -> tuple[float, Box]:
    """The scale that fits `box` into a frame of `size` (width, height), and where it lands, in whole pixels.

    The long direction of the box fills `fill` of the frame; the box is centred, rounded down
    to the pixel where the frame and the box differ by an odd number of pixels.
    """
    left, top, right, bottom = box
    box_w, box_h = right - left, bottom - top
    scale = fill * min(size[0] / box_w, size[1] / box_h)
    new_w = min(size[0], max(1, round(box_w * scale)))
    new_h = min(size[1], max(1, round(box_h * scale)))
    x, y = (size[0] - new_w) // 2, (size[1] - new_h) // 2
    return scale, (x, y, x + new_w, y + new_h)


def fit(image: Image.Image, box: Box, size: tuple[int, int], method: Image.Resampling,
        fill: float = 1.0) -> Image.Image:
    """The box of `image` scaled as `fit_box` says, on a black "L" frame of `size`."""
    _, (x, y, x_end, y_end) = fit_box(box, size, fill)
    scaled = image.resize((x_end - x, y_end - y), method, box=box, reducing_gap=3.0)
    frame = Image.new("L", size, 0)
    frame.paste(scaled, (x, y))
    return frame


def shrink(image: Image.Image, alpha: np.ndarray | None, long_side: int) -> tuple[Image.Image, np.ndarray | None]:
    """The image (and its alpha mask) reduced so its long side is `long_side`, by box averaging."""
    scale = long_side / max(image.size)
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    small = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    if alpha is not None:
        mask = Image.fromarray(alpha.astype(np.uint8) * 255, "L").resize(size, Image.Resampling.BOX)
        alpha = np.asarray(mask) >= 128
    return small, alpha
