"""`make photos`: how well the served upload path classifies real clothing photos, per model version.

Starts the real server (gunicorn with service/gunicorn_conf.py, as `make serve` runs it;
or uses `--host`), POSTs every photo as multipart field `image` to
`/api/models/fashion_mnist/versions/{v}/predict`, one request at a time, and prints a
Markdown table per class: photos, right and share right for each version; then all photos,
the per-class average, the constant baseline (always answering "T-shirt/top") and the
milliseconds per photo (client-side, whole request).

The photos are JPEG/PNG/... files in class folders (`<folder>/<class>/` or one level deeper,
e.g. `<folder>/validation/<class>/`). A prediction is right when it is in the class's set of
Fashion-MNIST classes (see ../shared/datasets/clothing-photos/README.md); folders of
classes Fashion-MNIST has no class for (hat, shorts, skirt) are counted and skipped.

    python scripts/photos.py                                   # the development photos, versions 1 and 2
    python scripts/photos.py /path/to/photos --versions 2
    python scripts/photos.py --host http://127.0.0.1:8501      # a server already running
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from loadtest.server import MODELS, GunicornServer  # noqa: E402

DEFAULT_FOLDER = ROOT.parent / "shared" / "datasets" / "clothing-photos"
MODEL = "fashion_mnist"
BASELINE_LABEL = "T-shirt/top"
# Photo class folder -> the Fashion-MNIST classes that count as right for it.
MAPPING: dict[str, frozenset[str]] = {
    "dress": frozenset({"Dress"}),
    "longsleeve": frozenset({"Pullover", "Shirt", "T-shirt/top", "Coat"}),
    "outwear": frozenset({"Coat", "Pullover"}),
    "pants": frozenset({"Trouser"}),
    "shirt": frozenset({"Shirt", "T-shirt/top"}),
    "shoes": frozenset({"Sandal", "Sneaker", "Ankle boot"}),
    "t-shirt": frozenset({"T-shirt/top"}),
}
UNMAPPED = ("hat", "shorts", "skirt")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class Tally:
    photos: int = 0
    right: dict[int, int] = field(default_factory=dict)

    def share(self, version: int) -> float:
        return self.right.get(version, 0) / self.photos if self.photos else 0.0


@dataclass
class Report:
    folder: Path
    versions: list[int]
    per_class: dict[str, Tally]
    skipped: dict[str, int]
    milliseconds: dict[int, float]
    errors: dict[int, int]
    predictions: dict[int, dict[str, int]]    # version -> predicted label -> count

    def per_class_average(self, version: int) -> float:
        shares = [t.share(version) for t in self.per_class.values() if t.photos]
        return sum(shares) / len(shares) if shares else 0.0

    def baseline(self) -> float:
        present = [name for name, t in self.per_class.items() if t.photos]
        return sum(BASELINE_LABEL in MAPPING[name] for name in present) / len(present) if present else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "versions": {
                str(v): {
                    "per_class": {name: {"photos": t.photos, "right": t.right.get(v, 0), "share": round(t.share(v), 4)}
                                  for name, t in self.per_class.items()},
                    "per_class_average": round(self.per_class_average(v), 4),
                    "ms_per_photo": round(self.milliseconds[v], 2),
                    "errors": self.errors[v],
                    "predicted": self.predictions[v],
                } for v in self.versions
            },
            "baseline_always_tshirt": round(self.baseline(), 4),
            "skipped": self.skipped,
        }


def find_photos(folder: Path) -> tuple[dict[str, list[Path]], dict[str, int]]:
    """Photos per mapped class, from `folder/<class>/` and `folder/*/<class>/`; counts of unmapped ones."""
    if not folder.is_dir():
        raise SystemExit(f"error: {folder}: no such folder")
    found: dict[str, list[Path]] = {}
    skipped: dict[str, int] = {}
    candidates = [p for p in sorted(folder.iterdir()) if p.is_dir()]
    candidates += [q for p in candidates if p.name.lower() not in MAPPING for q in sorted(p.iterdir()) if q.is_dir()]
    for directory in candidates:
        name = directory.name.lower()
        files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
        if name in MAPPING:
            found.setdefault(name, []).extend(files)
        elif files:
            skipped[name] = skipped.get(name, 0) + len(files)
    if not found:
        raise SystemExit(f"error: {folder}: no photos in class folders ({', '.join(MAPPING)})")
    return {name: found[name] for name in MAPPING if name in found}, skipped


def served_versions(url: str) -> list[int]:
    answer = requests.get(f"{url}/api/models", timeout=30)
    answer.raise_for_status()
    for model in answer.json()["models"]:
        if model["name"] == MODEL:
            return sorted(v["version"] for v in model["versions"] if v["state"] == "AVAILABLE")
    raise SystemExit(f"error: the server at {url} does not serve {MODEL}")


def measure(url: str, photos: dict[str, list[Path]], skipped: dict[str, int], versions: list[int],
            folder: Path) -> Report:
    session = requests.Session()
    per_class = {name: Tally(photos=len(files)) for name, files in photos.items()}
    milliseconds: dict[int, float] = {}
    errors: dict[int, int] = {}
    predictions: dict[int, dict[str, int]] = {}
    for version in versions:
        endpoint = f"{url}/api/models/{MODEL}/versions/{version}/predict"
        spent, count, failed, predicted = 0.0, 0, 0, {}
        for name, files in photos.items():
            right = 0
            for path in files:
                data = path.read_bytes()
                started = time.perf_counter()
                answer = session.post(endpoint, files={"image": (path.name, data)}, timeout=60)
                spent += time.perf_counter() - started
                count += 1
                if answer.status_code != 200:
                    failed += 1
                    print(f"warning: {path}: HTTP {answer.status_code} {answer.text[:200]}", file=sys.stderr)
                    continue
                label = answer.json()["predictions"][0]["label"]
                predicted[label] = predicted.get(label, 0) + 1
                right += label in MAPPING[name]
            per_class[name].right[version] = right
        milliseconds[version] = 1000 * spent / max(count, 1)
        errors[version] = failed
        predictions[version] = dict(sorted(predicted.items(), key=lambda kv: -kv[1]))
    return Report(folder, versions, per_class, skipped, milliseconds, errors, predictions)


def table(report: Report) -> str:
    versions = report.versions
    head = ["class", "photos"] + [f"v{v} {col}" for v in versions for col in ("right", "share")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    total = sum(t.photos for t in report.per_class.values())
    for name, tally in report.per_class.items():
        cells = [name, str(tally.photos)]
        for v in versions:
            cells += [str(tally.right.get(v, 0)), f"{tally.share(v):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**all photos**", str(total)]
    for v in versions:
        right = sum(t.right.get(v, 0) for t in report.per_class.values())
        cells += [str(right), f"{right / total:.2f}" if total else "-"]
    lines.append("| " + " | ".join(cells) + " |")
    rows = (
        ("**per-class average**", lambda v: f"**{report.per_class_average(v):.2f}**"),
        (f'always "{BASELINE_LABEL}" (per-class average)', lambda v: f"{report.baseline():.2f}"),
        ("ms per photo (whole request)", lambda v: f"{report.milliseconds[v]:.1f}"),
    )
    for label, value in rows:
        cells = [label, ""]
        for v in versions:
            cells += ["", value(v)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(report: Report) -> str:
    total = sum(t.photos for t in report.per_class.values())
    text = f"{total} photos in {len(report.per_class)} classes from {report.folder}"
    if report.skipped:
        skipped = ", ".join(f"{name} {count}" for name, count in sorted(report.skipped.items()))
        text += f"; skipped (no Fashion-MNIST class): {skipped}"
    failed = {v: n for v, n in report.errors.items() if n}
    if failed:
        text += "; failed requests: " + ", ".join(f"v{v} {n}" for v, n in failed.items())
    return text


def _versions(text: str) -> list[int]:
    try:
        versions = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated version numbers, got {text!r}") from None
    if not versions or min(versions) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated version numbers, got {text!r}")
    return versions


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/photos.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER,
                   help=f"photos in class folders (default: {DEFAULT_FOLDER})")
    p.add_argument("--versions", type=_versions,
                   help="comma-separated versions of fashion_mnist (default: every one served)")
    p.add_argument("--host", help="URL of a running server (default: start gunicorn on a free port)")
    p.add_argument("--models", type=Path, default=MODELS, help="MODEL_BASE_PATH of the started server")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    photos, skipped = find_photos(args.folder)
    server = None
    url = args.host.rstrip("/") if args.host else None
    with tempfile.TemporaryDirectory(prefix="photos-") as scratch:
        try:
            if url is None:
                # One worker: requests go one at a time, and the other core stays with this client.
                server = GunicornServer({"WEB_CONCURRENCY": "1", "MODEL_BASE_PATH": str(args.models)},
                                        Path(scratch) / "server.log")
                server.wait_ready()   # a server that fails to start raises with its log's tail
                url = server.url
            available = served_versions(url)
            versions = args.versions or available
            missing = sorted(set(versions) - set(available))
            if missing:
                raise SystemExit(f"error: {MODEL} versions {missing} are not served (served: {available})")
            report = measure(url, photos, skipped, versions, args.folder)
        finally:
            if server is not None:
                server.stop()
    print(summary(report))
    print()
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
