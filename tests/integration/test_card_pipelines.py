"""A card's image preprocessing is checked when its version loads, not at the first upload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from preprocessing.card import CardPipeline
from preprocessing.pipelines import FashionMnistPhoto, FashionMnistPhotoV2
from service.repository.loader import load_servable
from service.repository.manager import AVAILABLE, END, ModelManager, VersionState

MODELS = Path(__file__).resolve().parents[2] / "models"


def fashion_version(base: Path, version: int, preprocessing: dict | None) -> Path:
    """Committed fashion_mnist version 1 copied in as `version`, its card asking for `preprocessing`."""
    target = base / "fashion_mnist" / str(version)
    shutil.copytree(MODELS / "fashion_mnist" / "1", target)
    card_path = target / "assets.extra" / "model_card.json"
    card = json.loads(card_path.read_text())
    if preprocessing is not None:
        card["input"]["image"]["preprocessing"] = preprocessing
    card_path.write_text(json.dumps(card))
    return target


@pytest.mark.parametrize(("preprocessing", "reason"), [
    ({"name": "sharpen_everything"},
     "model_card.json: input: the model card asks for image preprocessing 'sharpen_everything'; "
     "this server knows fashion_mnist_photo, resize"),
    ({"name": "fashion_mnist_photo", "version": 2, "params": {"working_size": -5}},
     "model_card.json: input: image preprocessing 'fashion_mnist_photo' version 2: "
     "parameter working_size cannot be -5"),
])
def test_a_card_asking_for_unknown_or_bad_preprocessing_does_not_load(tmp_path, preprocessing, reason):
    base = tmp_path / "models"
    fashion_version(base, 1, None)
    fashion_version(base, 2, preprocessing)
    manager = ModelManager(base, None, loader=load_servable, settle_seconds=0)
    manager.refresh()
    good, bad = manager.version_states("fashion_mnist")
    assert good == VersionState(1, AVAILABLE)
    assert bad.state == END
    assert bad.error == f"model 'fashion_mnist' version 2: {reason}"
    assert manager.servable("fashion_mnist").version == 1


def test_the_committed_cards_carry_their_pipelines_built():
    v1 = load_servable("fashion_mnist", 1, MODELS / "fashion_mnist" / "1")
    v2 = load_servable("fashion_mnist", 2, MODELS / "fashion_mnist" / "2")
    iris = load_servable("iris", 1, MODELS / "iris" / "1")
    recorded = v2.card.raw["input"]["image"]["preprocessing"]["params"]
    assert v1.card.image_pipeline == CardPipeline(FashionMnistPhoto(), (28, 28), "float32")
    assert v2.card.image_pipeline == CardPipeline(FashionMnistPhotoV2(**recorded), (28, 28), "float32")
    assert iris.card.image_pipeline is None
