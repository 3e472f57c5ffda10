"""The training pipeline, end to end and for real: small slices, few epochs, real TensorFlow.

What a serving process relies on is checked on freshly trained exports and on the committed
`models/<name>/1`: the SavedModel loads, its `serving_default` signature is the one its card
describes, the golden outputs reproduce, the card is complete, versions are only ever added,
and a bad option or a bad file ends in one `error:` line without leaving a version behind.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import training.export
import training.train
from training import TrainingError
from training.cli import main as cli_main
from training.datasets import FASHION_FILES, IRIS_CSV, IRIS_FEATURES
from training.export import CARD_FILE, EXTRA_DIR, GOLDEN_FILE, STAGING_PREFIX
from training.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, write_idx
from training.recipes import RECIPES, Hyperparameters
from training.train import train

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "models"
SHARED_FASHION = Path("/work/shared/datasets/fashion-mnist")  # the full data set, where present
FASHION_SLICE = REPO / "tests" / "fixtures" / "fashion_mnist_test_500"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FASHION_TRAIN, FASHION_TEST = 300, 100
BARS = {"iris": 0.93, "fashion_mnist": 0.87}


# ---------------------------------------------------------------------------- helpers


def card_of(version_dir: Path) -> dict:
    return json.loads((version_dir / EXTRA_DIR / CARD_FILE).read_text(encoding="utf-8"))


def golden_of(version_dir: Path) -> dict:
    return json.loads((version_dir / EXTRA_DIR / GOLDEN_FILE).read_text(encoding="utf-8"))


def serving_default(version_dir: Path):
    """(loaded object, its serving_default); the object is returned to keep its variables alive."""
    loaded = tf.saved_model.load(str(version_dir))
    return loaded, loaded.signatures["serving_default"]


def leftovers(model_dir: Path) -> tuple[list[str], list[str]]:
    """(numbered version folders, staging folders) directly under a model folder."""
    names = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
    return [n for n in names if n.isdigit()], [n for n in names if n.startswith(STAGING_PREFIX)]


def quick(name: str, epochs: int, **overrides: object) -> Hyperparameters:
    return dataclasses.replace(RECIPES[name].defaults, epochs=epochs, **overrides)


@functools.cache
def fashion_slice() -> tuple[np.ndarray, np.ndarray]:
    """The 500 real test images committed under tests/fixtures (see its README)."""
    images = read_idx(FASHION_SLICE / FASHION_FILES["test_images"], IMAGES_MAGIC)
    labels = read_idx(FASHION_SLICE / FASHION_FILES["test_labels"], LABELS_MAGIC)
    return images, labels


def make_fashion_folder(folder: Path, n_train: int = FASHION_TRAIN, n_test: int = FASHION_TEST) -> Path:
    """A local data folder: the four IDX files, train and test taken from disjoint parts of the slice."""
    images, labels = fashion_slice()
    assert n_train + n_test <= len(images)
    folder.mkdir(parents=True, exist_ok=True)
    split = len(images) - n_test
    arrays = {
        "train_images": images[:n_train], "train_labels": labels[:n_train],
        "test_images": images[split:], "test_labels": labels[split:],
    }
    for key, name in FASHION_FILES.items():
        write_idx(folder / name, arrays[key])
    return folder


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 100 and image.height > 100


# ---------------------------------------------------------------------------- fresh exports


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fashion_folder(tmp_path_factory.mktemp("fashion-data"))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path) -> dict[str, Path]:
    """One quick export of iris (through `train`) and of fashion_mnist (through the CLI)."""
    out = tmp_path_factory.mktemp("models")
    iris = train(RECIPES["iris"], quick("iris", epochs=5), None, out, verbose=0)
    code = cli_main(["fashion_mnist", "--data-dir", str(fashion_dir), "--output-dir", str(out),
                     "--epochs", "1", "--quiet"])
    assert code == 0
    return {"iris": iris, "fashion_mnist": out / "fashion_mnist" / "1", "out": out}


@pytest.mark.parametrize("name", ["iris", "fashion_mnist"])
def test_fresh_export_is_version_1_without_staging(fresh: dict[str, Path], name: str) -> None:
    assert fresh[name] == fresh["out"] / name / "1"
    assert leftovers(fresh["out"] / name) == (["1"], [])
    assert (fresh[name] / "saved_model.pb").is_file()
    assert (fresh[name] / "variables").is_dir()


def check_signature(version_dir: Path, card: dict) -> None:
    loaded = tf.saved_model.load(str(version_dir))
    assert card["signature_name"] == "serving_default"
    signature = loaded.signatures["serving_default"]
    args, kwargs = signature.structured_input_signature
    assert args == ()
    assert list(kwargs) == [card["input"]["name"]]
    spec = kwargs[card["input"]["name"]]
    assert card["input"]["dtype"] == "float32"
    assert spec.dtype == tf.float32
    assert spec.shape.as_list() == [None, *card["input"]["shape"]]

    outputs = signature.structured_outputs
    assert list(outputs) == [card["output"]["name"]]
    n_out = len(card["classes"]) if card["classes"] else 1
    assert card["output"]["shape"] == [n_out]
    assert outputs[card["output"]["name"]].shape.as_list() == [None, n_out]

    # And the signature really runs on a batch shaped as the card says.
    batch = tf.zeros([2, *card["input"]["shape"]], tf.float32)
    result = signature(**{card["input"]["name"]: batch})
    value = result[card["output"]["name"]].numpy()
    assert value.shape == (2, n_out)
    if card["task"] == "classification":
        np.testing.assert_allclose(value.sum(axis=1), 1.0, atol=1e-5)
        top = loaded.signatures["top_class"](**{card["input"]["name"]: batch})
        np.testing.assert_array_equal(top["class_id"].numpy(), value.argmax(axis=1))
        np.testing.assert_allclose(top["probability"].numpy(), value.max(axis=1), atol=1e-6)


@pytest.mark.parametrize("name", ["iris", "fashion_mnist"])
def test_fresh_signature_matches_card(fresh: dict[str, Path], name: str) -> None:
    card = card_of(fresh[name])
    expected_shape = {"iris": [4], "fashion_mnist": [28, 28]}[name]
    assert card["input"]["name"] == RECIPES[name].input_name
    assert card["input"]["shape"] == expected_shape
    assert card["output"]["name"] == "probabilities"
    check_signature(fresh[name], card)


@pytest.mark.parametrize("name", ["linear", "iris", "fashion_mnist"])
def test_committed_signature_matches_card(name: str) -> None:
    version_dir = COMMITTED / name / "1"
    check_signature(version_dir, card_of(version_dir))


def check_golden(version_dir: Path) -> None:
    card, golden = card_of(version_dir), golden_of(version_dir)
    assert card["golden_file"] == GOLDEN_FILE
    assert golden["signature_name"] == "serving_default"
    assert 0 < golden["atol"] <= 1e-4
    assert list(golden["inputs"]) == [card["input"]["name"]]
    assert list(golden["outputs"]) == [card["output"]["name"]]
    inputs = np.asarray(golden["inputs"][card["input"]["name"]], dtype=np.float32)
    expected = np.asarray(golden["outputs"][card["output"]["name"]], dtype=np.float32)
    assert len(inputs) > 0
    assert inputs.shape[1:] == tuple(card["input"]["shape"])
    assert expected.shape == (len(inputs), *card["output"]["shape"])
    if card["classes"]:
        # One example per class, taken from the test set.
        assert len(inputs) == len(card["classes"])

    _loaded, signature = serving_default(version_dir)
    got = signature(**{card["input"]["name"]: tf.constant(inputs)})
    np.testing.assert_allclose(got[card["output"]["name"]].numpy(), expected, rtol=0, atol=golden["atol"])


@pytest.mark.parametrize("name", ["iris", "fashion_mnist"])
def test_fresh_golden_outputs_reproduce_after_reload(fresh: dict[str, Path], name: str) -> None:
    check_golden(fresh[name])


@pytest.mark.parametrize("name", ["linear", "iris", "fashion_mnist"])
def test_committed_golden_outputs_reproduce(name: str) -> None:
    check_golden(COMMITTED / name / "1")


def check_card(version_dir: Path, name: str) -> dict:
    card = card_of(version_dir)
    recipe = RECIPES[name]
    assert card["card_format"] == 1
    assert card["name"] == name
    assert card["version"] == int(version_dir.name)
    assert datetime.fromisoformat(card["created"]).tzinfo is not None
    assert card["task"] == recipe.task
    assert card["description"]

    # Input schema.
    schema = card["input"]
    assert schema["name"] == recipe.input_name
    assert schema["dtype"] == "float32"
    assert schema["shape"] == recipe.instance_shape
    if name == "iris":
        assert schema["kind"] == "features"
        assert [f["name"] for f in schema["features"]] == list(IRIS_FEATURES)
        assert all(f["unit"] == "cm" for f in schema["features"])
    if name == "fashion_mnist":
        assert schema["kind"] == "image"
        assert schema["image"]["value_range"] == [0, 255]
        assert (schema["image"]["height"], schema["image"]["width"]) == (28, 28)

    # Classes.
    if name == "linear":
        assert card["classes"] is None
    else:
        assert [c["index"] for c in card["classes"]] == list(range(len(card["classes"])))
    if name == "iris":
        assert [c["name"] for c in card["classes"]] == ["setosa", "versicolor", "virginica"]
    if name == "fashion_mnist":
        classes = card["classes"]
        assert len(classes) == 10
        assert classes[0]["name"] == "T-shirt/top" and classes[0]["name_es"] == "Camiseta"
        assert classes[9]["name"] == "Ankle boot" and classes[9]["name_es"] == "Bota"
        assert classes[1]["name_es"] == "Pantalón"  # written as UTF-8, not mangled
        assert all(c["name"] and c["name_es"] for c in classes)

    # Training hyperparameters.
    hp = card["training"]
    for key in ("epochs", "batch_size", "learning_rate", "hidden_units", "seed", "train_samples"):
        assert isinstance(hp[key], int | float), key
    assert hp["epochs"] >= 1 and hp["batch_size"] >= 1 and hp["learning_rate"] > 0
    assert hp["optimizer"] == recipe.optimizer
    assert hp["loss"] == recipe.loss
    assert hp["train_samples"] > 0
    assert hp["seconds"] >= 0
    assert "loss" in hp["final_epoch"]

    # Data provenance.
    assert card["data"]["source"]
    for file_name, digest in card["data"]["sha256"].items():
        assert file_name
        assert len(digest) == 64 and int(digest, 16) >= 0
    if name == "iris":
        assert set(card["data"]["sha256"]) == {"iris.csv"}
    if name == "fashion_mnist":
        assert set(card["data"]["sha256"]) == set(FASHION_FILES.values())

    # Library versions.
    libraries = card["libraries"]
    assert set(libraries) >= {"python", "tensorflow", "keras", "numpy"}
    assert all(isinstance(v, str) and v[0].isdigit() for v in libraries.values())

    # Evaluation on the test set.
    evaluation = card["evaluation"]
    assert evaluation["test_samples"] > 0
    assert evaluation["loss"] >= 0
    if recipe.task == "classification":
        assert 0 <= evaluation["accuracy"] <= 1
        names = [c["name"] for c in card["classes"]]
        assert [p["class"] for p in evaluation["per_class"]] == names
        for per_class in evaluation["per_class"]:
            for key in ("precision", "recall", "f1"):
                assert 0 <= per_class[key] <= 1
        matrix = np.asarray(evaluation["confusion_matrix"])
        assert matrix.shape == (len(names), len(names))
        assert (matrix >= 0).all()
        assert matrix.sum() == evaluation["test_samples"]
        assert [p["support"] for p in evaluation["per_class"]] == matrix.sum(axis=1).tolist()
        assert evaluation["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum(), abs=1e-4)
    else:
        assert evaluation["mean_absolute_error"] >= 0
        assert len(evaluation["predictions"]) == evaluation["test_samples"]

    # Plots.
    expected_plots = {"training_curves"} | ({"confusion_matrix"} if recipe.task == "classification" else set())
    assert set(card["plots"]) == expected_plots
    for file_name in card["plots"].values():
        assert_png(version_dir / EXTRA_DIR / file_name)
    return card


@pytest.mark.parametrize("name", ["iris", "fashion_mnist"])
def test_fresh_card_is_complete(fresh: dict[str, Path], fashion_dir: Path, name: str) -> None:
    card = check_card(fresh[name], name)
    assert card["version"] == 1
    assert card["libraries"]["tensorflow"] == tf.__version__
    if name == "iris":
        assert card["training"]["epochs"] == 5
        assert card["training"]["train_samples"] == 120
        assert card["evaluation"]["test_samples"] == 30
        assert card["data"]["sha256"]["iris.csv"] == hashlib.sha256(IRIS_CSV.read_bytes()).hexdigest()
    else:
        assert card["training"]["epochs"] == 1
        assert card["training"]["hidden_units"] == 128
        assert card["training"]["train_samples"] == FASHION_TRAIN
        assert card["evaluation"]["test_samples"] == FASHION_TEST
        assert str(fashion_dir) in card["data"]["source"]
        for file_name, digest in card["data"]["sha256"].items():
            assert digest == hashlib.sha256((fashion_dir / file_name).read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["linear", "iris", "fashion_mnist"])
def test_committed_card_is_complete(name: str) -> None:
    check_card(COMMITTED / name / "1", name)


# ---------------------------------------------------------------------------- committed models meet the bar


@pytest.mark.parametrize("name", ["iris", "fashion_mnist"])
def test_committed_classifier_meets_accuracy_bar(name: str) -> None:
    evaluation = card_of(COMMITTED / name / "1")["evaluation"]
    assert evaluation["accuracy"] >= BARS[name]
    if name == "fashion_mnist":
        assert evaluation["test_samples"] == 10000
        assert sum(map(sum, evaluation["confusion_matrix"])) == 10000


def predict_linear(version_dir: Path, x: float) -> float:
    _loaded, signature = serving_default(version_dir)
    result = signature(x=tf.constant([[x]], tf.float32))
    assert set(result) == {"y"}
    return float(result["y"].numpy()[0, 0])


def test_committed_linear_predicts_19_at_10() -> None:
    version_dir = COMMITTED / "linear" / "1"
    assert predict_linear(version_dir, 10.0) == pytest.approx(19.0, abs=0.1)
    at_10 = [p for p in card_of(version_dir)["evaluation"]["predictions"] if p["x"] == 10.0]
    assert len(at_10) == 1 and at_10[0]["predicted"] == pytest.approx(19.0, abs=0.1)


@pytest.mark.slow
def test_fresh_linear_with_lesson_recipe_predicts_19_at_10(tmp_path: Path) -> None:
    assert RECIPES["linear"].defaults.epochs == 500
    assert cli_main(["linear", "--output-dir", str(tmp_path), "--quiet"]) == 0
    version_dir = tmp_path / "linear" / "1"
    assert card_of(version_dir)["training"]["epochs"] == 500
    assert predict_linear(version_dir, 10.0) == pytest.approx(19.0, abs=0.1)
    check_golden(version_dir)


# ---------------------------------------------------------------------------- versions and atomic export


def test_second_run_adds_version_2_and_keeps_version_1(tmp_path: Path) -> None:
    recipe, hp = RECIPES["linear"], quick("linear", epochs=2)
    first = train(recipe, hp, None, tmp_path, verbose=0)
    assert first == tmp_path / "linear" / "1"
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}

    second = train(recipe, hp, None, tmp_path, verbose=0)
    assert second == tmp_path / "linear" / "2"
    assert leftovers(tmp_path / "linear") == (["1", "2"], [])
    after = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert after == before  # version 1 untouched, byte for byte
    assert card_of(first)["version"] == 1
    assert card_of(second)["version"] == 2
    assert not list(tmp_path.rglob(f"{STAGING_PREFIX}*"))


def test_publish_never_overwrites_an_existing_version(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "keep").write_text("v1")
    staging = model_dir / f"{STAGING_PREFIX}x"
    staging.mkdir()
    (staging / "new").write_text("v2")
    with pytest.raises(TrainingError, match="already exists"):
        training.export.publish(staging, model_dir, 1)
    assert (model_dir / "1" / "keep").read_text() == "v1"
    assert not (model_dir / "1" / "new").exists()


class Interrupted(Exception):
    pass


def _fail_on_card(real):
    def write_json(path: Path, payload: dict) -> None:
        if path.name == CARD_FILE:
            path.write_text('{"name": "linear", "ver')  # half a file, then the crash
            raise Interrupted("disk gone")
        real(path, payload)
    return write_json


def _interrupt_export(real):
    def export_saved_model(model, input_name, output_name, task, path: Path) -> None:
        real(model, input_name, output_name, task, path)  # a complete SavedModel in staging...
        raise KeyboardInterrupt  # ...and Ctrl-C before the card is written
    return export_saved_model


def _fail_rename(real):
    def rename(src, dst) -> None:
        raise OSError(28, "No space left on device")
    return rename


@pytest.mark.parametrize(("target", "attribute", "wrap", "error"), [
    (training.train, "write_json", _fail_on_card, Interrupted),
    (training.train, "export_saved_model", _interrupt_export, KeyboardInterrupt),
    (training.export.os, "rename", _fail_rename, TrainingError),
], ids=["card-write-fails", "ctrl-c-after-savedmodel", "publish-rename-fails"])
@pytest.mark.parametrize("existing", [False, True], ids=["empty", "with-v1"])
def test_interrupted_export_leaves_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              target, attribute, wrap, error, existing: bool) -> None:
    model_dir = tmp_path / "linear"
    if existing:
        model_dir.mkdir()
        shutil.copytree(COMMITTED / "linear" / "1", model_dir / "1")
    monkeypatch.setattr(target, attribute, wrap(getattr(target, attribute)))

    with pytest.raises(error):
        train(RECIPES["linear"], quick("linear", epochs=1), None, tmp_path, verbose=0)

    monkeypatch.undo()
    assert leftovers(model_dir) == ((["1"] if existing else []), [])
    assert not list(tmp_path.rglob(f"{STAGING_PREFIX}*"))
    if existing:
        assert card_of(model_dir / "1")["version"] == 1
        check_golden(model_dir / "1")


# ---------------------------------------------------------------------------- IDX reader


def write_gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as handle:
        handle.write(payload)
    return path


def test_idx_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    got_images = read_idx(tmp_path / "images.gz", IMAGES_MAGIC)
    got_labels = read_idx(tmp_path / "labels.gz", LABELS_MAGIC)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    # The header is the standard big-endian one.
    with gzip.open(tmp_path / "images.gz", "rb") as handle:
        assert struct.unpack(">4i", handle.read(16)) == (IMAGES_MAGIC, 7, 28, 28)


def test_idx_reads_the_committed_real_slice() -> None:
    images, labels = fashion_slice()
    assert images.shape == (500, 28, 28) and labels.shape == (500,)
    assert labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # as its README says
    assert set(labels.tolist()) == set(range(10))


def test_idx_reads_the_full_data_set_labels() -> None:
    if not SHARED_FASHION.is_dir():
        pytest.skip("no local copy of the full Fashion-MNIST")
    labels = read_idx(SHARED_FASHION / FASHION_FILES["test_labels"], LABELS_MAGIC)
    assert labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10
    np.testing.assert_array_equal(labels[:500], fashion_slice()[1])


def _images_header(count: int = 2) -> bytes:
    return struct.pack(">4i", IMAGES_MAGIC, count, 28, 28)


IDX_CASES = [
    ("truncated body",
     lambda p: write_gz(p, _images_header(2) + bytes(784 * 2 - 1)), IMAGES_MAGIC, "data bytes"),
    ("extra bytes",
     lambda p: write_gz(p, _images_header(2) + bytes(784 * 2 + 5)), IMAGES_MAGIC, "data bytes"),
    ("header count larger than body",
     lambda p: write_gz(p, _images_header(3) + bytes(784 * 2)), IMAGES_MAGIC, r"header \(3, 28, 28\)"),
    ("label count mismatch",
     lambda p: write_gz(p, struct.pack(">2i", LABELS_MAGIC, 10) + bytes(9)), LABELS_MAGIC, "data bytes"),
    ("wrong magic: labels read as images",
     lambda p: write_gz(p, struct.pack(">2i", LABELS_MAGIC, 20) + bytes(20)), IMAGES_MAGIC, "magic number 2049"),
    ("wrong magic: garbage",
     lambda p: write_gz(p, b"\x00\x00\x08\x04" + bytes(64)), LABELS_MAGIC, "magic number"),
    ("truncated header",
     lambda p: write_gz(p, struct.pack(">i", IMAGES_MAGIC)), IMAGES_MAGIC, "truncated header"),
    ("zero dimension",
     lambda p: write_gz(p, _images_header(0)), IMAGES_MAGIC, "invalid dimensions"),
    ("negative dimension",
     lambda p: write_gz(p, _images_header(-1)), IMAGES_MAGIC, "invalid dimensions"),
    ("not gzip",
     lambda p: p.write_bytes(_images_header(1) + bytes(784)), IMAGES_MAGIC, "not a readable gzip"),
    ("truncated gzip stream",
     lambda p: p.write_bytes(gzip.compress(_images_header(1) + os.urandom(784))[:-20]), IMAGES_MAGIC,
     "not a readable gzip"),
    ("corrupt gzip stream",
     lambda p: p.write_bytes(gzip.compress(bytes(2000))[:10] + b"\xff" * 50), IMAGES_MAGIC,
     "not a readable gzip"),
    ("empty file",
     lambda p: p.write_bytes(b""), IMAGES_MAGIC, "truncated header"),
    ("missing file",
     lambda p: None, IMAGES_MAGIC, "file not found"),
]


@pytest.mark.parametrize(("name", "make", "magic", "message"), IDX_CASES, ids=[c[0] for c in IDX_CASES])
def test_idx_rejects_corrupt_files(tmp_path: Path, name: str, make, magic: int, message: str) -> None:
    path = tmp_path / "file-idx-ubyte.gz"
    make(path)
    with pytest.raises(TrainingError, match=message) as caught:
        read_idx(path, magic)
    assert str(path) in str(caught.value)  # says which file


# ---------------------------------------------------------------------------- CLI bad input


def _bad_iris(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "iris.csv").write_text(text)
    return folder


IRIS_HEADER = ",".join([*IRIS_FEATURES, "species"])


def _case_unknown_model(tmp: Path) -> list[str]:
    return ["resnet"]


def _case_missing_data_folder(tmp: Path) -> list[str]:
    return ["fashion_mnist", "--data-dir", str(tmp / "nowhere")]


def _case_folder_without_idx(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    (tmp / "empty" / "README").write_text("nothing here")
    return ["fashion_mnist", "--data-dir", str(tmp / "empty")]


def _case_folder_missing_one_idx(tmp: Path) -> list[str]:
    folder = make_fashion_folder(tmp / "three", n_train=20, n_test=10)
    (folder / FASHION_FILES["test_labels"]).unlink()
    return ["fashion_mnist", "--data-dir", str(folder)]


def _case_idx_counts_disagree(tmp: Path) -> list[str]:
    folder = make_fashion_folder(tmp / "mismatch", n_train=20, n_test=10)
    write_idx(folder / FASHION_FILES["train_labels"], np.zeros(19, np.uint8))
    return ["fashion_mnist", "--data-dir", str(folder)]


def _case_iris_missing_column(tmp: Path) -> list[str]:
    header = ",".join([*IRIS_FEATURES[:3], "species"])
    return ["iris", "--data-dir", str(_bad_iris(tmp / "iris", f"{header}\n5.1,3.5,1.4,setosa\n"))]


def _case_iris_not_a_number(tmp: Path) -> list[str]:
    rows = IRIS_CSV.read_text().splitlines()
    rows[5] = "5.0,abc,1.4,0.2,setosa"  # file line 6: the header is line 1
    return ["iris", "--data-dir", str(_bad_iris(tmp / "iris", "\n".join(rows) + "\n"))]


def _case_iris_short_row(tmp: Path) -> list[str]:
    rows = IRIS_CSV.read_text().splitlines()
    rows[5] = "5.0,3.6,1.4,0.2"  # no species
    return ["iris", "--data-dir", str(_bad_iris(tmp / "iris", "\n".join(rows) + "\n"))]


def _case_iris_csv_not_found(tmp: Path) -> list[str]:
    (tmp / "noiris").mkdir()
    return ["iris", "--data-dir", str(tmp / "noiris")]


def _case_output_under_a_file(tmp: Path) -> list[str]:
    (tmp / "afile").write_text("not a folder")
    return ["iris", "--output-dir", str(tmp / "afile" / "sub")]


def _case_output_in_proc(tmp: Path) -> list[str]:
    return ["linear", "--output-dir", "/proc/keras-serving-test-models"]


CLI_CASES = {
    "unknown-model": (_case_unknown_model, "unknown model 'resnet'"),
    "missing-data-folder": (_case_missing_data_folder, "data folder not found"),
    "folder-without-idx-files": (_case_folder_without_idx, "file not found"),
    "folder-missing-one-idx-file": (_case_folder_missing_one_idx, "t10k-labels-idx1-ubyte.gz: file not found"),
    "idx-image-label-counts-disagree": (_case_idx_counts_disagree, "20 images but 19 labels"),
    "iris-missing-column": (_case_iris_missing_column, "missing column(s) petal_width_cm"),
    "iris-not-a-number": (_case_iris_not_a_number, "iris.csv:6: sepal_width_cm is not a number: 'abc'"),
    "iris-short-row": (_case_iris_short_row, "iris.csv:6: missing value(s) for species"),
    "iris-csv-not-found": (_case_iris_csv_not_found, "iris CSV not found"),
    "output-under-a-file": (_case_output_under_a_file, "output folder is not writable"),
    "output-in-proc": (_case_output_in_proc, "output folder is not writable"),
}


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "training", *args, "--quiet"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_is_one_error_line_and_no_version(tmp_path: Path, case: str) -> None:
    make_args, message = CLI_CASES[case]
    out = tmp_path / "out"
    args = make_args(tmp_path)
    if "--output-dir" not in args:
        args += ["--output-dir", str(out)]

    result = run_cli(args, cwd=tmp_path)

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    # No version (nor staging) folder anywhere, and nothing written beside the working folder.
    produced = [p for p in tmp_path.rglob("*") if p.is_dir()]
    assert not [p for p in produced if p.name.isdigit() or p.name.startswith(STAGING_PREFIX)]
    assert not (tmp_path / "models").exists()


def test_cli_in_process_reports_error_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    code = cli_main(["linear", "--output-dir", str(tmp_path / "afile" / "sub"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "Not a directory" in captured.err
