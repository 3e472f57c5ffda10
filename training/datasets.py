"""The three data sets of the lesson, with where each came from and its checksums."""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training import TrainingError
from training.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

IRIS_CSV = Path(__file__).parent / "data" / "iris.csv"
IRIS_FEATURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
IRIS_SPECIES = ("setosa", "versicolor", "virginica")

FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    checksums: dict[str, str] = field(default_factory=dict)

    def limited(self, train_limit: int | None, test_limit: int | None) -> Dataset:
        """A slice of the data, for quick runs and tests; the card records the sizes used."""
        return Dataset(
            self.x_train[:train_limit], self.y_train[:train_limit],
            self.x_test[:test_limit], self.y_test[:test_limit],
            self.source, self.checksums,
        )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_linear() -> Dataset:
    """The six points of Práctica 5.1; with so few, the lesson trains and checks on the same line."""
    xs = np.array([-1, 0, 1, 2, 3, 4], dtype=np.float32).reshape(-1, 1)
    ys = 2 * xs - 1
    x_test = np.array([[-2.0], [5.0], [10.0]], dtype=np.float32)
    return Dataset(xs, ys, x_test, 2 * x_test - 1, "lesson: y = 2x - 1 at x = -1..4")


def load_iris(data_dir: Path | None, test_fraction: float, seed: int) -> Dataset:
    """Iris from the shipped CSV (or `data_dir/iris.csv`), split stratified with a fixed seed."""
    path = (data_dir / "iris.csv") if data_dir else IRIS_CSV
    if not path.is_file():
        raise TrainingError(f"{path}: iris CSV not found")
    features, labels = _read_iris_csv(path)
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for species in range(len(IRIS_SPECIES)):
        members = np.flatnonzero(labels == species)
        if len(members) < 2:
            raise TrainingError(f"{path}: species {IRIS_SPECIES[species]!r} has {len(members)} rows")
        take = max(1, round(len(members) * test_fraction))
        test_idx.extend(rng.permutation(members)[:take].tolist())
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[test_idx] = True
    train_order = rng.permutation(np.flatnonzero(~test_mask))
    return Dataset(
        features[train_order], labels[train_order],
        features[test_mask], labels[test_mask],
        f"iris.csv ({len(labels)} rows)", {path.name: sha256(path)},
    )


def _read_iris_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in (*IRIS_FEATURES, "species") if c not in (reader.fieldnames or [])]
            if missing:
                raise TrainingError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path}: cannot read ({exc})") from None
    if not rows:
        raise TrainingError(f"{path}: no data rows")
    features = np.empty((len(rows), len(IRIS_FEATURES)), dtype=np.float32)
    labels = np.empty(len(rows), dtype=np.int64)
    for line, row in enumerate(rows, start=2):
        short = [c for c in (*IRIS_FEATURES, "species") if row[c] is None]
        if short:  # csv.DictReader fills the columns of a short row with None
            raise TrainingError(f"{path}:{line}: missing value(s) for {', '.join(short)}")
        for col, name in enumerate(IRIS_FEATURES):
            try:
                features[line - 2, col] = float(row[name])
            except (TypeError, ValueError):
                raise TrainingError(f"{path}:{line}: {name} is not a number: {row[name]!r}") from None
            if not np.isfinite(features[line - 2, col]):
                raise TrainingError(f"{path}:{line}: {name} is not finite: {row[name]!r}")
        species = row["species"].strip().removeprefix("Iris-").lower()
        if species not in IRIS_SPECIES:
            raise TrainingError(f"{path}:{line}: unknown species {row['species']!r}")
        labels[line - 2] = IRIS_SPECIES.index(species)
    return features, labels


def load_fashion_mnist(data_dir: Path | None) -> Dataset:
    """The official 60,000/10,000 split: four IDX files in `data_dir`, or Keras' own download."""
    if data_dir is None:
        return _fashion_from_keras()
    if not data_dir.is_dir():
        raise TrainingError(f"{data_dir}: data folder not found")
    paths = {key: data_dir / name for key, name in FASHION_FILES.items()}
    arrays = {
        key: read_idx(path, IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC)
        for key, path in paths.items()
    }
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != (28, 28):
            raise TrainingError(f"{paths[split + '_images']}: images are {images.shape[1:]}, expected 28x28")
        if len(images) != len(labels):
            raise TrainingError(f"{split}: {len(images)} images but {len(labels)} labels")
        if labels.max() > 9:
            raise TrainingError(f"{paths[split + '_labels']}: label {labels.max()} outside 0..9")
    return Dataset(
        arrays["train_images"], arrays["train_labels"].astype(np.int64),
        arrays["test_images"], arrays["test_labels"].astype(np.int64),
        f"Fashion-MNIST IDX files in {data_dir}",
        {path.name: sha256(path) for path in paths.values()},
    )


def _fashion_from_keras() -> Dataset:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as exc:  # Keras raises bare Exceptions for download failures
        raise TrainingError(f"Keras could not download Fashion-MNIST ({exc}); pass --data-dir") from None
    # load_data() hides its paths; it caches where get_file does (KERAS_HOME or ~/.keras).
    folder = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "fashion-mnist"
    checksums = {n: sha256(folder / n) for n in FASHION_FILES.values() if (folder / n).is_file()}
    return Dataset(
        x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
        "keras.datasets.fashion_mnist.load_data()", checksums,
    )
