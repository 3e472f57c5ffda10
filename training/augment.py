"""Training-time augmentation for Fashion-MNIST, shaped by what the photo pipeline hands the model.

A photo of a garment reaches the model through `preprocessing.pipelines` (`fashion_mnist_photo`):
segmented, cropped, its long side fitted to the frame, light on black. What differs from
Fashion-MNIST's product shots is what these augmentations imitate: the garment lies at an
angle, is mirrored (every Fashion-MNIST shoe points left), is wider or narrower than a product
shot (flat-laid T-shirts are boxy), is cropped a little too tight or too loose, is lit and
printed differently (levels, gamma), is blurred by the down-scaling, and loses parts to
shadows or folds that the segmentation misses.

The geometric part re-fits every transformed item the way the pipeline does: the bounding box
of the transformed item (found by the pipeline's own `item_boxes`) is scaled so its long side
fills `fill` of the frame, and centred, as `preprocessing.geometry.fit_box` places it (in
TensorFlow, for whole batches; tests/integration/test_augment_geometry.py holds the two to the
same boxes). So a rotated or stretched garment looks as the pipeline would show it.

Everything runs on whole batches in TensorFlow (one projective transform per batch), seeded
from the run's seed and the batch number: a run is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from preprocessing.geometry import item_boxes
from training import TrainingError

SIZE = 28


@dataclass(frozen=True)
class Augmentation:
    """Each augmentation applies to an image with its probability; 0 turns it off."""

    flip: float = 0.0            # probability of a left-right mirror
    rotate: float = 0.0          # largest rotation, degrees (uniform in +-rotate)
    aspect: float = 0.0          # largest log2 of the width:height stretch (uniform in +-aspect)
    shear: float = 0.0           # largest horizontal shear (x += shear * y), as a camera not square to the garment
    fill: float = 0.0            # long side fills between 1 - fill and 1 of the frame after re-fitting
    shift: float = 0.0           # largest shift in pixels after re-fitting
    gamma: float = 0.0           # largest |log2 gamma| of the levels (garment brighter or darker)
    brightness: float = 0.0      # levels scaled by 1 - U(0, brightness): a garment less bright than its highlights
    floor: float = 0.0           # largest lift of the garment's darkest levels, as a share of 255
    blur: float = 0.0            # largest Gaussian blur sigma, pixels (uniform 0..blur, half the images)
    erase: float = 0.0           # probability of erasing one rectangle of the item
    erase_area: float = 0.2      # largest share of the frame one erasure covers
    thickness: float = 0.0       # probability of a 3x3 dilation or erosion (half each)
    noise: float = 0.0           # largest standard deviation of added noise, levels
    texture: float = 0.0         # probability of a random shading/stripe pattern over the item (folds, prints)
    texture_depth: float = 0.5   # largest relative depth of that pattern
    prints: float = 0.0          # probability of a rectangle of another level inside the item (a print, a logo)
    clean: float = 0.0           # share of images left exactly as they are

    @classmethod
    def parse(cls, text: str, base: Augmentation | None = None) -> Augmentation:
        """`"flip=0.5,rotate=10"` over `base` (or nothing); `"none"` is no augmentation."""
        base = base if base is not None else cls()
        text = text.strip()
        if text in ("", "none", "off"):
            return cls()
        known = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise TrainingError(f"augmentation {part.strip()!r}: expected KEY=NUMBER with KEY one of "
                                    f"{', '.join(sorted(known))}")
            try:
                value = float(raw)
            except ValueError:
                raise TrainingError(f"augmentation {key}: {raw.strip()!r} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise TrainingError(f"augmentation {key}: must be a finite number >= 0, got {raw.strip()}")
            values[key] = value
        return cls(**{**asdict(base), **values})

    @property
    def active(self) -> bool:
        settings = ("erase_area", "texture_depth", "clean")     # shape the others; alone they do nothing
        return any(getattr(self, f.name) for f in fields(self) if f.name not in settings)

    def record(self) -> dict[str, Any]:
        """What the model card's training section records."""
        return asdict(self) if self.active else {}


