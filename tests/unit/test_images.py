"""The image upload path: untrusted bytes in, the model's input array out (service.codecs.images)."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image, ImageDraw, features

from preprocessing.card import CardPipeline, PipelineError, pipeline_for
from preprocessing.pipelines import FashionMnistPhoto, ImagePipeline, Resize
from preprocessing.pixels import quantile_u8
from service.codecs.images import PreparedImage, prepare_image
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

ROOT = Path(__file__).resolve().parents[2]
CARD_INPUT = json.loads((ROOT / "models/fashion_mnist/1/assets.extra/model_card.json").read_text())["input"]
LIMIT = 40_000_000
WHERE = "file 'upload.png'"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def prepare(data: bytes, card_input: dict | None = None, max_pixels: int = LIMIT) -> PreparedImage:
    return prepare_image(data, pipeline_for(CARD_INPUT if card_input is None else card_input), max_pixels, WHERE)


@dataclass(frozen=True)
class Decoded(ImagePipeline):
    """Hands the decoded image to the test as the model input: what decoding gave, seen through prepare_image."""

    name: ClassVar[str] = "decoded"
    version: ClassVar[int] = 1
    reduce_to: int = 0

    @property
    def work_size(self) -> int | None:
        return self.reduce_to or None

    def run(self, image: Image.Image) -> tuple[Image.Image, bool]:
        return image, False

    def to_array(self, seen: Image.Image) -> np.ndarray:
        return np.asarray(seen)


def decoded(data: bytes, reduce_to: int = 0) -> Image.Image:
    """The image as the decoder hands it to a pipeline."""
    return prepare_image(data, CardPipeline(Decoded(reduce_to), None, None), LIMIT, WHERE).seen


def product_shot(size=(400, 300), box=(60, 40, 180, 240), garment=60, background=255, mode="RGB") -> Image.Image:
    """A dark garment-like shape (body and two short sleeves) on a light background, off-centre."""
    fill = garment if mode == "L" else (garment, garment + 10, garment + 30)
    image = Image.new(mode, size, background if mode == "L" else (background,) * 3)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    width = right - left
    draw.rectangle((left + width // 4, top, right - width // 4, bottom), fill=fill)
    draw.rectangle((left, top, right, top + (bottom - top) // 4), fill=fill)
    return image


def lit_box(array: np.ndarray, level: float = 40) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pixels above `level`, right/bottom exclusive."""
    rows = np.flatnonzero((array > level).any(axis=1))
    cols = np.flatnonzero((array > level).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: ~50 KB that would decode to 400 MB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    rows = bytes(1 + width // 8) * 200          # filter byte + packed bits, 200 rows at a time
    idat = b"".join(compressor.compress(rows) for _ in range(height // 200)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ----------------------------------------------------------------- Fashion-MNIST images stay exact


def test_every_fashion_mnist_test_image_passes_through_unchanged(fashion_test_slice):
    images, _ = fashion_test_slice
    assert len(images) == 500
    for index, pixels in enumerate(images):
        prepared = prepare(encode(Image.fromarray(pixels, "L"), "PNG"))
        assert prepared.array.dtype == np.float32 and prepared.array.shape == (28, 28)
        assert not prepared.inverted, index
        assert np.array_equal(prepared.array, pixels.astype(np.float32)), f"test image {index} changed"


def test_fashion_mnist_image_as_rgb_png_and_preview_are_exact(fashion_test_slice):
    images, _ = fashion_test_slice
    for pixels in images[:20]:
        prepared = prepare(encode(Image.fromarray(pixels, "L").convert("RGB"), "PNG"))
        assert np.array_equal(prepared.array, pixels.astype(np.float32))
        preview = Image.open(io.BytesIO(prepared.preview_png))
        assert preview.format == "PNG" and preview.size == (28, 28)
        assert np.array_equal(np.asarray(preview.convert("L")), pixels)


def test_light_background_28x28_is_only_inverted(fashion_test_slice):
    images, _ = fashion_test_slice
    pixels = images[0]
    prepared = prepare(encode(Image.fromarray(255 - pixels, "L"), "PNG"))
    assert prepared.inverted
    assert np.array_equal(prepared.array, pixels.astype(np.float32))


def test_upscaled_product_style_fashion_mnist_images_come_back_close(fashion_test_slice):
    """Inverted (dark on white) and 4x larger, as a product photo: the photo path recovers the item."""
    images, _ = fashion_test_slice
    errors = []
    for pixels in images[:50]:
        photo = Image.fromarray(255 - pixels, "L").resize((112, 112), Image.Resampling.BICUBIC)
        prepared = prepare(encode(photo, "JPEG", quality=90))
        assert prepared.inverted
        errors.append(np.abs(prepared.array - pixels).mean())
    assert np.mean(errors) < 25, np.mean(errors)


# ----------------------------------------------------------------- formats and modes


def _formats() -> list[tuple[str, Image.Image, str, dict]]:
    rgb = product_shot(size=(90, 70), box=(20, 10, 60, 60))
    gray = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    ImageDraw.Draw(alpha).rectangle((0, 0, 10, 10), fill=0)
    rgba.putalpha(alpha)
    return [
        ("PNG", rgb, "PNG", {}),
        ("JPEG", rgb, "JPEG", {"quality": 85}),
        ("GIF", rgb.convert("P"), "GIF", {}),
        ("BMP", rgb, "BMP", {}),
        ("WEBP", rgb, "WEBP", {"quality": 90}),
        ("TIFF", rgb, "TIFF", {}),
        ("TIFF grayscale LZW", gray, "TIFF", {"compression": "tiff_lzw"}),
        ("PNG RGBA", rgba, "PNG", {}),
        ("PNG palette", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "PNG", {}),
        ("PNG 1-bit", gray.point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG", {}),
        ("PNG 16-bit", Image.fromarray(np.asarray(gray).astype(np.uint16) * 257), "PNG", {}),
        ("JPEG CMYK", rgb.convert("CMYK"), "JPEG", {"quality": 90}),
        ("JPEG grayscale", gray, "JPEG", {}),
    ]


@pytest.mark.parametrize(("label", "image", "fmt", "options"), _formats(), ids=[f[0] for f in _formats()])
def test_each_supported_format_decodes_and_is_prepared(label, image, fmt, options):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    prepared = prepare(encode(image, fmt, **options))
    assert prepared.format == fmt
    assert (prepared.width, prepared.height) == image.size
    assert prepared.array.shape == (28, 28) and prepared.array.dtype == np.float32
    # Dark garment on white in every format: inverted, item light, corners black.
    assert prepared.inverted, label
    array = prepared.array
    assert array[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0, label
    assert array[14, 14] > 150, label


def test_sixteen_bit_values_are_scaled_not_clipped():
    ramp = (np.arange(64, dtype=np.uint32) * 1040).astype(np.uint16).reshape(8, 8)   # 0..65520
    image = decoded(encode(Image.fromarray(ramp), "PNG"))
    assert image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), np.rint(ramp / 257).astype(np.uint8))


def test_gif_uses_the_first_frame():
    first = product_shot(size=(60, 60), box=(15, 10, 45, 50)).convert("P")
    blank = Image.new("RGB", (60, 60), "white").convert("P")
    data = encode(first, "GIF", save_all=True, append_images=[blank], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    prepared = prepare(data)
    assert prepared.inverted and prepared.array.max() > 200


def test_transparent_png_garment_is_flattened_and_cut_out_by_its_alpha():
    image = Image.new("RGBA", (200, 160), (0, 0, 0, 0))     # transparent black around the item
    ImageDraw.Draw(image).rectangle((70, 20, 129, 139), fill=(40, 40, 200, 255))
    prepared = prepare(encode(image, "PNG"))
    assert prepared.inverted                                 # on white, like a product shot
    left, top, right, bottom = lit_box(prepared.array)
    assert (top, bottom) == (0, 28)
    assert abs((right - left) - 14) <= 1                     # 60 x 120 item: half as wide as tall
    assert abs(left - (28 - right)) <= 1


def test_exif_orientation_is_applied():
    stored = Image.new("RGB", (80, 40), "white")
    ImageDraw.Draw(stored).rectangle((0, 0, 19, 39), fill="black")      # dark band on the stored left
    exif = Image.Exif()
    exif[0x0112] = 6                                                     # display rotated 90° clockwise
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)

    image = decoded(data)
    assert image.size == (40, 80)
    pixels = np.asarray(image.convert("L"))
    assert pixels[:15].mean() < 40 and pixels[25:].mean() > 215          # the band is now on top

    prepared = prepare(data)
    assert (prepared.width, prepared.height) == (40, 80)


# ----------------------------------------------------------------- photo pipeline


def test_light_background_product_photo_is_inverted_cropped_and_centred():
    garment = (60, 40, 180, 240)                                         # 120 x 200, off-centre
    prepared = prepare(encode(product_shot(box=garment), "PNG"))
    array = prepared.array
    assert prepared.inverted and (prepared.width, prepared.height) == (400, 300)
    assert array.shape == (28, 28) and array.dtype == np.float32
    left, top, right, bottom = lit_box(array)
    assert (top, bottom) == (0, 28)                                      # the long side fills the frame
    assert abs((right - left) - 28 * 121 / 201) <= 1                     # aspect kept
    assert abs(left - (28 - right)) <= 1                                 # centred
    assert array[:, :left].max() == 0 and array[:, right:].max() == 0    # clean black background
    assert array[3, 14] > 230 and array[20, 14] > 230                    # garment bright


def test_noisy_jpeg_photo_on_a_textured_floor_is_still_cropped_to_the_garment():
    rng = np.random.default_rng(7)
    floor = np.clip(rng.normal(200, 12, (480, 640, 3)), 0, 255).astype(np.uint8)
    floor[::40] = 170                                                    # tile joints
    photo = Image.fromarray(floor, "RGB")
    shirt = product_shot(size=(640, 480), box=(250, 100, 430, 400), garment=50)
    photo.paste(shirt.crop((250, 100, 431, 401)), (250, 100))
    prepared = prepare(encode(photo, "JPEG", quality=80))
    left, top, right, bottom = lit_box(prepared.array, level=60)
    assert prepared.inverted
    assert top <= 1 and bottom >= 27
    assert abs((right - left) - 28 * 181 / 301) <= 2
    assert abs(left - (28 - right)) <= 2


def test_light_garment_on_dark_background_is_not_inverted():
    image = product_shot(size=(300, 300), box=(100, 50, 200, 250), garment=210, background=20)
    prepared = prepare(encode(image, "PNG"))
    assert not prepared.inverted
    assert prepared.array[14, 14] > 200 and prepared.array[0, 0] == 0


def test_large_jpeg_is_decoded_at_reduced_size():
    photo = product_shot(size=(4000, 3000), box=(1000, 500, 2600, 2800))
    data = encode(photo, "JPEG", quality=85)
    assert decoded(data, reduce_to=160).size == (500, 375)               # DCT scaling 1/8
    assert decoded(data).size == (4000, 3000)
    prepared = prepare(data)
    assert (prepared.width, prepared.height) == (4000, 3000) and prepared.inverted


@pytest.mark.parametrize("size", [(1, 1), (1, 50), (3, 200), (29, 29), (27, 28)])
def test_tiny_and_thin_images_work(size):
    image = Image.new("L", size, 255)
    image.putpixel((0, 0), 0)
    prepared = prepare(encode(image, "PNG"))
    assert prepared.array.shape == (28, 28)
    assert np.isfinite(prepared.array).all()
    assert prepared.array.min() >= 0 and prepared.array.max() <= 255


def test_uniform_image_gives_a_black_frame():
    prepared = prepare(encode(Image.new("RGB", (120, 90), (200, 180, 160)), "PNG"))
    assert prepared.array.max() == 0


# ----------------------------------------------------------------- refusals


def test_decompression_bomb_is_refused_before_decoding():
    bomb = png_bomb()
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge) as caught:
        prepare(bomb)
    assert caught.value.message == f"{WHERE}: image is 20000x20000 = 400,000,000 pixels; the limit is 40,000,000"
    # Above Pillow's own guard the refusal still comes as our error, not Pillow's exception.
    with pytest.raises(PayloadTooLarge, match="20000x20000"):
        prepare(bomb, max_pixels=10**10)


def test_our_pixel_limit_applies_below_pillows():
    data = encode(Image.new("L", (300, 200), 255), "PNG")
    with pytest.raises(PayloadTooLarge, match=f"^{WHERE}: image is 300x200 = 60,000 pixels; the limit is 59,999$"):
        prepare(data, max_pixels=59_999)
    assert prepare(data, max_pixels=60_000).array.shape == (28, 28)


def test_decompression_bomb_costs_no_memory(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb())
    script = f"""
import resource, sys
from pathlib import Path
from preprocessing.card import pipeline_for
from service.codecs.images import prepare_image
from service.errors import PayloadTooLarge
card = pipeline_for({CARD_INPUT!r})
data = Path({str(path)!r}).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for limit in (40_000_000, 10**10):
    try:
        prepare_image(data, card, limit, 'bomb.png')
        sys.exit("not refused")
    except PayloadTooLarge:
        pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grown_kb = int(done.stdout.strip())
    assert grown_kb < 50 * 1024, f"max RSS grew by {grown_kb} KB"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"])
@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_files_are_invalid_input(fmt, keep):
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)), fmt)
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        prepare(data[: int(len(data) * keep)])


def test_png_cut_inside_its_header_is_invalid_input():
    data = encode(Image.new("L", (50, 50), 0), "PNG")
    for cut in (8, 12, 20, 30):
        with pytest.raises(InvalidInput, match=f"^{WHERE}: PNG image is truncated or corrupt$"):
            prepare(data[:cut])


def test_corrupt_png_data_is_invalid_input():
    data = bytearray(encode(Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)),
                            "PNG"))
    data[60:80] = b"\x00" * 20                                           # inside the compressed pixels
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        prepare(bytes(data))


def test_empty_bytes_are_invalid_input():
    with pytest.raises(InvalidInput, match=f"^{WHERE}: the image file is empty$"):
        prepare(b"")


@pytest.mark.parametrize("data", [
    np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    b"just some text, not a picture\n" * 20,
    b'{"instances": [[0, 1, 2]]}',
], ids=["random bytes", "text", "json"])
def test_non_images_are_refused_as_not_an_image(data):
    with pytest.raises(UnsupportedMediaType, match=f"^{WHERE}: not an image"):
        prepare(data)


@pytest.mark.parametrize(("data", "name"), [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
])
def test_known_unsupported_formats_are_named(data, name):
    with pytest.raises(UnsupportedMediaType, match=f"^{WHERE}: unsupported image format {name};"):
        prepare(data)


def test_avif_made_by_pillow_is_refused_by_name():
    if not features.check("avif"):
        pytest.skip("Pillow built without AVIF")
    with pytest.raises(UnsupportedMediaType, match=f"^{WHERE}: unsupported image format AVIF;"):
        prepare(encode(Image.new("RGB", (32, 32), "white"), "AVIF"))


# ----------------------------------------------------------------- choosing pipelines


def test_fashion_card_gets_the_photo_pipeline_at_its_size():
    pipeline = pipeline_for(CARD_INPUT).pipeline
    assert isinstance(pipeline, FashionMnistPhoto)
    assert (pipeline.height, pipeline.width) == (28, 28)
    spec = pipeline.spec()
    assert spec["name"] == "fashion_mnist_photo" and spec["version"] == 1
    json.dumps(spec)                                                     # a card can record it as is


def test_recorded_pipeline_and_params_are_honoured():
    recorded = FashionMnistPhoto(trim=0.0, clear_background=False).spec()
    card_input = {**CARD_INPUT, "image": {**CARD_INPUT["image"], "preprocessing": recorded}}
    assert pipeline_for(card_input).pipeline == FashionMnistPhoto(trim=0.0, clear_background=False)
    photo = encode(product_shot(), "PNG")
    assert prepare(photo, card_input).pipeline == recorded


@pytest.mark.parametrize(("preprocessing", "message"), [
    ({"name": "sharpen_everything"}, "knows"),
    ({"name": "fashion_mnist_photo", "version": 99}, "version 99"),
    ({"name": "fashion_mnist_photo", "params": {"gamma": 2}}, r"has no parameters \['gamma'\]"),
    ({"name": "fashion_mnist_photo", "params": {"working_size": "big"}}, "parameter working_size cannot be 'big'"),
    ({"name": "fashion_mnist_photo", "params": {"height": 0}}, "parameter height cannot be 0"),
    ({"name": "fashion_mnist_photo", "params": {"trim": -0.1}}, "parameter trim cannot be -0.1"),
    ({"name": "fashion_mnist_photo", "params": {"clear_background": 1}}, "parameter clear_background cannot be 1"),
    ({"name": "fashion_mnist_photo", "version": 2, "params": {"resample": "magic"}},
     "version 2: parameter resample cannot be 'magic'"),
    ({"name": "resize", "params": {"fit": "zoom"}}, "fit must be one of stretch, pad, crop, not 'zoom'"),
    ({"name": "resize", "params": {"value_range": [1, 0]}}, r"value_range must be \[low, high\] with low < high"),
    ({"name": "resize", "params": {"value_range": "0..1"}}, "parameter value_range cannot be '0..1'"),
    ({"name": "fashion_mnist_photo", "params": ["trim", 0]}, "params must be an object"),
])
def test_unknown_pipelines_versions_and_params_are_refused(preprocessing, message):
    card_input = {**CARD_INPUT, "image": {**CARD_INPUT["image"], "preprocessing": preprocessing}}
    with pytest.raises(PipelineError, match=message):
        pipeline_for(card_input)


def test_generic_rgb_model_gets_resized_and_scaled():
    card_input = {"name": "image", "kind": "image", "dtype": "float32", "shape": [32, 48, 3],
                  "image": {"height": 32, "width": 48, "channels": 3, "value_range": [0, 1]}}
    assert isinstance(pipeline_for(card_input).pipeline, Resize)
    photo = Image.new("RGB", (200, 100), (255, 0, 0))
    prepared = prepare(encode(photo, "PNG"), card_input)
    assert prepared.array.shape == (32, 48, 3) and prepared.array.dtype == np.float32
    np.testing.assert_allclose(prepared.array[..., 0], 1.0)
    np.testing.assert_allclose(prepared.array[..., 1:], 0.0)
    assert not prepared.inverted
    assert Image.open(io.BytesIO(prepared.preview_png)).size == (48, 32)


def test_generic_grayscale_model_from_shape_alone():
    card_input = {"name": "x", "kind": "image", "dtype": "float32", "shape": [16, 16, 1]}
    prepared = prepare(encode(product_shot(), "JPEG"), card_input)
    assert prepared.array.shape == (16, 16, 1) and not prepared.inverted
    assert prepared.array.max() > 200                                    # white background kept


def test_generic_model_on_dark_backgrounds_inverts_light_photos():
    card_input = {"name": "x", "kind": "image", "dtype": "float32", "shape": [64, 64, 3],
                  "image": {"height": 64, "width": 64, "channels": 3, "background": "dark"}}
    prepared = prepare(encode(product_shot(), "PNG"), card_input)
    assert prepared.inverted and prepared.array[0, 0].max() == 0


def test_non_image_card_is_refused():
    with pytest.raises(PipelineError, match="does not describe an image"):
        pipeline_for({"name": "features", "kind": "features", "shape": [4]})


@pytest.mark.parametrize("size", [1, 36, 256, 257, 5000])
@pytest.mark.parametrize("q", [0.0, 0.5, 0.995, 1.0])
def test_quantile_of_few_values_sorted_equals_the_histogram_one(size, q):
    """Up to 256 values are sorted in Python, more go through the histogram: the same answer."""
    values = np.random.default_rng(size).integers(0, 256, size=size, dtype=np.uint8)
    cumulative = np.cumsum(np.bincount(values, minlength=256))
    assert quantile_u8(values, q) == float(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
