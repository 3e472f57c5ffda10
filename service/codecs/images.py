"""Uploaded image files to the input array of an image model, without any HTTP in sight.

Two stages. `decode_image` turns untrusted bytes into a loaded Pillow image, refusing
unsupported formats, decompression bombs and corrupt files with the server's own errors
before they can cost memory. An `ImagePipeline` then makes what the model card's `input`
asks for. Pipelines are named and versioned, and a card may record the one it was
validated with (`input.image.preprocessing = {"name", "version", "params"}`): once
published, a pipeline version must keep giving the same arrays, so a better one is added
under a new version or name instead of changing an old one.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageFile, ImageFilter, ImageOps, UnidentifiedImageError

from service.errors import InvalidInput, PayloadTooLarge, ServingError, UnsupportedMediaType

SUPPORTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")

# Signatures of formats Pillow would not be asked to open, so that the error can name what
# was sent instead of a bare "not an image". Checked only after the supported ones failed.
_OTHER_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "PDF"),
    (0, b"8BPS", "PSD"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (4, b"jP  ", "JPEG 2000"),
    (0, b"\xff\x0a", "JPEG XL"),
    (4, b"JXL ", "JPEG XL"),
    (0, b"v/1\x01", "OpenEXR"),
    (0, b"qoif", "QOI"),
    (0, b"DDS ", "DDS"),
)
_HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}

# Pillow raises these for broken data, depending on the plugin and where the data ends.
_CORRUPT_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error)


@dataclass(frozen=True)
class PreparedImage:
    """One uploaded image, ready for the model."""

    array: np.ndarray        # the model input for one instance, shaped and typed as the card says
    seen: Image.Image = field(repr=False)  # exactly what the model sees, as an 8-bit image
    width: int               # of the upload, after EXIF orientation
    height: int
    format: str              # "PNG", "JPEG", ...
    inverted: bool           # light background turned dark to match the model's training images
    preprocessing: ImagePipeline = field(repr=False)  # the pipeline that made `array`

    @property
    def pipeline(self) -> dict[str, Any]:
        """Name, version and params of the preprocessing, as a model card records them."""
        return self.preprocessing.spec()

    @property
    def preview_png(self) -> bytes:
        """What the model sees, as PNG, for people to check; encoded only when asked for."""
        buffer = io.BytesIO()
        self.seen.save(buffer, format="PNG")
        return buffer.getvalue()


@dataclass
class _Decoded:
    image: Image.Image   # loaded, EXIF-oriented, mode "L", "LA", "RGB" or "RGBA"
    format: str
    width: int           # before any draft reduction, after orientation
    height: int


def decode_image(data: bytes, max_pixels: int, *, work_size: int | None = None,
                 keep_alpha: bool = False) -> Image.Image:
    """Decode an uploaded file into a loaded image in mode "L" or "RGB" ("LA"/"RGBA" with `keep_alpha`).

    The declared size is checked before any pixel is decoded. With `work_size`, JPEGs are
    decoded at a reduced scale (DCT scaling) whose long side is still at least `work_size`.
    Transparent pixels are flattened onto white unless `keep_alpha`.
    """
    decoded = _decode(data, max_pixels, work_size)
    return decoded.image if keep_alpha else flatten_alpha(decoded.image)


def _decode(data: bytes, max_pixels: int, work_size: int | None) -> _Decoded:
    if not data:
        raise InvalidInput("the image file is empty")
    image = _open(data, max_pixels)
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(_too_large(width, height, max_pixels))
    fmt = "JPEG" if image.format == "MPO" else str(image.format)
    if work_size and fmt == "JPEG" and max(width, height) > work_size:
        scale = work_size / max(width, height)
        # draft picks the smallest DCT scale (1/2, 1/4, 1/8) still >= the requested size, so
        # a 12 MP photo is never fully decoded just to end up 28 pixels wide.
        image.draft(image.mode if image.mode in ("L", "RGB", "CMYK") else None,
                    (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        image.load()
        # After load: PNG may keep its EXIF after the pixel data.
        orientation = _orientation(image)
        if orientation in range(2, 9):
            image = ImageOps.exif_transpose(image)
            if orientation >= 5:
                width, height = height, width
        image = _normalise_mode(image)
    except Image.DecompressionBombError:
        raise PayloadTooLarge(_too_large(width, height, max_pixels)) from None
    except MemoryError:
        raise PayloadTooLarge(f"image {width}x{height} is too large to decode") from None
    except _CORRUPT_ERRORS:
        raise InvalidInput(f"{fmt} image is truncated or corrupt") from None
    return _Decoded(image, fmt, width, height)


def _open(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (process-wide, 2 x Image.MAX_IMAGE_PIXELS) stops very large images
        # before ours can; say it in our words, with whichever limit is the lower.
        if Image.MAX_IMAGE_PIXELS:
            max_pixels = min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)
        size = _declared_size(data)
        raise PayloadTooLarge(str(exc) if size is None else _too_large(*size, max_pixels)) from None
    except UnidentifiedImageError:
        pass
    except _CORRUPT_ERRORS:
        raise InvalidInput(f"{_sniff(data) or 'the'} image is truncated or corrupt") from None
    name = _sniff(data)
    if name in SUPPORTED_FORMATS:
        raise InvalidInput(f"{name} image is truncated or corrupt")
    if name is not None:
        raise UnsupportedMediaType(f"unsupported image format {name}; send {_supported_list()}")
    raise UnsupportedMediaType(f"not an image (no {_supported_list()} signature in the first bytes)")


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """The size in the header, read without Pillow's bomb check (which is what stopped us)."""
    for fmt in SUPPORTED_FORMATS:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if factory is None or (accept is not None and not accept(data[:16])):
            continue
        try:
            return factory(io.BytesIO(data), "").size
        except Exception:  # only for the wording of an error already being raised
            return None
    return None


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"


