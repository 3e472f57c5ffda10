"""Where the item is in an image: background models, thresholds, connected components and masks.

All at the pipeline's working size (about 128-160 px on the long side), on numpy arrays.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.cluster.vq import kmeans2

from preprocessing.pixels import corner_median, quantile_u8

# A border colour that loses all its pixels keeps its centre (missing="warn"): expected, not news.
warnings.filterwarnings("ignore", message="One of the clusters is empty", module="scipy.cluster.vq")


def colour_features(rgb: np.ndarray, lum_weight: float) -> np.ndarray:
    """(H, W, 4): brightness (weighted) and chroma relative to brightness, in level units.

    Shading scales a surface's colour, so its chroma divided by its brightness barely moves;
    the floor of 32 keeps the noise of near-black pixels from being magnified.
    """
    brightness = rgb.sum(axis=-1, keepdims=True) * np.float32(1 / 3)
    chroma = (rgb - brightness) * (np.float32(128.0) / np.maximum(brightness, np.float32(32.0)))
    return np.concatenate([brightness * np.float32(math.sqrt(3.0 * lum_weight)), chroma], axis=-1)


def background_colours(features: np.ndarray, strip: int, count: int, min_share: float, centre_max: float,
                        tolerance: float) -> np.ndarray | None:
    """The border's background colours (k, C), or None; see FashionMnistPhotoV2."""
    sides = (features[:strip], features[-strip:], features[strip:-strip, :strip], features[strip:-strip, -strip:])
    pixels = np.concatenate([side.reshape(-1, features.shape[-1]) for side in sides])[::3]
    centres = [np.median(pixels, axis=0)]
    closest = np.square(pixels - centres[0]).sum(axis=1)
    for _ in range(count - 1):
        farthest = int(np.argmax(closest))
        if closest[farthest] < tolerance**2:   # the rest is one colour already
            break
        centres.append(pixels[farthest])
        np.minimum(closest, np.square(pixels - centres[-1]).sum(axis=1), out=closest)
    # Four of Lloyd's steps from those centres; a centre left without pixels stays where it was.
    means = kmeans2(pixels, np.array(centres, dtype=np.float32), iter=4, minit="matrix", missing="warn")[0]
    means = means.astype(np.float32, copy=False)
    assigned = nearest(pixels, means)[0]
    border_share = np.bincount(assigned, minlength=len(means)) / len(pixels)
    height, width = features.shape[:2]
    middle = features[int(height * 0.3):int(height * 0.7) + 1, int(width * 0.3):int(width * 0.7) + 1]
    middle = middle.reshape(-1, features.shape[-1])[::2]
    index, squared = nearest(middle, means)
    close = squared <= tolerance**2
    centre_share = np.bincount(index[close], minlength=len(means)) / max(len(middle), 1)
    keep = (border_share >= min_share) & (centre_share <= centre_max)
    return means[keep] if keep.any() else None


