"""The web page at `/`, in a real headless Chromium against a real gunicorn.

What the page shows must be what the API answers for the same input: each test asks the
API itself (with requests) and compares. Screenshots go to artifacts/screenshots/ (desktop
and phone-sized) for a human to look at.

Needs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver, or
$CHROMIUM_BIN and $CHROMEDRIVER_BIN); without them every browser test is skipped, with the reason.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP = (1366, 900)
PHONE = (390, 844)  # CSS pixels of a common phone
WAIT = 30

IRIS_VIRGINICA = {"sepal_length_cm": "6.7", "sepal_width_cm": "3.0", "petal_length_cm": "5.2", "petal_width_cm": "2.3"}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
                    "apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("needs selenium (pip install -r requirements-dev.txt)")

    profile = tempfile.mkdtemp(prefix="web-page-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                 f"--user-data-dir={profile}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    except Exception as exc:  # a broken install is a reason to skip, and says which
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"chromium would not start under chromedriver: {exc}")
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(gunicorn_factory):
    """Overrides conftest's: MODEL_BASE_PATH relative, as `make serve` has it (its default), which
    is the setting under which every plot once answered 503."""
    return gunicorn_factory({"MODEL_BASE_PATH": "models"})


@pytest.fixture
def page(browser, server):
    """The page, freshly loaded at desktop size, with its browser log drained."""
    browser.set_window_size(*DESKTOP)
    browser.get(server.url + "/")
    browser.get_log("browser")
    return Page(browser, server.url)


@pytest.fixture(scope="module")
def images(tmp_path_factory, fashion_test_slice):
    """A real Fashion-MNIST test image, a photo-like JPEG, and a text file that is no image."""
    folder = tmp_path_factory.mktemp("web-images")
    pixels, labels = fashion_test_slice
    index = int(np.flatnonzero(labels == 9)[0])  # an ankle boot, which the model gets right
    real = folder / f"fashion-test-{index}.png"
    Image.fromarray(pixels[index], mode="L").save(real)

    photo = Image.new("RGB", (400, 300), (250, 250, 248))
    draw = ImageDraw.Draw(photo)
    # A dark T-shirt-like shape on white, slightly off-centre: what a phone photo looks like.
    draw.polygon([(150, 60), (250, 60), (320, 110), (295, 150), (262, 128), (262, 260), (138, 260), (138, 128),
                  (105, 150), (80, 110)], fill=(40, 48, 70))
    draw.ellipse((182, 50, 218, 78), fill=(250, 250, 248))
    photo_path = folder / "photo-shirt.jpg"
    photo.save(photo_path, quality=90)

    text = folder / "notes.txt"
    text.write_text("this is not an image\n")
    return {"real": real, "real_label": int(labels[index]), "photo": photo_path, "text": text}


# ------------------------------------------------------------------- helpers


class Page:
    def __init__(self, driver, url: str) -> None:
        self.driver = driver
        self.url = url

    def wait(self, condition, timeout: float = WAIT, message: str = ""):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(condition, message)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css: str):
        def shown(_):
            found = self.find_all(css)
            return found[0] if found and found[0].is_displayed() else False
        return self.wait(shown, message=f"{css} never became visible")

    def choose(self, model: str, version: str | None = None) -> None:
        from selenium.webdriver.support.ui import Select

        self.wait(lambda d: self.find("#model").is_enabled(), message="the model list never loaded")
        Select(self.find("#model")).select_by_value(model)
        if version is not None:
            Select(self.find("#version")).select_by_value(version)
        self.wait(lambda d: d.execute_script(
            "return document.body.dataset.ready === 'true' && document.body.dataset.model === arguments[0]", model),
            message=f"the card of {model} never loaded")

    def upload(self, *paths: Path) -> None:
        self.visible("#image-input")
        self.find("#file-input").send_keys("\n".join(str(p) for p in paths))

    def results(self, count: int):
        self.wait(lambda d: len(self.find_all("#results .result")) >= count or self.error_text(),
                  message=f"{count} results never appeared")
        assert not self.error_text(), self.error_text()
        return self.find_all("#results .result")

    def error_text(self) -> str:
        found = self.find_all("#error")
        return found[0].text if found and found[0].is_displayed() else ""

    def screenshot(self, name: str, *, size: tuple[int, int] | None = None) -> Path:
        """A full-page PNG (the whole scroll height), at the given window width."""
        import base64

        if size:
            self.driver.set_window_size(*size)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        # Wait for the images (plots, previews) to finish loading before taking the picture.
        self.wait(lambda d: d.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"),
            message="images never finished loading")
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def broken_images(self) -> list[str]:
        """Once every <img> has finished, the sources of those that did not load."""
        self.wait(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"),
                  message="images never finished loading")
        return self.driver.execute_script(
            "return [...document.images].filter(i => i.naturalWidth === 0).map(i => i.src)")

    def console_problems(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser")
                if entry["level"] in ("SEVERE", "WARNING") and "favicon" not in entry["message"]]


def percent(p: float) -> str:
    """As the page writes a probability."""
    value = p * 100
    if 0 < value < 0.1:
        return "<0.1%"
    if 99.9 < value < 100:
        return ">99.9%"
    return f"{value:.1f}%"


def api_predict_files(url: str, model: str, *paths: Path) -> requests.Response:
    files = [("image", (p.name, p.read_bytes())) for p in paths]
    return requests.post(f"{url}/api/models/{model}/predict", files=files, params={"preview": "1"}, timeout=60)


# --------------------------------------------------------------------- tests


def test_page_and_assets_carry_security_headers_and_nothing_external(server):
    page = requests.get(server.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["img-src"] == ["'self'", "data:", "blob:"]   # blob: plots the page fetched with a key
    assert directives["frame-ancestors"] == ["'none'"]
    sources = {source for listed in directives.values() for source in listed}
    assert sources <= {"'self'", "'none'", "data:", "blob:"}
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert '<meta name="viewport"' in page.text

    # No inline script or style: everything comes from files of this server.
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) is None
    assert "<style" not in page.text and " style=" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith(("/", "data:")), f"external asset {asset}"
        if asset.startswith("/"):
            response = requests.get(server.url + asset, timeout=10)
            assert response.status_code == 200, asset
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "http://" not in response.text and "https://" not in response.text, asset
            assert "@import" not in response.text and "url(" not in response.text, asset


def test_fashion_images_show_the_apis_label_preview_and_ten_bars(page, server, images):
    page.choose("fashion_mnist")
    page.upload(images["real"], images["photo"])
    results = page.results(2)
    answer = api_predict_files(server.url, "fashion_mnist", images["real"], images["photo"])
    assert answer.status_code == 200, answer.text
    expected = {p["file"]: p for p in answer.json()["predictions"]}
    assert set(expected) == {images["real"].name, images["photo"].name}

    card = requests.get(f"{server.url}/api/models/fashion_mnist", timeout=10).json()
    for result in results:
        file = result.get_attribute("data-file")
        api = expected[file]
        assert result.find_element("css selector", ".result-label").text == api["label"]
        assert result.find_element("css selector", ".result-label-es").text == api["label_es"]
        assert result.find_element("css selector", ".result-probability").text.startswith(percent(api["probability"]))
        bars = result.find_elements("css selector", ".bars .bar-row")
        assert [b.get_attribute("data-class") for b in bars] == [c["name"] for c in card["classes"]]
        shown = {b.get_attribute("data-class"): float(b.get_attribute("data-p")) for b in bars}
        assert shown == pytest.approx(api["probabilities"])
        top = result.find_element("css selector", ".bar-row.top")
        assert top.get_attribute("data-class") == api["label"]
        preview = result.find_element("css selector", ".preview img")
        assert preview.get_attribute("src") == api["preview"]
        assert page.driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]",
                                          preview) == [28, 28]
    # The real test image is classified as its true class.
    by_file = {r.get_attribute("data-file"): r for r in results}
    real_label = by_file[images["real"].name].find_element("css selector", ".result-label").text
    assert real_label == card["classes"][images["real_label"]]["name"]

    page.screenshot("fashion_mnist-desktop")
    assert page.console_problems() == []
    page.screenshot("fashion_mnist-phone", size=PHONE)
    assert page.driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"), "the phone layout scrolls sideways"


def test_fashion_shows_the_card_version_metrics_and_plots(page, server):
    page.choose("fashion_mnist", "1")
    card = requests.get(f"{server.url}/api/models/fashion_mnist/versions/1", timeout=10).json()
    assert page.find("[data-metric='served-version'] dd").text == str(card["served_version"])
    assert page.find("[data-metric='accuracy'] dd").text == f"{card['evaluation']['accuracy'] * 100:.1f}%"
    assert page.find("[data-metric='loss'] dd").text == f"{card['evaluation']['loss']:g}"
    rows = page.find_all("#per-class-table tbody tr")
    assert len(rows) == len(card["evaluation"]["per_class"]) == 10
    assert rows[0].text.startswith("T-shirt/top")
    assert "Camiseta" in rows[0].text
    plots = page.find_all("#plots img")
    assert sorted(p.get_attribute("src").removeprefix(server.url) for p in plots) == sorted(card["plots"].values())
    page.wait(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", p)
                            for p in plots), message="a plot did not load")
    assert page.find("#confusion-matrix, [data-plot='confusion_matrix']").is_displayed()


def test_every_image_of_every_model_and_version_loads(page, server):
    """Present is not shown: each <img>, plots included, must have decoded (naturalWidth > 0)."""
    page.wait(lambda d: page.find("#model").is_enabled(), message="the model list never loaded")
    models = [o.get_attribute("value") for o in page.find_all("#model option")]
    assert sorted(models) == ["fashion_mnist", "iris", "linear"]
    chosen = []
    for model in models:
        page.choose(model)
        for version in [o.get_attribute("value") for o in page.find_all("#version option")]:
            page.choose(model, version)
            card = requests.get(f"{server.url}/api/models/{model}/versions/{version}", timeout=10).json()
            plots = page.find_all("#plots img")
            assert sorted(p.get_attribute("src").removeprefix(server.url) for p in plots) == \
                sorted(card["plots"].values())
            assert page.broken_images() == [], f"{model} version {version}"
            chosen.append((model, version, len(plots)))
    assert sorted(chosen) == [("fashion_mnist", "1", 2), ("fashion_mnist", "2", 2), ("iris", "1", 2),
                              ("linear", "1", 1)]
    assert page.console_problems() == []


def test_paste_and_drop_go_through_the_api_too(page, server, images):
    page.choose("fashion_mnist")
    page.visible("#image-input")
    data = images["real"].read_bytes()
    script = """
        const [kind, bytes, name] = arguments;
        const file = new File([new Uint8Array(bytes)], name, {type: "image/png"});
        const transfer = new DataTransfer();
        transfer.items.add(file);
        if (kind === "paste") {
          document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true}));
        } else {
          document.getElementById("dropzone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
    """
    page.driver.execute_script(script, "paste", list(data), "image.png")
    (pasted,) = page.results(1)
    assert pasted.get_attribute("data-file").startswith("pasted-")
    page.driver.execute_script(script, "drop", list(data), "dropped.png")
    results = page.results(2)
    assert len(results) == 2, "one drop must make one request, not two"
    expected = api_predict_files(server.url, "fashion_mnist", images["real"]).json()["predictions"][0]["label"]
    assert [r.find_element("css selector", ".result-label").text for r in results] == [expected, expected]


def test_iris_form_shows_the_apis_label(page, server):
    page.choose("iris")
    page.visible("#feature-form")
    for name, value in IRIS_VIRGINICA.items():
        field = page.find(f"#feature-{name}")
        assert field.get_attribute("value"), f"{name} has no default value"
        label = page.find(f"label[for='feature-{name}']").text
        assert "(cm)" in label, label
        field.clear()
        field.send_keys(value)
    page.find("#predict-button").click()
    (result,) = page.results(1)

    instance = {name: float(value) for name, value in IRIS_VIRGINICA.items()}
    answer = requests.post(f"{server.url}/api/models/iris/predict", json={"instances": [instance]}, timeout=30)
    api = answer.json()["predictions"][0]
    assert result.find_element("css selector", ".result-label").text == api["label"] == "virginica"
    assert len(result.find_elements("css selector", ".bars .bar-row")) == 3
    assert "null" not in result.text and "undefined" not in result.text, result.text
    page.screenshot("iris-desktop")
    page.screenshot("iris-phone", size=PHONE)
    assert page.console_problems() == []


def test_iris_defaults_predict_without_editing(page):
    page.choose("iris")
    page.visible("#predict-button").click()
    (result,) = page.results(1)
    assert result.find_element("css selector", ".result-label").text == "setosa"


def test_linear_is_a_number_in_and_a_number_out(page, server):
    page.choose("linear")
    field = page.visible("#feature-x")
    field.clear()
    field.send_keys("10")
    page.find("#predict-button").click()
    (result,) = page.results(1)
    shown = float(result.find_element("css selector", ".result-value").get_attribute("data-value"))
    assert shown == pytest.approx(19, abs=0.1)
    api = requests.post(f"{server.url}/api/models/linear/predict", json={"instances": [{"x": 10}]}, timeout=30)
    assert shown == pytest.approx(api.json()["predictions"][0]["value"])
    assert re.search(r"y = 1[89]\.\d", result.text), result.text
    page.screenshot("linear-desktop")
    page.screenshot("linear-phone", size=PHONE)


def test_a_text_file_as_an_image_shows_the_apis_error(page, server, images):
    page.choose("fashion_mnist")
    page.upload(images["text"])
    page.wait(lambda d: page.error_text(), message="no error shown")
    answer = api_predict_files(server.url, "fashion_mnist", images["text"])
    assert 400 <= answer.status_code < 500
    message = answer.json()["error"]
    assert message and message in page.error_text()
    assert page.find_all("#results .result") == []
    page.screenshot("error-desktop")


def test_an_empty_form_field_shows_the_apis_error(page):
    page.choose("iris")
    page.visible("#feature-sepal_length_cm").clear()
    page.find("#predict-button").click()
    page.wait(lambda d: page.error_text(), message="no error shown")
    instance = {"sepal_length_cm": None, "sepal_width_cm": 3.9, "petal_length_cm": 1.7, "petal_width_cm": 0.4}
    answer = requests.post(f"{page.url}/api/models/iris/predict", json={"instances": [instance]}, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error"] in page.error_text()


def test_the_version_chosen_is_the_version_that_answers(browser, gunicorn_factory, models_copy):
    """Two versions of iris, with labels: the page lists both and predicts with the one chosen."""
    shutil.copytree(models_copy / "iris" / "1", models_copy / "iris" / "2")
    config = models_copy / "model_config.json"
    config.write_text(json.dumps({"models": {"iris": {"version_policy": "all",
                                                       "labels": {"stable": 1, "canary": 2}}}}))
    two = gunicorn_factory({"MODEL_BASE_PATH": str(models_copy), "MODEL_CONFIG": str(config),
                            "WEB_CONCURRENCY": "1", "POLL_SECONDS": "0"})
    browser.set_window_size(*DESKTOP)
    browser.get(two.url + "/")
    page = Page(browser, two.url)
    page.choose("iris")
    options = {o.get_attribute("value"): o.text for o in page.find_all("#version option")}
    assert options == {"2": "2 (default, canary)", "1": "1 (stable)"}
    assert page.find("#version").get_attribute("value") == "2"
    assert page.find("[data-metric='served-version'] dd").text == "2"

    page.choose("iris", "1")
    assert page.find("[data-metric='served-version'] dd").text == "1"
    page.visible("#predict-button").click()
    (result,) = page.results(1)
    assert result.find_element("css selector", ".result-meta").text == "iris version 1"
    api = requests.post(f"{two.url}/api/models/iris/versions/1/predict",
                        json={"instances": [{"sepal_length_cm": 5.4, "sepal_width_cm": 3.9,
                                             "petal_length_cm": 1.7, "petal_width_cm": 0.4}]}, timeout=30).json()
    assert api["version"] == 1
    assert result.find_element("css selector", ".result-label").text == api["predictions"][0]["label"]
    assert browser.current_url.endswith("#model=iris&version=1")


def test_with_api_keys_the_page_asks_for_one_and_sends_it(browser, gunicorn_factory):
    """API_KEYS set: the page itself is open, the API is not. The page shows the API's 401
    message and a key field; with the right key every call, plots included, carries it."""
    key = "page-test-key-0123456789"
    keyed = gunicorn_factory({"API_KEYS": key, "MODEL_BASE_PATH": "models", "WEB_CONCURRENCY": "1",
                              "POLL_SECONDS": "0"})
    browser.set_window_size(*DESKTOP)
    browser.get(keyed.url + "/")
    page = Page(browser, keyed.url)
    page.visible("#key-form")
    page.wait(lambda d: "missing API key" in page.find("#page-error").text, message="no 401 message")

    field = page.find("#api-key")
    field.send_keys("not-the-key-0123456789")
    page.find("#key-button").click()
    page.wait(lambda d: "invalid API key" in page.find("#page-error").text, message="a wrong key was not refused")

    browser.get_log("browser")   # the two 401s above, which the browser reports as failed loads
    field.clear()
    field.send_keys(key)
    page.find("#key-button").click()
    page.choose("fashion_mnist")
    page.wait(lambda d: d.execute_script(
        "const shown = [...document.querySelectorAll('#plots img')];"
        "return shown.length > 0 && shown.every(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'))"),
        message="the plots never loaded with the key")
    example = browser.execute_script("return document.getElementById('api-example-code').textContent")
    assert 'Authorization: Bearer $API_KEY' in example and key not in example

    plot = browser.execute_script("return document.querySelector('#plots img').src")
    loads = ("const done = arguments[arguments.length - 1], image = new Image();"
             "image.onload = () => done(true); image.onerror = () => done(false); image.src = arguments[0];")
    assert browser.execute_async_script(loads, plot) is True

    page.choose("iris")
    assert browser.execute_async_script(loads, plot) is False, "the plot's blob outlived its view"
    browser.get_log("browser")   # that failed load, on purpose
    page.visible("#predict-button").click()
    (result,) = page.results(1)
    assert result.find_element("css selector", ".result-label").text == "setosa"
    assert key not in browser.current_url and key not in browser.page_source
    assert page.console_problems() == []


def test_the_choice_is_kept_in_the_address(page, server):
    page.choose("linear")
    assert page.driver.current_url.endswith("#model=linear&version=1")
    page.driver.get(server.url + "/#model=iris&version=1")
    page.driver.refresh()
    page.wait(lambda d: d.execute_script("return document.body.dataset.model") == "iris")
    assert page.find("#model").get_attribute("value") == "iris"


def test_screenshots_are_png(page):
    path = page.screenshot("start-desktop")
    with Image.open(io.BytesIO(path.read_bytes())) as shot:
        assert shot.format == "PNG"
        assert shot.width == DESKTOP[0]
