"""The server as `make serve` starts it: gunicorn -c service/gunicorn_conf.py from the repository
root, MODEL_BASE_PATH relative. Every plot a served card names must come back as a PNG: with a
relative path each answered 503, since Flask reads a relative file from service/, not the
working directory.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import requests
from PIL import Image

pytestmark = pytest.mark.slow

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def relative_server(gunicorn_factory):
    # "models" is also the default, which `make serve` uses; spelt out so no inherited value wins.
    return gunicorn_factory({"MODEL_BASE_PATH": "models"})


def committed_plots(model: str, version: int) -> set[str]:
    card = json.loads((MODELS / model / str(version) / "assets.extra" / "model_card.json").read_text())
    return {f"/api/models/{model}/versions/{version}/plots/{file}" for file in card.get("plots", {}).values()}


def test_every_plot_of_every_served_card_is_a_png(relative_server):
    listing = requests.get(f"{relative_server.url}/api/models", timeout=10)
    assert listing.status_code == 200, listing.text
    served = [(model["name"], state["version"]) for model in listing.json()["models"]
              for state in model["versions"] if state["state"] == "AVAILABLE"]
    assert sorted(served) == [("fashion_mnist", 1), ("fashion_mnist", 2), ("iris", 1), ("linear", 1)]

    fetched: set[str] = set()
    for model, version in served:
        card = requests.get(f"{relative_server.url}/api/models/{model}/versions/{version}", timeout=10)
        assert card.status_code == 200, card.text
        urls = set(card.json()["plots"].values())
        assert urls == committed_plots(model, version)
        for url in urls:
            plot = requests.get(relative_server.url + url, timeout=10)
            assert plot.status_code == 200, f"{url}: {plot.status_code} {plot.text[:200]}"
            assert plot.headers["Content-Type"] == "image/png"
            with Image.open(io.BytesIO(plot.content)) as image:
                assert image.format == "PNG"
                image.load()                           # the whole file decodes, not only its header
        fetched |= urls
    assert len(fetched) == 7                           # the committed models' confusion matrices and curves
