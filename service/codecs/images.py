"""Uploaded image files to the input array of an image model, without any HTTP in sight.

Two stages. Decoding turns untrusted bytes into a loaded Pillow image, refusing unsupported
formats, decompression bombs and corrupt files with the server's own errors before they can
cost memory. The pipeline the model card names (`preprocessing`, built when the card was
read) then makes what the model takes.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from preprocessing.card import CardPipeline
from preprocessing.pipelines import ImagePipeline
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


def prepare_image(data: bytes, pipeline: CardPipeline, max_pixels: int, where: str) -> PreparedImage:
    """Bytes of an uploaded image file to the input array the card's pipeline makes.

    `where` names the upload in every error ("input 'x', instance 2", "file 'shirt.jpg'"), so
    that a client sending several images knows which one was refused.
    """
    try:
        decoded = _decode(data, max_pixels, pipeline.pipeline.work_size)
    except ServingError as exc:
        raise type(exc)(f"{where}: {exc.message}") from None
    seen, inverted = pipeline.pipeline.run(decoded.image)
    return PreparedImage(array=pipeline.to_array(seen), seen=seen, width=decoded.width,
                         height=decoded.height, format=decoded.format, inverted=inverted,
                         preprocessing=pipeline.pipeline)