def _supported_list() -> str:
    return ", ".join(SUPPORTED_FORMATS[:-1]) + " or " + SUPPORTED_FORMATS[-1]


def _sniff(data: bytes) -> str | None:
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(head[8:12], "ISO media (" + head[8:12].decode("latin-1").strip() + ")")
    for offset, magic, name in _OTHER_SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "SVG"
    return None


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not lose an otherwise good image
        return 1


def _normalise_mode(image: Image.Image) -> Image.Image:
    """To "L", "LA", "RGB" or "RGBA", 8 bits per channel; high bit depths are scaled, not clipped."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I"):
        # 16-bit PNG/TIFF come as "I;16*" or "I": full 0..65535 range, which convert("L") would clip.
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        # Float TIFFs usually hold 0..1; anything else is taken as 0..255 already.
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode in ("La",):
        return image.convert("LA")
    if mode in ("RGBa",):
        return image.convert("RGBA")
    return image.convert("RGB")   # CMYK, YCbCr, LAB, HSV, RGBX


def flatten_alpha(image: Image.Image, background: int = 255) -> Image.Image:
    """Composite "LA"/"RGBA" onto a flat grey level (white by default), as product shots are."""
    if image.mode not in ("LA", "RGBA"):
        return image
    base = image.mode[:-1]
    flat = Image.new(base, image.size, (background,) * len(base) if base == "RGB" else background)
    flat.paste(image.convert(base), mask=image.getchannel("A"))
    return flat


# --------------------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class ImagePipeline(ABC):
    """A named, versioned, parameterised way from a decoded image to a model input."""

    name: ClassVar[str]
    version: ClassVar[int]

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
        alpha = _transparency_mask(image, self.corner)
        flat = flatten_alpha(image)
        if flat.size == (self.width, self.height):
            return _already_prepared(flat, self.corner)

        if max(flat.size) > self.working_size:
            flat, alpha = _shrink(flat, alpha, self.working_size)
        rgb = np.asarray(flat.convert("RGB"), dtype=np.int16)
        lum = np.asarray(flat.convert("L"))
        background = _corner_gradient(rgb, self.corner, self.corner_outlier).astype(np.int16)
        background_lum = _corner_gradient(lum[..., np.newaxis], self.corner, self.corner_outlier)[..., 0]

        if alpha is not None:
            item = alpha    # a cut-out says exactly where the item is
        else:
            diff = np.abs(rgb - background).astype(np.uint8)
            distance = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])
            threshold = max(self.min_threshold, self.otsu_scale * _otsu(distance))
            item = _open_mask(distance > threshold)
        if np.count_nonzero(item) < self.min_item * item.size:
            item = np.ones_like(item)
        box = _trimmed_box(item, self.trim)

        inverted = _corner_median(lum, self.corner) > _quantile_u8(lum[item], 0.5)
        values = lum.astype(np.float32)
        floor = background_lum
        if inverted:
            values, floor = 255.0 - values, 255.0 - floor
        contrast = np.clip(values - floor, 0, 255)
        top = _quantile_u8(contrast[item].astype(np.uint8), self.highlight / 100)
        levels = contrast * (255.0 / max(top, self.min_contrast))
        if self.clear_background:
            levels *= _filled(item, box)
        seen = Image.fromarray(np.rint(np.minimum(levels, 255)).astype(np.uint8), "L")
        seen = _fit(seen, box, (self.width, self.height), _RESAMPLE[self.resample])
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
    top: float = 220.0               # level of the garment's highlights (see README, "Real photos")
    fill: float = 1.0                # long side of the garment's box, as a share of the frame
    resample: str = "lanczos"

    @property
    def work_size(self) -> int | None:
        return self.working_size

    def run(self, image: Image.Image) -> tuple[Image.Image, bool]:
        alpha = _transparency_mask(image, V2_CORNER)
        flat = flatten_alpha(image)
        if flat.size == (self.width, self.height):
            return _already_prepared(flat, V2_CORNER)

        if max(flat.size) > self.working_size:
            flat, alpha = _shrink(flat, alpha, self.working_size)
        rgb_image = flat.convert("RGB")
        lum = np.asarray(rgb_image.convert("L"))
        item = alpha if alpha is not None else self._segment(rgb_image)
        if np.count_nonzero(item) < self.min_item * item.size:
            item = np.ones_like(item)
        box = _trimmed_box(item, self.trim)

        around = ~_dilate(_dilate(item))
        garment = lum[item]
        background = _quantile_u8(lum[around] if around.any() else _corners(lum, V2_CORNER), 0.5)
        inverted = background > _quantile_u8(garment, 0.5)
        values = 255.0 - lum.astype(np.float32) if inverted else lum.astype(np.float32)
        base = 255.0 - background if inverted else background
        high = _quantile_u8(255 - garment if inverted else garment, self.highlight / 100)
        levels = np.clip((values - base) / max(high - base, self.min_contrast), 0.0, 1.0) * (self.top * item)
        seen = Image.fromarray(np.rint(levels).astype(np.uint8), "L")
        seen = _fit(seen, box, (self.width, self.height), _RESAMPLE[self.resample], self.fill)
        return seen, bool(inverted)

    def to_array(self, seen: Image.Image) -> np.ndarray:
        return np.asarray(seen, dtype=np.float32)

    def _segment(self, rgb_image: Image.Image) -> np.ndarray:
        """Boolean mask of the garment at working size."""
        smooth = rgb_image.filter(ImageFilter.BoxBlur(self.denoise)) if self.denoise else rgb_image
        features = _colour_features(np.asarray(smooth, dtype=np.float32), self.lum_weight)
        height, width = features.shape[:2]
        strip = max(1, round(min(height, width) * self.border))
        centres = _background_colours(features, strip, self.colours, self.min_share, self.centre_max,
                                      self.min_threshold)
        if centres is None:   # nothing in the border looks like background: fall back to the corners
            centres = _corners(features, V2_CORNER)[::4]
        pixels = features.reshape(-1, features.shape[-1])
        squared = _nearest(pixels, centres)[1]
        distance = np.sqrt(np.maximum(squared, 0)).reshape(height, width)
        threshold = max(self.min_threshold, self.otsu_scale * _otsu(np.clip(distance, 0, 255).astype(np.uint8)))
        found = distance > threshold
        return _fill_holes(_main_object(_open_mask(found), self.centre_sigma, self.bridge))


def _colour_features(rgb: np.ndarray, lum_weight: float) -> np.ndarray:
    """(H, W, 4): brightness (weighted) and chroma relative to brightness, in level units.

    Shading scales a surface's colour, so its chroma divided by its brightness barely moves;
    the floor of 32 keeps the noise of near-black pixels from being magnified.
    """
    brightness = rgb.sum(axis=-1, keepdims=True) * np.float32(1 / 3)
    chroma = (rgb - brightness) * (np.float32(128.0) / np.maximum(brightness, np.float32(32.0)))
    return np.concatenate([brightness * np.float32(math.sqrt(3.0 * lum_weight)), chroma], axis=-1)


def _background_colours(features: np.ndarray, strip: int, count: int, min_share: float, centre_max: float,
                        tolerance: float) -> np.ndarray | None:
    """The border's background colours (k, C), or None; see FashionMnistPhotoV2."""
    sides = (features[:strip], features[-strip:], features[strip:-strip, :strip], features[strip:-strip, -strip:])
    pixels = np.concatenate([side.reshape(-1, features.shape[-1]) for side in sides])[::3]
    centres = [np.median(pixels, axis=0)]
    nearest = np.square(pixels - centres[0]).sum(axis=1)
    for _ in range(count - 1):
        farthest = int(np.argmax(nearest))
        if nearest[farthest] < tolerance**2:   # the rest is one colour already
            break
        centres.append(pixels[farthest])
        np.minimum(nearest, np.square(pixels - centres[-1]).sum(axis=1), out=nearest)
    means = np.array(centres, dtype=np.float32)
    for _ in range(4):
        assigned = _nearest(pixels, means)[0]
        sizes = np.bincount(assigned, minlength=len(means))
        used = sizes > 0
        for channel in range(means.shape[1]):
            sums = np.bincount(assigned, weights=pixels[:, channel], minlength=len(means))
            means[used, channel] = sums[used] / sizes[used]
    assigned = _nearest(pixels, means)[0]
    border_share = np.bincount(assigned, minlength=len(means)) / len(pixels)
    height, width = features.shape[:2]
    middle = features[int(height * 0.3):int(height * 0.7) + 1, int(width * 0.3):int(width * 0.7) + 1]
    middle = middle.reshape(-1, features.shape[-1])[::2]
    index, squared = _nearest(middle, means)
    close = squared <= tolerance**2
    centre_share = np.bincount(index[close], minlength=len(means)) / max(len(middle), 1)
    keep = (border_share >= min_share) & (centre_share <= centre_max)
    return means[keep] if keep.any() else None


