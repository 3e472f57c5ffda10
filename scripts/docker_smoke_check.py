"""Requests from the host to the containerised server, for scripts/docker_smoke.sh. Standard library only.

    python3 scripts/docker_smoke_check.py predict http://127.0.0.1:8501
    python3 scripts/docker_smoke_check.py hot-reload http://127.0.0.1:8501 MODELS_DIR

`predict`: Iris with named features (5.1, 3.5, 1.4, 0.2 must be setosa), and a real Fashion-MNIST
test image (tests/fixtures/fashion_mnist_test_500) uploaded as a PNG file: HTTP 200, a label among
the model's 10 classes, the same label as the same pixels sent as JSON.
`hot-reload`: publish version 2 of iris in MODELS_DIR (the host folder the container mounts
read-only) the way training does (copy aside, rename into place), then wait until every answer
names version 2.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FASHION = ROOT / "tests" / "fixtures" / "fashion_mnist_test_500"
IRIS = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}
IMAGE_INDEX = 0


def request(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def post_json(url: str, payload: Any) -> tuple[int, Any]:
    return request(url, json.dumps(payload).encode(), "application/json")


def fashion_image(index: int) -> tuple[bytes, int]:
    """28x28 uint8 pixels (row-major) and the label of test image `index`, from the IDX files."""
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz", "rb") as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051 and (rows, cols) == (28, 28) and index < count, (magic, count, rows, cols)
        f.seek(16 + index * 784)
        pixels = f.read(784)
    with gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        f.seek(8 + index)
        label = f.read(1)[0]
    return pixels, label


def png_gray(pixels: bytes, width: int, height: int) -> bytes:
    """A minimal 8-bit grayscale PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def multipart(field: str, filename: str, data: bytes, mimetype: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {mimetype}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"docker smoke test FAILED: {message}")


def predict(base: str) -> None:
    status, answer = post_json(f"{base}/api/models/iris/predict", {"instances": [IRIS]})
    check(status == 200, f"iris predict answered {status}: {answer}")
    label = answer["predictions"][0]["label"]
    check(label == "setosa", f"iris {list(IRIS.values())} is {label!r}, expected 'setosa'")
    print(f"  iris {list(IRIS.values())} -> {label} (p={answer['predictions'][0]['probability']:.4f}), "
          f"version {answer['version']}")

    status, card = request(f"{base}/api/models/fashion_mnist")
    check(status == 200, f"fashion_mnist card answered {status}: {card}")
    classes = [c["name"] if isinstance(c, dict) else c for c in card["classes"]]
    check(len(classes) == 10, f"fashion_mnist has {len(classes)} classes, expected 10")

    pixels, true_index = fashion_image(IMAGE_INDEX)
    png = png_gray(pixels, 28, 28)
    body, content_type = multipart("image", f"fashion_test_{IMAGE_INDEX}.png", png, "image/png")
    status, uploaded = request(f"{base}/api/models/fashion_mnist/predict", body, content_type)
    check(status == 200, f"image upload answered {status}: {uploaded}")
    upload_label = uploaded["predictions"][0]["label"]
    check(upload_label in classes, f"upload label {upload_label!r} is not one of {classes}")

    rows = [list(pixels[r * 28:(r + 1) * 28]) for r in range(28)]
    status, as_json = post_json(f"{base}/api/models/fashion_mnist/predict", {"instances": [rows]})
    check(status == 200, f"fashion_mnist JSON predict answered {status}: {as_json}")
    json_label = as_json["predictions"][0]["label"]
    check(upload_label == json_label, f"upload says {upload_label!r}, the same pixels as JSON say {json_label!r}")
    print(f"  PNG upload of Fashion-MNIST test image {IMAGE_INDEX} ({len(png)} bytes) -> HTTP 200, "
          f"{upload_label} (true label {classes[true_index]}; JSON pixels agree)")


def hot_reload(base: str, models_dir: str, timeout: float = 90.0) -> None:
    iris = Path(models_dir) / "iris"
    versions = sorted(int(p.name) for p in iris.iterdir() if p.name.isdigit())
    new = versions[-1] + 1
    staging = iris / f".staging-smoke-{new}"
    shutil.copytree(iris / str(versions[-1]), staging)
    staging.rename(iris / str(new))
    start = time.monotonic()
    streak = 0
    while time.monotonic() - start < timeout:
        status, answer = post_json(f"{base}/api/models/iris/predict", {"instances": [IRIS]})
        streak = streak + 1 if status == 200 and answer.get("version") == new else 0
        if streak >= 10:  # every worker answers with the new version, not just one of them
            print(f"  published iris/{new} on the host: served by the container after "
                  f"{time.monotonic() - start:.1f} s, no restart")
            return
        time.sleep(0.2)
    raise SystemExit(f"docker smoke test FAILED: iris version {new} not served within {timeout:.0f} s")


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "predict":
        predict(argv[1].rstrip("/"))
    elif len(argv) >= 3 and argv[0] == "hot-reload":
        hot_reload(argv[1].rstrip("/"), argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
