"""The named, versioned pipelines from a decoded image to a model input.

A model card may record the pipeline it was validated with (`input.image.preprocessing =
{"name", "version", "params"}`, see `preprocessing.card`): once published, a pipeline version
must keep giving the same arrays, so a better one is added under a new version or name
instead of changing an old one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from preprocessing.geometry import fit, shrink, trimmed_box
from preprocessing.pixels import corner_median, corners, flatten_alpha, quantile_u8
from preprocessing.segmentation import (
    background_colours,
    colour_features,
    corner_gradient,
    dilate,
    fill_holes,
    filled,
    main_object,
    nearest,
    open_mask,
    otsu,
    transparency_mask,
)


@dataclass(frozen=True)
class ImagePipeline(ABC):
    """A named, versioned, parameterised way from a decoded image to a model input."""

    name: ClassVar[str]
    version: ClassVar[int]

    def __post_init__(self) -> None:
        # A card's parameters are checked when the card is read, so that a bad one stops the
        # version from loading instead of failing its first upload.
        for f in fields(self):
            _check_parameter(f.name, getattr(self, f.name), f.default)

    def spec(self) -> dict[str, Any]:
        """What a model card records to pin this preprocessing."""
        return {"name": self.name, "version": self.version, "params": asdict(self)}

    @property
    def work_size(self) -> int | None:
        """Long side the decoder may reduce large JPEGs to (never below it); None: full size."""
        return None

    @abstractmethod
    def run(self, image: Image.Image) -> tuple[Image.Image, bool]:
        """From a decoded image (mode L/LA/RGB/RGBA) to the 8-bit image the model sees, and whether it was inverted."""

    @abstractmethod
    def to_array(self, seen: Image.Image) -> np.ndarray:
        """The model input for one instance from what `run` returned."""


@dataclass(frozen=True)
class FashionMnistPhoto(ImagePipeline):
    """Photos or drawings of one garment to Fashion-MNIST's look: light item on black, filling the frame.

    It follows how Zalando made Fashion-MNIST from product shots: trim the background (the
    colour of the corners), scale the long side to the frame, centre, negate. Real photos need
    more, because their backgrounds are neither white nor even:

    - the background is blended from the four corners' colours (so a lit wall or a shaded
      floor is still background), a corner far from the other three being taken as the item;
    - the item is what differs from it (largest channel difference, so colour counts too) by
      more than a threshold set per image from its distance histogram (Otsu), minus specks;
    - polarity is chosen so that the item ends up lighter than the background, and levels so
      that the background is 0 and the item's highlights 255 (every Fashion-MNIST image spans
      0..254 or more);
    - what lies outside the item's outline is set to 0 (floors and walls are not garments,
      and Fashion-MNIST backgrounds are clean black).

    An image already at the model's size is taken as already prepared: it is only converted to
    grayscale and, if its corners are light, inverted. So Fashion-MNIST images pass unchanged.
    """

    name: ClassVar[str] = "fashion_mnist_photo"
    version: ClassVar[int] = 1

    height: int = 28
    width: int = 28
    working_size: int = 160          # long side the analysis runs at: ample for 28 px, and fast
    corner: float = 0.06             # corner patch side, as a fraction of each dimension
    corner_outlier: float = 40.0     # a corner farther than this from the corners' median is not background
    min_threshold: float = 24.0      # least colour distance from the background that counts as item...
    otsu_scale: float = 0.6          # ...or this times Otsu's threshold, if more: Otsu alone cuts into
                                     # items whose parts differ from the background by unequal amounts
    trim: float = 0.002              # share of item pixels ignored at each side of the bounding box (hanger
                                     # hooks, stray threads); more cuts real parts such as heels and cuffs
    min_item: float = 0.002          # item smaller than this share of the image: take the whole image
    min_contrast: float = 48.0       # never stretch a smaller background-to-highlight span to 0..255
    highlight: float = 99.8          # percentile of item pixels that becomes 255 (a few glints may clip)
    clear_background: bool = True    # 0 outside the item's outline
    resample: str = "lanczos"
    sharpen: float = 0.0             # UnsharpMask percent (radius 1) after resizing, as Zalando did; 0: off

    @property
    def work_size(self) -> int | None:
        return self.working_size

    def run(self, image: Image.Image) -> tuple[Image.Image, bool]:
        alpha = transparency_mask(image, self.corner)
        flat = flatten_alpha(image)
        if flat.size == (self.width, self.height):
            return _already_prepared(flat, self.corner)

        if max(flat.size) > self.working_size:
            flat, alpha = shrink(flat, alpha, self.working_size)
        rgb = np.asarray(flat.convert("RGB"), dtype=np.int16)
        lum = np.asarray(flat.convert("L"))
        background = corner_gradient(rgb, self.corner, self.corner_outlier).astype(np.int16)
        background_lum = corner_gradient(lum[..., np.newaxis], self.corner, self.corner_outlier)[..., 0]

        if alpha is not None:
            item = alpha    # a cut-out says exactly where the item is
        else:
            diff = np.abs(rgb - background).astype(np.uint8)
            distance = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])
            threshold = max(self.min_threshold, self.otsu_scale * otsu(distance))
            item = open_mask(distance > threshold)
        if np.count_nonzero(item) < self.min_item * item.size:
            item = np.ones_like(item)
        box = trimmed_box(item, self.trim)

        inverted = corner_median(lum, self.corner) > quantile_u8(lum[item], 0.5)
        values = lum.astype(np.float32)
        floor = background_lum
        if inverted:
            values, floor = 255.0 - values, 255.0 - floor
        contrast = np.clip(values - floor, 0, 255)
        top = quantile_u8(contrast[item].astype(np.uint8), self.highlight / 100)
        levels = contrast * (255.0 / max(top, self.min_contrast))
        if self.clear_background:
            levels *= filled(item, box)
        seen = Image.fromarray(np.rint(np.minimum(levels, 255)).astype(np.uint8), "L")
        seen = fit(seen, box, (self.width, self.height), RESAMPLE[self.resample])
        if self.sharpen:
            seen = seen.filter(ImageFilter.UnsharpMask(radius=1, percent=round(self.sharpen), threshold=0))
        return seen, bool(inverted)

    def to_array(self, seen: Image.Image) -> np.ndarray:
        return np.asarray(seen, dtype=np.float32)


# Corner patch side (fraction of each dimension) where version 2 looks for transparency, the
# polarity of a prepared image and a last-resort background: version 1's default, fixed.
V2_CORNER = 0.06


@dataclass(frozen=True)
class FashionMnistPhotoV2(ImagePipeline):
    """Version 2 of `fashion_mnist_photo`: a colour background model from the border, and the main object only.

    Version 1 reads the background from the four corners; version 2 reads it from the whole
    border and keeps only the garment itself:

    - the border strip's colours are clustered (up to `colours`, deterministic k-means started
      from the median and the farthest colours); a colour is background when it covers at
      least `min_share` of the border and at most `centre_max` of the central region, so a
      garment touching an edge does not make its own colours background;
    - colours are compared as brightness plus chroma relative to brightness, so a shadow on a
      red blanket stays blanket while a grey sweater on it does not; `lum_weight` < 1 counts
      brightness changes (shadows, folds) less than changes of colour;
    - what differs from every background colour by more than a per-image threshold (Otsu on
      the distances, at least `min_threshold`) is foreground; thin lines (tile joints,
      threads) are opened away; the connected component with the best area x centrality
      (Gaussian weight of its centroid's distance from the centre, sigma `centre_sigma` of
      the frame) is the garment, parts within `bridge` pixels of it joining it, holes filled;
    - polarity as in version 1 (the garment ends up lighter than its surroundings), and levels
      as Fashion-MNIST's negated product shots have them: each garment pixel's contrast with
      the background right around the garment, stretched so the garment's `highlight`
      percentile becomes `top`; exactly 0 outside the garment;
    - the garment's box is fitted to the frame like Fashion-MNIST's items (long side = `fill`
      of the frame, centred), antialiased (Lanczos from the working size).

    An image already at the model's size is taken as prepared, exactly as in version 1.
    """

    name: ClassVar[str] = "fashion_mnist_photo"
    version: ClassVar[int] = 2

    height: int = 28
    width: int = 28
    working_size: int = 128          # long side the analysis runs at
    border: float = 0.04             # border strip width, as a fraction of the short side
    colours: int = 4                 # most background colours looked for in the border
    min_share: float = 0.1           # a background colour covers at least this share of the border...
    centre_max: float = 0.25         # ...and at most this share of the central region (middle 40% x 40%)
    lum_weight: float = 1.0          # weight of brightness differences against chroma differences
    denoise: int = 1                 # box blur radius before the colour analysis (textures, JPEG noise)
    min_threshold: float = 24.0      # least colour distance that counts as garment...
    otsu_scale: float = 0.7          # ...or this times Otsu's threshold of the distances, if more
    centre_sigma: float = 0.35       # centrality weight of a component, as a fraction of the frame
    bridge: int = 2                  # gaps up to twice this (working pixels) still join the garment
    trim: float = 0.002              # share of garment pixels ignored at each side of its box
    min_item: float = 0.01           # garment smaller than this share of the image: take the whole image
    highlight: float = 99.5          # percentile of the garment's contrast that becomes `top`...
    min_contrast: float = 32.0       # ...unless its contrast is smaller than this (no stretching of noise)
    top: float = 220.0               # level of the garment's highlights (see docs/images.md)
    fill: float = 1.0                # long side of the garment's box, as a share of the frame
    resample: str = "lanczos"

    @property
    def work_size(self) -> int | None:
        return self.working_size

    def run(self, image: Image.Image) -> tuple[Image.Image, bool]:
        alpha = transparency_mask(image, V2_CORNER)
        flat = flatten_alpha(image)
        if flat.size == (self.width, self.height):
            return _already_prepared(flat, V2_CORNER)

        if max(flat.size) > self.working_size:
            flat, alpha = shrink(flat, alpha, self.working_size)
        rgb_image = flat.convert("RGB")
        lum = np.asarray(rgb_image.convert("L"))
        item = alpha if alpha is not None else self._segment(rgb_image)
        if np.count_nonzero(item) < self.min_item * item.size:
            item = np.ones_like(item)
        box = trimmed_box(item, self.trim)

        around = ~dilate(dilate(item))
        garment = lum[item]
        background = quantile_u8(lum[around] if around.any() else corners(lum, V2_CORNER), 0.5)
        inverted = background > quantile_u8(garment, 0.5)
        values = 255.0 - lum.astype(np.float32) if inverted else lum.astype(np.float32)
        base = 255.0 - background if inverted else background
        high = quantile_u8(255 - garment if inverted else garment, self.highlight / 100)
        levels = np.clip((values - base) / max(high - base, self.min_contrast), 0.0, 1.0) * (self.top * item)
        seen = Image.fromarray(np.rint(levels).astype(np.uint8), "L")
        seen = fit(seen, box, (self.width, self.height), RESAMPLE[self.resample], self.fill)
        return seen, bool(inverted)

    def to_array(self, seen: Image.Image) -> np.ndarray:
        return np.asarray(seen, dtype=np.float32)

    def _segment(self, rgb_image: Image.Image) -> np.ndarray:
        """Boolean mask of the garment at working size."""
        smooth = rgb_image.filter(ImageFilter.BoxBlur(self.denoise)) if self.denoise else rgb_image
        features = colour_features(np.asarray(smooth, dtype=np.float32), self.lum_weight)
        height, width = features.shape[:2]
        strip = max(1, round(min(height, width) * self.border))
        centres = background_colours(features, strip, self.colours, self.min_share, self.centre_max,
                                      self.min_threshold)
        if centres is None:   # nothing in the border looks like background: fall back to the corners
            centres = corners(features, V2_CORNER)[::4]
        pixels = features.reshape(-1, features.shape[-1])
        squared = nearest(pixels, centres)[1]
        distance = np.sqrt(np.maximum(squared, 0)).reshape(height, width)
        threshold = max(self.min_threshold, self.otsu_scale * otsu(np.clip(distance, 0, 255).astype(np.uint8)))
        found = distance > threshold
        return fill_holes(main_object(open_mask(found), self.centre_sigma, self.bridge))


@dataclass(frozen=True)
class Resize(ImagePipeline):
    """Any image model: resize to the card's height x width, 1 or 3 channels, scaled to its value range.

    The default "stretch" is what Keras' `image_dataset_from_directory` does when training,
    so a model trained that way sees uploads as it saw its data. A light background is inverted
    only when the card says the model was trained on dark backgrounds.
    """

    name: ClassVar[str] = "resize"
    version: ClassVar[int] = 1

    height: int = 224
    width: int = 224
    channels: int = 3
    value_range: tuple[float, float] = (0.0, 255.0)
    background: str | None = None    # "dark": invert images whose corners are light
    fit: str = "stretch"             # "stretch", "pad" (letterbox on the background) or "crop" (centre)
    resample: str = "bilinear"
    corner: float = 0.06

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels!r}")
        if self.fit not in RESIZE_FITS:
            raise ValueError(f"fit must be one of {', '.join(RESIZE_FITS)}, not {self.fit!r}")
        if self.background not in (None, "dark", "light"):
            raise ValueError(f"background must be 'dark', 'light' or absent, not {self.background!r}")
        low, high = self.value_range
        if not low < high:
            raise ValueError(f"value_range must be [low, high] with low < high, not {list(self.value_range)}")

    @property
    def work_size(self) -> int | None:
        return 2 * max(self.height, self.width)

    def run(self, image: Image.Image) -> tuple[Image.Image, bool]:
        flat = flatten_alpha(image)
        flat = flat.convert("L" if self.channels == 1 else "RGB")
        inverted = False
        if self.background == "dark":
            inverted = corner_median(np.asarray(flat.convert("L")), self.corner) >= 128
            if inverted:
                flat = ImageOps.invert(flat)
        size = (self.width, self.height)
        if flat.size == size:
            return flat, inverted
        method = RESAMPLE[self.resample]
        if self.fit == "stretch":
            return flat.resize(size, method, reducing_gap=3.0), inverted
        if self.fit == "crop":
            return ImageOps.fit(flat, size, method), inverted
        fill = 0 if self.background == "dark" else (255 if self.background == "light" else 0)
        return ImageOps.pad(flat, size, method, color=fill if flat.mode == "L" else (fill,) * 3), inverted

    def to_array(self, seen: Image.Image) -> np.ndarray:
        low, high = self.value_range
        values = np.asarray(seen, dtype=np.float32)
        if (low, high) != (0.0, 255.0):
            values = values * np.float32((high - low) / 255.0) + np.float32(low)
        return values if values.ndim == 3 else values[..., np.newaxis]


RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX,
             "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST}

RESIZE_FITS = ("stretch", "pad", "crop")
# Parameters that are sizes or counts of something that must exist.
_AT_LEAST_ONE = ("height", "width", "working_size", "colours")

PIPELINES: dict[tuple[str, int], type[ImagePipeline]] = {
    (FashionMnistPhoto.name, FashionMnistPhoto.version): FashionMnistPhoto,
    (FashionMnistPhotoV2.name, FashionMnistPhotoV2.version): FashionMnistPhotoV2,
    (Resize.name, Resize.version): Resize,
}



def _already_prepared(flat: Image.Image, corner: float) -> tuple[Image.Image, bool]:
    """An image at the model's size, taken as prepared: grayscale, inverted if its corners are light."""
    gray = flat if flat.mode == "L" else flat.convert("L")
    light = corner_median(np.asarray(gray), corner) >= 128
    return (ImageOps.invert(gray) if light else gray), light


def _check_parameter(name: str, value: Any, default: Any) -> None:
    """Raise ValueError unless `value` has the kind of `default` and a usable value."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= (1 if name in _AT_LEAST_ONE else 0)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    elif isinstance(default, tuple):
        ok = (isinstance(value, tuple) and len(value) == len(default)
              and all(isinstance(v, float) and math.isfinite(v) for v in value))
    elif name == "resample":
        ok = value in RESAMPLE
    else:
        ok = default is None or isinstance(value, type(default))
    if not ok:
        raise ValueError(f"parameter {name} cannot be {value!r}")