def _nearest(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre of each point, and the squared distance to it."""
    squared = np.einsum("pc,pc->p", points, points)[:, np.newaxis] - 2 * points @ centres.T
    squared += np.einsum("kc,kc->k", centres, centres)
    index = squared.argmin(axis=1)
    return index, squared[np.arange(len(points)), index]


def _main_object(mask: np.ndarray, sigma: float, bridge: int) -> np.ndarray:
    """The connected component with the best area x centrality, with what lies within `bridge` pixels of it."""
    joined = mask
    for _ in range(bridge):
        joined = _dilate(joined)
    labels, count = _components(joined)
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
        closed = _erode(closed)
    return closed | (chosen & mask)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every region of the rest that does not reach the image's edge added."""
    labels, count = _components(~mask)
    if count == 0:
        return mask
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.zeros(count + 1, dtype=bool)
    outside[edge + 1] = True
    outside[0] = False              # label -1: the mask itself
    return ~outside[labels + 1]


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components: labels (-1 outside the mask, else 0..count-1) and their count.

    From row runs: runs of neighbouring rows that overlap are joined by label propagation
    with pointer jumping over the (few hundred) runs, all in numpy.
    """
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    change = np.diff(padded, axis=1)
    run_rows, run_starts = np.nonzero(change == 1)
    _, run_ends = np.nonzero(change == -1)          # exclusive; same order as the starts
    labels = np.full(height * width, -1, dtype=np.int64)
    runs = len(run_rows)
    if runs == 0:
        return labels.reshape(height, width), 0
    stride = width + 1
    start_keys = run_rows * stride + run_starts
    end_keys = run_rows * stride + run_ends
    # Runs of the row above that overlap run j: they end after j starts and start before j ends.
    above = (run_rows - 1) * stride
    first = np.searchsorted(end_keys, above + run_starts, side="right")
    last = np.searchsorted(start_keys, above + run_ends, side="left")
    links = np.where(run_rows > 0, np.maximum(last - first, 0), 0)
    parent = np.arange(runs)
    if links.any():
        a = np.repeat(np.arange(runs), links)
        b = np.repeat(first, links) + np.arange(links.sum()) - np.repeat(np.cumsum(links) - links, links)
        while True:
            root_a, root_b = parent[a], parent[b]
            differ = root_a != root_b
            if not differ.any():
                break
            root_a, root_b = root_a[differ], root_b[differ]
            low = np.minimum(root_a, root_b)
            np.minimum.at(parent, root_a, low)     # hook the larger root under the smaller
            np.minimum.at(parent, root_b, low)
            while True:                            # and point every run at its root
                jumped = parent[parent]
                if np.array_equal(jumped, parent):
                    break
                parent = jumped
    roots, run_labels = np.unique(parent, return_inverse=True)
    lengths = run_ends - run_starts
    offsets = run_rows * width + run_starts - (np.cumsum(lengths) - lengths)
    labels[np.repeat(offsets, lengths) + np.arange(lengths.sum())] = np.repeat(run_labels, lengths)
    return labels.reshape(height, width), len(roots)


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

    @property
    def work_size(self) -> int | None:
        return 2 * max(self.height, self.width)

    def run(self, image: Image.Image) -> tuple[Image.Image, bool]:
        flat = flatten_alpha(image)
        flat = flat.convert("L" if self.channels == 1 else "RGB")
        inverted = False
        if self.background == "dark":
            inverted = _corner_median(np.asarray(flat.convert("L")), self.corner) >= 128
            if inverted:
                flat = ImageOps.invert(flat)
        size = (self.width, self.height)
        if flat.size == size:
            return flat, inverted
        method = _RESAMPLE[self.resample]
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


_RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX,
             "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST}

_NUMERIC_DTYPES = ("float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64")

PIPELINES: dict[tuple[str, int], type[ImagePipeline]] = {
    (FashionMnistPhoto.name, FashionMnistPhoto.version): FashionMnistPhoto,
    (FashionMnistPhotoV2.name, FashionMnistPhotoV2.version): FashionMnistPhotoV2,
    (Resize.name, Resize.version): Resize,
}


def pipeline_for(card_input: Mapping[str, Any]) -> ImagePipeline:
    """The pipeline a card's `input` asks for, with the parameters it recorded over the card's shape.

    Without `input.image.preprocessing`: `fashion_mnist_photo` for grayscale models trained on
    dark backgrounds, `resize` for any other image model. Without a recorded version: version 1,
    which is what every card that records none was validated with (a later version must never
    change the answers of a model published before it).
    """
    height, width, channels = _image_shape(card_input)
    image = card_input.get("image") or {}
    background = image.get("background")
    chosen = image.get("preprocessing") or {}
    name = chosen.get("name") or (FashionMnistPhoto.name if background == "dark" and channels == 1
                                  else Resize.name)
    versions = sorted(version for known, version in PIPELINES if known == name)
    if not versions:
        known = ", ".join(sorted({known for known, _ in PIPELINES}))
        raise ServingError(f"the model card asks for image preprocessing {name!r}; this server knows {known}")
    version = int(chosen.get("version") or versions[0])
    if (name, version) not in PIPELINES:
        raise ServingError(f"the model card asks for image preprocessing {name!r} version {version}; "
                           f"this server has versions {versions}")
    cls = PIPELINES[(name, version)]
    params: dict[str, Any] = {"height": height, "width": width}
    if cls is Resize:
        value_range = image.get("value_range") or (0, 255)
        params.update(channels=channels, background=background,
                      value_range=(float(value_range[0]), float(value_range[1])))
    recorded = dict(chosen.get("params") or {})
    if "value_range" in recorded:
        recorded["value_range"] = tuple(float(v) for v in recorded["value_range"])
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(recorded) - allowed)
    if unknown:
        raise ServingError(f"image preprocessing {name!r} version {version} has no parameters {unknown}")
    params.update(recorded)
    return cls(**params)


def _image_shape(card_input: Mapping[str, Any]) -> tuple[int, int, int]:
    image = card_input.get("image") or {}
    shape = [s for s in card_input.get("shape") or [] if s is not None]
    height = image.get("height") or (shape[0] if len(shape) >= 2 else None)
    width = image.get("width") or (shape[1] if len(shape) >= 2 else None)
    channels = image.get("channels") or (shape[2] if len(shape) >= 3 else 1)
    if not height or not width or channels not in (1, 3):
        raise ServingError(f"the model card's input does not describe an image (shape {card_input.get('shape')})")
    return int(height), int(width), int(channels)


# Pipelines by card: a served card never changes, and building one from it costs about 12 us,
# half of what decoding a 28x28 PNG does. Keyed by identity (the card is kept, so its id is not
# reused); bounded for reloads.
_PIPELINES_BY_CARD: dict[int, tuple[Mapping[str, Any], ImagePipeline]] = {}
_PIPELINES_KEPT = 64


def _card_pipeline(card_input: Mapping[str, Any]) -> ImagePipeline:
    entry = _PIPELINES_BY_CARD.get(id(card_input))
    if entry is None or entry[0] is not card_input:
        if len(_PIPELINES_BY_CARD) >= _PIPELINES_KEPT:
            _PIPELINES_BY_CARD.clear()
        entry = _PIPELINES_BY_CARD[id(card_input)] = (card_input, pipeline_for(card_input))
    return entry[1]


def prepare_image(data: bytes, card_input: Mapping[str, Any], max_pixels: int) -> PreparedImage:
    """Bytes of an uploaded image file to the input array the model card describes."""
    pipeline = _card_pipeline(card_input)
    decoded = _decode(data, max_pixels, pipeline.work_size)
    seen, inverted = pipeline.run(decoded.image)
    array = pipeline.to_array(seen)
    shape = card_input.get("shape")
    if shape and None not in shape and math.prod(shape) == array.size:
        array = array.reshape(shape)
    dtype = card_input.get("dtype") or "float32"
    if dtype in _NUMERIC_DTYPES:
        array = array.astype(dtype, copy=False)
    return PreparedImage(array=array, seen=seen, width=decoded.width,
                         height=decoded.height, format=decoded.format, inverted=inverted,
                         preprocessing=pipeline)


# --------------------------------------------------------------------------- helpers


def _already_prepared(flat: Image.Image, corner: float) -> tuple[Image.Image, bool]:
    """An image at the model's size, taken as prepared: grayscale, inverted if its corners are light."""
    gray = flat if flat.mode == "L" else flat.convert("L")
    light = _corner_median(np.asarray(gray), corner) >= 128
    return (ImageOps.invert(gray) if light else gray), light


def _transparency_mask(image: Image.Image, corner: float) -> np.ndarray | None:
    """Opaque pixels, when alpha cuts an item out of a transparent background; None otherwise.

    Only a background that is transparent at the corners counts: a photo with a faded edge
    or a transparent watermark is still analysed by its colours.
    """
    if image.mode not in ("LA", "RGBA"):
        return None
    alpha = np.asarray(image.getchannel("A"))
    opaque = alpha >= 128
    if not opaque.any() or _corner_median(alpha, corner) >= 128:
        return None
    return opaque


def _shrink(image: Image.Image, alpha: np.ndarray | None, long_side: int) -> tuple[Image.Image, np.ndarray | None]:
    scale = long_side / max(image.size)
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    small = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    if alpha is not None:
        mask = Image.fromarray(alpha.astype(np.uint8) * 255, "L").resize(size, Image.Resampling.BOX)
        alpha = np.asarray(mask) >= 128
    return small, alpha


def _corners(values: np.ndarray, fraction: float) -> np.ndarray:
    height, width = values.shape[:2]
    ph, pw = max(1, round(height * fraction)), max(1, round(width * fraction))
    patches = (values[:ph, :pw], values[:ph, -pw:], values[-ph:, :pw], values[-ph:, -pw:])
    return np.concatenate([p.reshape(-1, *values.shape[2:]) for p in patches])


def _corner_median(values: np.ndarray, fraction: float) -> float:
    return _quantile_u8(_corners(values, fraction), 0.5)


def _otsu(values: np.ndarray) -> float:
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


def _corner_gradient(values: np.ndarray, fraction: float, outlier: float) -> np.ndarray:
    """Background (H, W, C) blended bilinearly from the four corners' medians; an odd corner out takes the median."""
    height, width, channels = values.shape
    ph, pw = max(1, round(height * fraction)), max(1, round(width * fraction))
    patches = (values[:ph, :pw], values[:ph, -pw:], values[-ph:, :pw], values[-ph:, -pw:])
    corners = np.array([[_quantile_u8(p[..., c], 0.5) for c in range(channels)] for p in patches], dtype=np.float32)
    middle = np.median(corners, axis=0)
    odd = np.abs(corners - middle).max(axis=1) > outlier
    corners[odd] = middle
    u = np.linspace(0, 1, width, dtype=np.float32)[:, np.newaxis]
    v = np.linspace(0, 1, height, dtype=np.float32)[:, np.newaxis, np.newaxis]
    top = corners[0] + (corners[1] - corners[0]) * u            # (W, C): cheap rows first,
    bottom = corners[2] + (corners[3] - corners[2]) * u
    return top + v * (bottom - top)                              # then one pass over the image


def _filled(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The mask with holes filled: inside its extent both along its row and along its column, within box."""
    rows = _span_fill(mask)
    cols = _span_fill(mask.T).T
    filled = rows & cols
    left, top, right, bottom = box
    inside = np.zeros_like(mask)
    inside[top:bottom, left:right] = True
    return filled & inside


def _span_fill(mask: np.ndarray) -> np.ndarray:
    width = mask.shape[1]
    first = np.argmax(mask, axis=1)
    last = width - 1 - np.argmax(mask[:, ::-1], axis=1)
    index = np.arange(width)
    return (index >= first[:, np.newaxis]) & (index <= last[:, np.newaxis]) & mask.any(axis=1)[:, np.newaxis]


def _open_mask(mask: np.ndarray) -> np.ndarray:
    """Morphological opening (3x3): drops specks and threads thinner than 3 px at working size."""
    opened = _dilate(_erode(mask))
    return opened if opened.any() else mask


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="edge")
    rows = padded[:, :-2] & padded[:, 1:-1] & padded[:, 2:]
    return rows[:-2] & rows[1:-1] & rows[2:]


def _dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="edge")
    rows = padded[:, :-2] | padded[:, 1:-1] | padded[:, 2:]
    return rows[:-2] | rows[1:-1] | rows[2:]


_SORT_AT_MOST = 256


def _quantile_u8(values: np.ndarray, q: float) -> float:
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


def _trimmed_box(mask: np.ndarray, trim: float) -> tuple[int, int, int, int]:
    """Bounding box (left, top, right, bottom) of the mask, ignoring `trim` of its pixels at each side."""

    def span(counts: np.ndarray) -> tuple[int, int]:
        cumulative = np.cumsum(counts)
        total = cumulative[-1]
        start = int(np.searchsorted(cumulative, total * trim, side="right"))
        stop = int(np.searchsorted(cumulative, total * (1 - trim), side="left")) + 1
        return start, max(stop, start + 1)

    left, right = span(np.count_nonzero(mask, axis=0))
    top, bottom = span(np.count_nonzero(mask, axis=1))
    return left, top, right, bottom


def _fit(image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int],
         method: Image.Resampling, fill: float = 1.0) -> Image.Image:
    """Scale the box so it fills `fill` of the frame in its long direction, centred on black."""
    left, top, right, bottom = box
    box_w, box_h = right - left, bottom - top
    scale = fill * min(size[0] / box_w, size[1] / box_h)
    new_w = min(size[0], max(1, round(box_w * scale)))
    new_h = min(size[1], max(1, round(box_h * scale)))
    scaled = image.resize((new_w, new_h), method, box=box, reducing_gap=3.0)
    frame = Image.new("L", size, 0)
    frame.paste(scaled, ((size[0] - new_w) // 2, (size[1] - new_h) // 2))
    return frame
