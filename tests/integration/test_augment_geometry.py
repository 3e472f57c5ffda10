"""Training's augmentation re-fits an item where the server's pipeline puts it: the TensorFlow
transform of training/augment.py and preprocessing.geometry.fit_box agree on random boxes."""

from __future__ import annotations

import numpy as np

from preprocessing.geometry import fit_box, item_boxes
from training.augment import SIZE, Augmentation, augment_batch

BOXES = 600


def _random_items(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Solid rectangles of every shape, from 2 pixels wide to the whole frame, anywhere in it."""
    images = np.zeros((BOXES, SIZE, SIZE), dtype=np.float32)
    boxes = []
    for index in range(BOXES):
        width, height = rng.integers(2, SIZE + 1, size=2)
        left, top = rng.integers(0, SIZE - width + 1), rng.integers(0, SIZE - height + 1)
        images[index, top:top + height, left:left + width] = 255.0
        boxes.append((int(left), int(top), int(left + width), int(top + height)))
    return images, boxes


def test_the_refit_lands_where_the_pipeline_fits_the_same_box():
    images, boxes = _random_items(np.random.default_rng(6))
    assert item_boxes(images).tolist() == [list(map(float, box)) for box in boxes]
    # Geometry on, every draw at its identity: only the re-fit moves the item.
    identity = Augmentation(rotate=1e-12)
    out = augment_batch(images, item_boxes(images), identity, [1, 2]).numpy()
    landed = item_boxes(out, level=127)
    for box, got in zip(boxes, landed, strict=True):
        _, expected = fit_box(box, (SIZE, SIZE))
        # Bilinear edges against whole pixels: the pipeline rounds its size, the transform does not.
        assert np.abs(np.array(expected) - got).max() <= 1.0, (box, expected, got.tolist())