def augment_batch(images: Any, boxes: Any, aug: Augmentation, seed: Any) -> Any:
    """A batch (B, 28, 28) float32 in 0..255 with its item boxes, augmented; `seed` a stateless seed pair."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    batch = tf.shape(images)[0]
    seed = tf.cast(seed, tf.int64)
    # The first 32 draws come from one split, as when the committed version 2 was trained (its
    # run stays repeatable); more augmentations at once draw further seeds by folding in.
    split = tf.random.experimental.stateless_split(seed, num=32)
    draws = iter(range(1 << 16))

    def next_seed() -> tf.Tensor:
        index = next(draws)
        return split[index] if index < 32 else tf.random.experimental.stateless_fold_in(seed, index)

    def uniform(low: float, high: float, shape: Any = None) -> tf.Tensor:
        return tf.random.stateless_uniform(shape if shape is not None else [batch], next_seed(),
                                           minval=low, maxval=high)

    original = images
    out = images[..., tf.newaxis]
    if aug.flip or aug.rotate or aug.aspect or aug.shear or aug.fill or aug.shift:
        out = _geometry(out, tf.convert_to_tensor(boxes, tf.float32), aug, uniform)
    if aug.thickness:
        grow = tf.nn.max_pool2d(out, 3, 1, "SAME")
        shrink = -tf.nn.max_pool2d(-out, 3, 1, "SAME")
        pick = uniform(0, 1)[:, None, None, None]
        out = tf.where(pick < aug.thickness / 2, grow, tf.where(pick < aug.thickness, shrink, out))
    if aug.texture:
        out = _texture(out, aug, uniform, next_seed())
    if aug.prints:
        out = _prints(out, aug, uniform)
    if aug.gamma or aug.floor:
        out = _levels(out, aug, uniform)
    if aug.brightness:
        out = out * (1 - uniform(0, aug.brightness))[:, None, None, None]
    if aug.blur:
        out = _blur(out, aug.blur, uniform)
    if aug.erase:
        out = _erase(out, aug, uniform)
    if aug.noise:
        sigma = uniform(0, aug.noise)[:, None, None, None]
        noise = tf.random.stateless_normal(tf.shape(out), next_seed()) * sigma
        out = out + noise * tf.cast(out > 0, tf.float32)
    out = tf.clip_by_value(out, 0.0, 255.0)[..., 0]
    if aug.clean:
        keep = uniform(0, 1)[:, None, None] < aug.clean
        out = tf.where(keep, original, out)
    return out


def _geometry(images: Any, boxes: Any, aug: Augmentation, uniform: Any) -> Any:
    """Mirror, stretch, shear and rotate about the item's centre, then fit its new box to the frame."""
    import tensorflow as tf

    flip = tf.where(uniform(0, 1) < aug.flip, -1.0, 1.0)
    angle = uniform(-aug.rotate, aug.rotate) * (math.pi / 180)
    stretch = tf.pow(2.0, uniform(-aug.aspect, aug.aspect))
    sx, sy = tf.sqrt(stretch) * flip, 1.0 / tf.sqrt(stretch)
    shear = uniform(-aug.shear, aug.shear)
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Forward map about the item's centre: p' = R H S (p - c), H = [[1, shear], [0, 1]].
    a, b = cos * sx, (cos * shear - sin) * sy
    c, d = sin * sx, (sin * shear + cos) * sy
    left, top, right, bottom = tf.unstack(boxes, axis=1)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half_w, half_h = (right - left) / 2, (bottom - top) / 2
    # Box of the transformed item box (its corners), to re-fit as the pipeline would.
    new_half_w = tf.abs(a) * half_w + tf.abs(b) * half_h
    new_half_h = tf.abs(c) * half_w + tf.abs(d) * half_h
    fill = uniform(1 - aug.fill, 1.0)
    scale = fill * SIZE / (2 * tf.maximum(tf.maximum(new_half_w, new_half_h), 0.5))
    dx, dy = uniform(-aug.shift, aug.shift), uniform(-aug.shift, aug.shift)
    centre_x, centre_y = SIZE / 2 + dx, SIZE / 2 + dy
    # Output pixel q = scale * M (p - c) + centre, so p = M^-1 (q - centre) / scale + c.
    det = a * d - b * c
    ia, ib, ic, id_ = d / det / scale, -b / det / scale, -c / det / scale, a / det / scale
    # Pixel centres: TF's transform maps output (x, y) to input (x, y) by the 8 numbers.
    qx, qy = centre_x - 0.5, centre_y - 0.5
    tx = cx - 0.5 - (ia * qx + ib * qy)
    ty = cy - 0.5 - (ic * qx + id_ * qy)
    zeros = tf.zeros_like(ia)
    transforms = tf.stack([ia, ib, tx, ic, id_, ty, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[SIZE, SIZE], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")


def _levels(images: Any, aug: Augmentation, uniform: Any) -> Any:
    """Gamma on the item's levels and a lifted floor inside it, keeping the background at 0."""
    import tensorflow as tf

    unit = images / 255.0
    gamma = tf.pow(2.0, uniform(-aug.gamma, aug.gamma))[:, None, None, None]
    unit = tf.pow(tf.maximum(unit, 1e-6), gamma)
    floor = uniform(0, aug.floor)[:, None, None, None]
    inside = tf.cast(images > 8, tf.float32)
    unit = unit * (1 - floor * inside) + floor * inside
    return unit * 255.0


def _texture(images: Any, aug: Augmentation, uniform: Any, seed: Any) -> Any:
    """Multiply the item by smooth random shading or by stripes: appearance that says nothing of the class."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    depth = uniform(0, aug.texture_depth)[:, None, None, None]
    coarse = tf.random.stateless_uniform([batch, 4, 4, 1], seed, minval=-1.0, maxval=1.0)
    shading = tf.image.resize(coarse, [SIZE, SIZE], method="bicubic")
    angle = uniform(0, math.pi)[:, None, None, None]
    frequency = uniform(0.08, 0.4)[:, None, None, None] * (2 * math.pi)
    phase = uniform(0, 2 * math.pi)[:, None, None, None]
    grid = tf.range(SIZE, dtype=tf.float32)
    along = grid[None, None, :, None] * tf.cos(angle) + grid[None, :, None, None] * tf.sin(angle)
    stripes = tf.sin(along * frequency + phase)
    pattern = tf.where(uniform(0, 1)[:, None, None, None] < 0.5, shading, stripes)
    on = tf.cast(uniform(0, 1) < aug.texture, tf.float32)[:, None, None, None]
    return images * (1 + on * depth * pattern)


def _prints(images: Any, aug: Augmentation, uniform: Any) -> Any:
    """A rectangle (4-40% of the frame) inside the item set to a random level, as a print or a logo."""
    import tensorflow as tf

    area = uniform(0.04, 0.4) * SIZE * SIZE
    ratio = tf.exp(uniform(math.log(1 / 2), math.log(2)))
    height = tf.minimum(tf.sqrt(area * ratio), SIZE)
    width = tf.minimum(tf.sqrt(area / ratio), SIZE)
    top = uniform(0.2, 0.8) * SIZE - height / 2
    left = uniform(0.2, 0.8) * SIZE - width / 2
    level = uniform(30, 255)[:, None, None, None]
    on = tf.cast(uniform(0, 1) < aug.prints, tf.float32)
    grid = tf.range(SIZE, dtype=tf.float32) + 0.5
    inside_y = (grid[None, :] >= top[:, None]) & (grid[None, :] < (top + height)[:, None])
    inside_x = (grid[None, :] >= left[:, None]) & (grid[None, :] < (left + width)[:, None])
    box = tf.cast(inside_y[:, :, None] & inside_x[:, None, :], tf.float32) * on[:, None, None]
    box = box[..., None] * tf.cast(images > 8, tf.float32)
    return images * (1 - box) + level * box


def _blur(images: Any, largest: float, uniform: Any) -> Any:
    """Gaussian blur with sigma uniform in 0..largest on half the images (separable 5-tap)."""
    import tensorflow as tf

    sigma = uniform(0, largest)
    sigma = tf.where(uniform(0, 1) < 0.5, sigma, 0.0)
    taps = tf.constant([-2.0, -1.0, 0.0, 1.0, 2.0])
    weights = tf.exp(-(taps[None, :] ** 2) / (2 * tf.maximum(sigma[:, None], 1e-3) ** 2))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)         # (B, 5)
    padded = tf.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]])
    rows = sum(padded[:, :, k:k + SIZE, :] * weights[:, k, None, None, None] for k in range(5))
    return sum(rows[:, k:k + SIZE, :, :] * weights[:, k, None, None, None] for k in range(5))


def _erase(images: Any, aug: Augmentation, uniform: Any) -> Any:
    """Random erasing: one rectangle (area up to erase_area of the frame, aspect 1:3..3:1) set to 0."""
    import tensorflow as tf

    area = uniform(0.02, max(aug.erase_area, 0.021)) * SIZE * SIZE
    ratio = tf.exp(uniform(math.log(1 / 3), math.log(3)))
    height = tf.minimum(tf.sqrt(area * ratio), SIZE)
    width = tf.minimum(tf.sqrt(area / ratio), SIZE)
    top = uniform(0, 1) * (SIZE - height)
    left = uniform(0, 1) * (SIZE - width)
    on = tf.cast(uniform(0, 1) < aug.erase, tf.float32)
    grid = tf.range(SIZE, dtype=tf.float32) + 0.5
    inside_y = (grid[None, :] >= top[:, None]) & (grid[None, :] < (top + height)[:, None])
    inside_x = (grid[None, :] >= left[:, None]) & (grid[None, :] < (left + width)[:, None])
    box = tf.cast(inside_y[:, :, None] & inside_x[:, None, :], tf.float32) * on[:, None, None]
    return images * (1 - box[..., None])


def training_dataset(x: np.ndarray, y: np.ndarray, aug: Augmentation, batch_size: int, epochs: int,
                     seed: int) -> tuple[Any, int]:
    """A repeated, shuffled, augmented tf.data pipeline over `epochs`, and its steps per epoch."""
    import tensorflow as tf

    boxes = item_boxes(x)
    steps = math.ceil(len(x) / batch_size)
    data = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), boxes, y))
    data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).repeat(epochs).enumerate()

    def apply(index: Any, batch: Any) -> Any:
        images, item, labels = batch
        return augment_batch(images, item, aug, tf.stack([tf.cast(seed, tf.int64), index])), labels

    data = data.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return data.prefetch(tf.data.AUTOTUNE), steps