def nearest(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre of each point, and the squared distance to it."""
    squared = np.einsum("pc,pc->p", points, points)[:, np.newaxis] - 2 * points @ centres.T
    squared += np.einsum("kc,kc->k", centres, centres)
    index = squared.argmin(axis=1)
    return index, squared[np.arange(len(points)), index]


def main_object(mask: np.ndarray, sigma: float, bridge: int) -> np.ndarray:
    """The connected component with the best area x centrality, with what lies within `bridge` pixels of it."""
    joined = mask
    for _ in range(bridge):
        joined = dilate(joined)
    labels, count = components(joined)
    if count == 0:
        return mask
    height, width = mask.shape
    flat = labels.ravel()
    where = np.flatnonzero(flat >= 0)
    ids = flat[where]
    area = np.bincount(ids, minlength=count).astype(np.float64)
    rows, cols = np.divmod(where, width)
    centre_y = np.bincount(ids, rows, minlength=count) / area / height - 0.5
    centre_x = np.bincount(ids, cols, minlength=count) / area / width - 0.5
    score = area * np.exp(-(centre_y**2 + centre_x**2) / (2 * sigma**2))
    chosen = labels == int(np.argmax(score))
    closed = chosen
    for _ in range(bridge):
        closed = erode(closed)
    return closed | (chosen & mask)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every region of the rest that does not reach the image's edge (4-connected) added."""
    return ndimage.binary_fill_holes(mask)


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components: labels (-1 outside the mask, else 0..count-1 in raster order) and their count."""
    labels, count = ndimage.label(mask)
    return labels.astype(np.int64) - 1, count


def transparency_mask(image: Image.Image, corner: float) -> np.ndarray | None:
    """Opaque pixels, when alpha cuts an item out of a transparent background; None otherwise.

    Only a background that is transparent at the corners counts: a photo with a faded edge
    or a transparent watermark is still analysed by its colours.
    """
    if image.mode not in ("LA", "RGBA"):
        return None
    alpha = np.asarray(image.getchannel("A"))
    opaque = alpha >= 128
    if not opaque.any() or corner_median(alpha, corner) >= 128:
        return None
    return opaque




def otsu(values: np.ndarray) -> float:
    """Otsu's threshold of a uint8 array: the split that best separates its two modes."""
    counts = np.bincount(values.reshape(-1), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(counts * levels)
    mean_low = mass_low / np.maximum(weight_low, 1)
    mean_high = (mass_low[-1] - mass_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(np.argmax(between))


def corner_gradient(values: np.ndarray, fraction: float, outlier: float) -> np.ndarray:
    """Background (H, W, C) blended bilinearly from the four corners' medians; an odd corner out takes the median."""
    height, width, channels = values.shape
    ph, pw = max(1, round(height * fraction)), max(1, round(width * fraction))
    patches = (values[:ph, :pw], values[:ph, -pw:], values[-ph:, :pw], values[-ph:, -pw:])
    corners = np.array([[quantile_u8(p[..., c], 0.5) for c in range(channels)] for p in patches], dtype=np.float32)
    middle = np.median(corners, axis=0)
    odd = np.abs(corners - middle).max(axis=1) > outlier
    corners[odd] = middle
    u = np.linspace(0, 1, width, dtype=np.float32)[:, np.newaxis]
    v = np.linspace(0, 1, height, dtype=np.float32)[:, np.newaxis, np.newaxis]
    top = corners[0] + (corners[1] - corners[0]) * u            # (W, C): cheap rows first,
    bottom = corners[2] + (corners[3] - corners[2]) * u
    return top + v * (bottom - top)                              # then one pass over the image


def filled(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The mask with holes filled: inside its extent both along its row and along its column, within box."""
    rows = span_fill(mask)
    cols = span_fill(mask.T).T
    filled = rows & cols
    left, top, right, bottom = box
    inside = np.zeros_like(mask)
    inside[top:bottom, left:right] = True
    return filled & inside


def span_fill(mask: np.ndarray) -> np.ndarray:
    width = mask.shape[1]
    first = np.argmax(mask, axis=1)
    last = width - 1 - np.argmax(mask[:, ::-1], axis=1)
    index = np.arange(width)
    return (index >= first[:, np.newaxis]) & (index <= last[:, np.newaxis]) & mask.any(axis=1)[:, np.newaxis]


def open_mask(mask: np.ndarray) -> np.ndarray:
    """Morphological opening (3x3): drops specks and threads thinner than 3 px at working size."""
    opened = dilate(erode(mask))
    return opened if opened.any() else mask


# Erosion and dilation stay in numpy: over shifted slices they take 28 us on a 128x96 mask,
# scipy.ndimage's binary_erosion/dilation 100-140 us and its minimum/maximum_filter 60 us, and
# version 2 runs about eight of them per photo (docs/preprocessing.md).
def erode(mask: np.ndarray) -> np.ndarray:
    """3x3 erosion; the edge pixels go on outside the image."""
    padded = np.pad(mask, 1, mode="edge")
    rows = padded[:, :-2] & padded[:, 1:-1] & padded[:, 2:]
    return rows[:-2] & rows[1:-1] & rows[2:]


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 dilation; the edge pixels go on outside the image."""
    padded = np.pad(mask, 1, mode="edge")
    rows = padded[:, :-2] | padded[:, 1:-1] | padded[:, 2:]
    return rows[:-2] | rows[1:-1] | rows[2:]
