"""Real photos (#8): the photo script, pipeline fashion_mnist_photo v2, fashion_mnist version 2 and its labels."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from preprocessing.card import pipeline_for
from preprocessing.pipelines import FashionMnistPhoto, FashionMnistPhotoV2
from service.codecs.images import prepare_image
from service.config import Config

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
SCRIPT = ROOT / "scripts" / "photos.py"
CARD_1 = json.loads((MODELS / "fashion_mnist/1/assets.extra/model_card.json").read_text())
CARD_2 = json.loads((MODELS / "fashion_mnist/2/assets.extra/model_card.json").read_text())
V2_INPUT = {**CARD_1["input"], "image": {**CARD_1["input"]["image"], "preprocessing": FashionMnistPhotoV2().spec()}}
V1 = pipeline_for(CARD_1["input"])
V2 = pipeline_for(V2_INPUT)
LIMIT = 40_000_000


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def garment_photo(seed: int = 0, size=(400, 533), kind: str = "tshirt", background=((205, 200, 190),),
                  garment=(40, 60, 120)) -> Image.Image:
    """A phone-photo-like picture: a garment shape, centred-ish, on a noisy floor of one or more colours."""
    rng = np.random.default_rng(seed)
    width, height = size
    floor = np.empty((height, width, 3), dtype=np.float32)
    bands = np.array_split(np.arange(width), len(background))
    for colour, columns in zip(background, bands, strict=True):
        floor[:, columns] = colour
    floor += rng.normal(0, 6, floor.shape)
    image = Image.fromarray(np.clip(floor, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    cx, cy = width // 2 + int(rng.integers(-20, 20)), height // 2 + int(rng.integers(-20, 20))
    if kind == "tshirt":
        draw.rectangle((cx - 80, cy - 110, cx + 80, cy + 120), fill=garment)             # body: 161 x 231
        draw.rectangle((cx - 150, cy - 110, cx - 80, cy - 40), fill=garment)             # sleeves: 301 wide
        draw.rectangle((cx + 80, cy - 110, cx + 150, cy - 40), fill=garment)
    else:                                                                                # trousers
        draw.rectangle((cx - 70, cy - 180, cx + 70, cy - 100), fill=garment)
        draw.rectangle((cx - 70, cy - 100, cx - 8, cy + 200), fill=garment)
        draw.rectangle((cx + 8, cy - 100, cx + 70, cy + 200), fill=garment)
    return image


def lit_box(array: np.ndarray, level: float = 0) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((array > level).any(axis=1))
    cols = np.flatnonzero((array > level).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# ----------------------------------------------------------------- the photo script


@pytest.fixture(scope="module")
def tiny_photos(tmp_path_factory) -> Path:
    """A few synthetic photos in class folders, one folder of a class Fashion-MNIST lacks, and a nested layout."""
    root = tmp_path_factory.mktemp("photos")
    (root / "validation" / "t-shirt").mkdir(parents=True)
    (root / "validation" / "pants").mkdir()
    (root / "validation" / "hat").mkdir()
    for seed in range(2):
        (root / "validation" / "t-shirt" / f"shirt{seed}.jpg").write_bytes(encode(garment_photo(seed)))
    (root / "validation" / "pants" / "jeans.png").write_bytes(encode(garment_photo(5, kind="trousers"), "PNG"))
    (root / "validation" / "hat" / "cap.jpg").write_bytes(encode(garment_photo(7)))
    (root / "validation" / "pants" / "notes.txt").write_text("not a photo")
    return root


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, check=False)


def test_photo_script_prints_the_table_per_version(server, tiny_photos, tmp_path):
    out = tmp_path / "photos.json"
    done = run_script(str(tiny_photos), "--host", server.url, "--json", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 photos in 2 classes from ")
    assert "skipped (no Fashion-MNIST class): hat 1" in lines[0]
    assert "| class | photos | v1 right | v1 share | v2 right | v2 share |" in lines
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in lines if line.startswith("| ") and not line.startswith("| class")}
    assert list(rows)[:2] == ["pants", "t-shirt"]
    assert rows["t-shirt"][0] == "2" and rows["pants"][0] == "1"
    assert rows["**all photos**"][0] == "3"
    for label in ("**per-class average**", 'always "T-shirt/top" (per-class average)', "ms per photo (whole request)"):
        assert label in rows, label
    assert rows['always "T-shirt/top" (per-class average)'][2] == "0.50"      # t-shirt right, pants wrong
    assert float(rows["ms per photo (whole request)"][2]) > 0

    report = json.loads(out.read_text())
    assert set(report["versions"]) == {"1", "2"}
    assert report["baseline_always_tshirt"] == 0.5
    assert report["skipped"] == {"hat": 1}
    for figures in report["versions"].values():
        assert figures["errors"] == 0
        assert figures["per_class"]["t-shirt"]["photos"] == 2
        right = [c["right"] for c in figures["per_class"].values()]
        shares = [c["share"] for c in figures["per_class"].values()]
        assert figures["per_class_average"] == pytest.approx(sum(shares) / len(shares), abs=1e-4)
        assert sum(figures["predicted"].values()) == 3 and 0 <= sum(right) <= 3


@pytest.mark.slow
def test_photo_script_starts_its_own_server(tiny_photos):
    done = run_script(str(tiny_photos / "validation"), "--versions", "2")
    assert done.returncode == 0, done.stderr
    assert "| class | photos | v2 right | v2 share |" in done.stdout.splitlines()


def test_photo_script_refuses_a_folder_without_class_folders(tmp_path):
    done = run_script(str(tmp_path), "--host", "http://127.0.0.1:9")
    assert done.returncode != 0
    assert "no photos in class folders" in done.stderr


# ----------------------------------------------------------------- pipeline fashion_mnist_photo v2


def test_v2_keeps_fashion_mnist_images_unchanged(fashion_test_slice):
    images, _ = fashion_test_slice
    for index, pixels in enumerate(images):
        data = encode(Image.fromarray(pixels, "L"), "PNG")
        prepared = prepare_image(data, V2, LIMIT, "photo")
        assert prepared.pipeline["version"] == 2
        assert np.array_equal(prepared.array, pixels.astype(np.float32)), f"test image {index} changed"
    light = prepare_image(encode(Image.fromarray(255 - images[0], "L"), "PNG"), V2, LIMIT, "photo")
    assert light.inverted and np.array_equal(light.array, images[0].astype(np.float32))


def test_v2_card_answers_fashion_mnist_pngs_as_their_json_pixels(client, fashion_test_slice):
    images, _ = fashion_test_slice
    batch = images[:16]
    from_json = client.post("/api/models/fashion_mnist/versions/2/predict",
                            json={"instances": batch.tolist()}).get_json()
    files = [(io.BytesIO(encode(Image.fromarray(img, "L"), "PNG")), f"t{i}.png") for i, img in enumerate(batch)]
    uploaded = client.post("/api/models/fashion_mnist/versions/2/predict", data={"image": files},
                           content_type="multipart/form-data").get_json()
    assert uploaded["version"] == from_json["version"] == 2
    for a, b in zip(from_json["predictions"], uploaded["predictions"], strict=True):
        assert a["label"] == b["label"]
        for name, p in a["probabilities"].items():
            assert b["probabilities"][name] == pytest.approx(p, abs=1e-6)


def photo_hashes(count: int = 6) -> list[str]:
    pipeline = FashionMnistPhotoV2()
    hashes = []
    for seed in range(count):
        kind = "trousers" if seed % 2 else "tshirt"
        background = ((205, 200, 190), (120, 90, 70)) if seed % 3 == 0 else ((190, 195, 200),)
        data = encode(garment_photo(seed, kind=kind, background=background), quality=88)
        prepared = prepare_image(data, V2, LIMIT, "photo")
        assert V2.pipeline == pipeline
        hashes.append(hashlib.sha256(prepared.array.tobytes()).hexdigest())
    return hashes


def test_v2_is_deterministic_within_and_across_processes():
    first, second = photo_hashes(), photo_hashes()
    assert first == second
    script = "import json, tests.integration.test_photos as t; print(json.dumps(t.photo_hashes()))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == first


@pytest.mark.parametrize(("kind", "size"), [("tshirt", (301, 231)), ("trousers", (141, 381))])
def test_v2_crops_the_garment_light_on_exact_black_with_its_long_side_filling_the_frame(kind, size):
    photo = garment_photo(3, kind=kind, background=((210, 205, 195), (150, 110, 90), (90, 110, 150)))
    prepared = prepare_image(encode(photo, quality=90), V2, LIMIT, "photo")
    array = prepared.array
    assert prepared.inverted                                   # dark garment, light floor: turned light on black
    left, top, right, bottom = lit_box(array, level=40)        # the garment, not the resampling's faint fringe
    width, height = size                                       # of the drawn garment
    long_side, short_side = ((right - left), (bottom - top)) if width > height else ((bottom - top), (right - left))
    assert long_side == 28                                     # fills the frame like Fashion-MNIST's items
    assert abs(short_side - 28 * min(size) / max(size)) <= 2          # aspect kept (to a pixel each side)
    assert abs(left - (28 - right)) <= 1 and abs(top - (28 - bottom)) <= 1          # centred
    left, top, right, bottom = lit_box(array)
    outside = np.ones_like(array, dtype=bool)
    outside[top:bottom, left:right] = False
    assert array[outside].max() == 0 and right - left <= 28 and (right - left) * (bottom - top) < 28 * 28
    assert short_side + 2 >= (bottom - top if width > height else right - left)     # exactly black around it
    assert array.max() >= 200 and np.median(array[array > 0]) > 100                  # the garment is light


def test_v2_keeps_the_central_garment_not_a_thing_at_the_edge():
    photo = garment_photo(4, kind="trousers")
    ImageDraw.Draw(photo).ellipse((5, 5, 95, 95), fill=(20, 20, 20))     # a dark object in a corner
    prepared = prepare_image(encode(photo, quality=90), V2, LIMIT, "photo")
    left, top, right, bottom = lit_box(prepared.array)
    assert (top, bottom) == (0, 28) and right - left <= 14          # only the trousers: tall and narrow
    version1 = prepare_image(encode(photo, quality=90), V1, LIMIT, "photo")
    assert version1.pipeline["version"] == 1                         # the lesson's card keeps version 1


def test_v2_garment_touching_the_border_keeps_its_colours():
    photo = garment_photo(6, size=(400, 400), kind="tshirt", garment=(190, 40, 40))
    ImageDraw.Draw(photo).rectangle((120, 250, 280, 399), fill=(190, 40, 40))   # runs off the bottom edge
    prepared = prepare_image(encode(photo, quality=90), V2, LIMIT, "photo")
    _, top, _, bottom = lit_box(prepared.array)
    middle = prepared.array[top:bottom, 12:16]
    assert (middle > 0).mean() > 0.95                          # the red body stays garment down to the edge


def test_v2_cut_out_png_uses_its_alpha():
    image = Image.new("RGBA", (200, 160), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((70, 20, 129, 139), fill=(40, 40, 200, 255))
    prepared = prepare_image(encode(image, "PNG"), V2, LIMIT, "photo")
    left, top, right, bottom = lit_box(prepared.array)
    assert (top, bottom) == (0, 28) and abs((right - left) - 14) <= 1


def test_v2_uniform_and_tiny_images_do_not_fail():
    for image in (Image.new("RGB", (120, 90), (200, 180, 160)), Image.new("L", (3, 200), 255), Image.new("L", (1, 1))):
        prepared = prepare_image(encode(image, "PNG"), V2, LIMIT, "photo")
        assert prepared.array.shape == (28, 28) and np.isfinite(prepared.array).all()


def test_cards_without_a_recorded_version_keep_version_1():
    assert "preprocessing" not in CARD_1["input"]["image"]
    assert isinstance(V1.pipeline, FashionMnistPhoto)
    named_only = {**CARD_1["input"], "image": {**CARD_1["input"]["image"],
                                               "preprocessing": {"name": "fashion_mnist_photo"}}}
    assert pipeline_for(named_only).pipeline.version == 1


# ----------------------------------------------------------------- fashion_mnist version 2


def test_v2_card_records_its_pipeline_augmentations_and_accuracy():
    preprocessing = CARD_2["input"]["image"]["preprocessing"]
    assert preprocessing["name"] == "fashion_mnist_photo" and preprocessing["version"] == 2
    assert pipeline_for(CARD_2["input"]).pipeline == FashionMnistPhotoV2(**preprocessing["params"])
    assert CARD_2["name"] == "fashion_mnist" and CARD_2["version"] == 2
    evaluation = CARD_2["evaluation"]
    assert evaluation["test_samples"] == 10000 and evaluation["accuracy"] >= 0.91
    training = CARD_2["training"]
    assert training["architecture"] == "cnn" and training["train_samples"] == 60000
    assert training["augmentation"] and training["seconds"] > 0
    assert CARD_2["input"]["image"]["value_range"] == [0, 255]     # scaling 1/255 inside the model


def test_v2_runs_on_the_compiled_path(models_dir):
    from service.repository.loader import load_servable

    servable = load_servable("fashion_mnist", 2, models_dir / "fashion_mnist" / "2")
    assert servable.signature(None).backend == "litert"
    assert servable.signature("top_class").backend == "litert"


def test_models_yaml_is_the_default_config(tmp_path, monkeypatch):
    assert Config(model_base_path=MODELS).model_config == MODELS / "models.yaml"
    assert Config.from_env({"MODEL_BASE_PATH": str(MODELS)}).model_config == MODELS / "models.yaml"
    other = tmp_path / "other.json"
    other.write_text("{}")
    assert Config.from_env({"MODEL_BASE_PATH": str(MODELS), "MODEL_CONFIG": str(other)}).model_config == other
    assert Config(model_base_path=tmp_path).model_config is None
    assert Config.from_env({"MODEL_BASE_PATH": str(MODELS), "MODEL_CONFIG": "none"}).model_config is None


def test_lesson_label_is_version_1_and_the_default_is_version_2(client):
    summary = {m["name"]: m for m in client.get("/api/models").get_json()["models"]}["fashion_mnist"]
    assert [v["version"] for v in summary["versions"]] == [1, 2]
    assert summary["labels"] == {"lesson": 1, "best": 2}
    assert summary["default_version"] == 2
    assert client.get("/api/models/fashion_mnist").get_json()["served_version"] == 2
    assert client.get("/api/models/fashion_mnist/labels/lesson").get_json()["served_version"] == 1
    assert client.get("/api/models/fashion_mnist/labels/best").get_json()["served_version"] == 2
    photo = encode(garment_photo(1))
    for path, version in (("labels/lesson/", 1), ("versions/1/", 1), ("", 2), ("labels/best/", 2)):
        body = client.post(f"/api/models/fashion_mnist/{path}predict", data={"image": (io.BytesIO(photo), "p.jpg")},
                           content_type="multipart/form-data").get_json()
        assert body["version"] == version, path
    status = client.get("/v1/models/fashion_mnist").get_json()["model_version_status"]
    assert sorted(s["version"] for s in status) == ["1", "2"]
    assert client.get("/v1/models/fashion_mnist/labels/lesson/metadata").get_json()["model_spec"]["version"] == "1"


# ----------------------------------------------------------------- training: recipe and augmentations


def test_augmentation_options_parse_and_refuse_nonsense():
    from training import TrainingError
    from training.augment import Augmentation
    from training.recipes import RECIPES

    base = RECIPES["fashion_mnist_cnn"].augmentation
    assert base.active and base.record()["shear"] == 0.15
    assert Augmentation.parse("rotate=5,noise=3", base) == Augmentation(**{**base.record(), "rotate": 5, "noise": 3})
    assert Augmentation.parse("none", base) == Augmentation() and not Augmentation().active
    assert Augmentation().record() == {}
    for bad in ("spin=3", "rotate", "rotate=-1", "rotate=abc", "rotate=nan"):
        with pytest.raises(TrainingError):
            Augmentation.parse(bad, base)


def test_augmented_batches_are_repeatable_and_refitted_to_the_frame(fashion_test_slice):
    from preprocessing.geometry import item_boxes
    from training.augment import Augmentation, augment_batch

    images = fashion_test_slice[0][:64]
    boxes = item_boxes(images)
    aug = Augmentation(flip=0.5, rotate=15, aspect=0.4, shear=0.15, shift=0)
    first = augment_batch(images.astype(np.float32), boxes, aug, [1, 7]).numpy()
    assert np.array_equal(first, augment_batch(images.astype(np.float32), boxes, aug, [1, 7]).numpy())
    assert not np.array_equal(first, augment_batch(images.astype(np.float32), boxes, aug, [1, 8]).numpy())
    assert first.shape == (64, 28, 28) and first.min() >= 0 and first.max() <= 255
    # Re-fitted as the photo pipeline does: each item's long side still spans (nearly) the whole frame.
    spans = [max(b[2] - b[0], b[3] - b[1]) for b in item_boxes(first, level=30)]
    assert np.median(spans) >= 26
    clean = augment_batch(images.astype(np.float32), boxes, Augmentation(rotate=15, clean=1.0), [1, 7]).numpy()
    assert np.array_equal(clean, images.astype(np.float32))


def test_augment_option_is_refused_for_models_without_images(capsys):
    from training.cli import main

    assert main(["iris", "--augment", "flip=0.5", "--epochs", "1"]) == 1
    assert "iris is not an image model" in capsys.readouterr().err


def test_every_augmentation_at_once_runs_and_repeats(fashion_test_slice):
    from dataclasses import fields

    from preprocessing.geometry import item_boxes
    from training.augment import Augmentation, augment_batch

    images = fashion_test_slice[0][:16].astype(np.float32)
    everything = Augmentation(**{f.name: 2.0 if f.name in ("rotate", "shift", "noise", "blur") else 0.5
                                 for f in fields(Augmentation)})
    first = augment_batch(images, item_boxes(images), everything, [3, 4]).numpy()
    assert first.shape == (16, 28, 28) and first.min() >= 0 and first.max() <= 255
    assert np.array_equal(first, augment_batch(images, item_boxes(images), everything, [3, 4]).numpy())
    assert not np.array_equal(first, images)


def test_cnn_recipe_exports_fashion_mnist_with_its_pipeline_and_augmentations(tmp_path, fashion_test_slice):
    from training.datasets import FASHION_FILES
    from training.idx import write_idx
    from training.recipes import RECIPES
    from training.train import train

    images, labels = fashion_test_slice
    data = tmp_path / "data"
    data.mkdir()
    arrays = {"train_images": images[:300], "train_labels": labels[:300],
              "test_images": images[400:], "test_labels": labels[400:]}
    for key, name in FASHION_FILES.items():
        write_idx(data / name, arrays[key])
    recipe = RECIPES["fashion_mnist_cnn"]
    hp = recipe.defaults.__class__(**{**recipe.defaults.__dict__, "epochs": 1})
    version = train(recipe, hp, data, tmp_path / "models", verbose=0)
    assert version == tmp_path / "models" / "fashion_mnist" / "1"
    card = json.loads((version / "assets.extra" / "model_card.json").read_text())
    assert card["name"] == "fashion_mnist" and card["input"]["image"]["preprocessing"] == FashionMnistPhotoV2().spec()
    assert card["training"]["architecture"] == "cnn" and card["training"]["lr_schedule"] == "cosine"
    assert card["training"]["augmentation"] == recipe.augmentation.record()
    assert card["evaluation"]["test_samples"] == 100
