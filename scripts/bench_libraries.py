"""The hand-written pieces against the well-kept libraries that could replace them
(docs/performance.md, "Hand-written pieces").

Each figure is a median over interleaved rounds (candidates take turns, so a noisy neighbour
slows all of them alike), in microseconds per call, measured in this process:

    .venv/bin/python scripts/bench_libraries.py [--rounds 7] [--wheels DIR]

The Open Inference Protocol types come from MLServer's and KServe's wheels, read straight from
the files (`pip download --no-deps -d DIR mlserver==1.7.1 kserve==0.21.0`): both packages pull
in a web framework and more, and only their pydantic models are measured here.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import logging
import os
import statistics
import subprocess
import sys
import timeit
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from PIL import Image  # noqa: E402

FLASK_CORS = "08e4f6d"   # the commit whose security.py took its CORS headers from flask-cors


def medians(candidates: dict[str, Callable[[], Any]], number: int, rounds: int) -> dict[str, float]:
    """µs per call of each candidate: the median of `rounds` interleaved timings of `number` calls."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            times[name].append(timeit.timeit(run, number=number) / number * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def show(title: str, figures: dict[str, float], reference: str) -> None:
    print(f"\n{title}")
    for name, us in figures.items():
        print(f"  {name:<44} {us:9.2f} µs   x{us / figures[reference]:.2f}")


# --------------------------------------------------------------------------- CORS

def _module_at(commit: str, path: str, name: str) -> types.ModuleType:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True,
                            capture_output=True, text=True).stdout
    module = sys.modules[name] = types.ModuleType(name)   # dataclasses look their module up
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
    return module


def bench_cors(rounds: int) -> None:
    from flask import Flask, Response

    from service.api import security
    from service.config import Config

    def hook(ctx: Any, after: Callable[[Response], Response]) -> Callable[[], None]:
        def run() -> None:
            with ctx:
                after(Response())
        return run

    config = Config(cors_origins="https://app.example, https://admin.example")
    hooks: dict[str, Callable[[], Any]] = {}
    requests: dict[str, Callable[[], Any]] = {}
    for label, module in (("hand-written", security),
                          ("flask-cors 6.0.5", _module_at(FLASK_CORS, "service/api/security.py", "cors_library"))):
        app = Flask(label)
        app.add_url_rule("/v2/health/live", "live", lambda: "")
        module.install(app, config)
        for origin in ("https://app.example", "https://evil.example"):
            ctx = app.test_request_context("/v2/health/live", headers={"Origin": origin})
            hooks[f"{label}, Origin {origin.split('//')[1]}"] = hook(ctx, module._after)
        client = app.test_client()
        requests[f"{label}, Origin app.example"] = (
            lambda client=client: client.get("/v2/health/live", headers={"Origin": "https://app.example"}))
    hooks["a fresh Response in the request context alone"] = hook(ctx, lambda response: response)
    show("CORS on: the after-request hook (fresh Response each; CORS off, both return at once)",
         medians(hooks, 3000, rounds), "hand-written, Origin app.example")
    show("CORS on: a whole GET through Flask's test client (an empty route, no other hooks)",
         medians(requests, 1000, rounds), "hand-written, Origin app.example")


# --------------------------------------------------------------------------- JSON log lines

def bench_logs(rounds: int) -> None:
    from pythonjsonlogger.json import JsonFormatter as PjlJson
    from pythonjsonlogger.orjson import OrjsonFormatter

    from service.ops import context, logs

    fields = {"request_id": "3f2a9c1e-7b4d-4e0f-9a65-0c1d2e3f4a5b", "method": "POST",
              "path": "/v1/models/fashion_mnist:predict", "route": "/v1/models/<name>:predict", "status": 200,
              "duration_ms": 1.234, "model": "fashion_mnist", "version": 1, "bytes_in": 6321, "bytes_out": 512,
              "remote_addr": "10.0.0.7"}
    ours = logs.JsonFormatter()
    access_ours = logs.ACCESS.makeRecord(logs.ACCESS.name, logging.INFO, __file__, 0, "access", (), None,
                                         extra={"fields": fields})
    # python-json-logger takes the fields as the record's own attributes (extra, flattened).
    access_pjl = logs.ACCESS.makeRecord(logs.ACCESS.name, logging.INFO, __file__, 0, "access", (), None,
                                        extra=fields)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        error = logging.getLogger("service.app").makeRecord(
            "service.app", logging.ERROR, __file__, 1, "unhandled error on %s", ("GET /x",), sys.exc_info())

    class RequestId(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            ctx = context.current()
            if ctx is not None:
                record.request_id = ctx.request_id
            return True

    def pjl(kind: type) -> logging.Formatter:
        # The same names and the same time format as ours: python-json-logger's own timestamp is
        # datetime.isoformat (microseconds, +00:00), so formatTime is ours.
        formatter = kind("{asctime}{levelname}{name}{process}{message}", style="{", rename_fields={
            "asctime": "time", "levelname": "level", "name": "logger", "process": "pid", "exc_info": "exception"})
        formatter.formatTime = lambda record, datefmt=None: logs._timestamp(record.created)
        return formatter

    pjl_json, pjl_orjson = pjl(PjlJson), pjl(OrjsonFormatter)
    request_id = RequestId()
    print("\nJSON log lines, one of each:")
    for name, formatter, record in (("ours", ours, access_ours), ("python-json-logger (orjson)", pjl_orjson,
                                                                     access_pjl)):
        print(f"  {name}: {formatter.format(record)}")
    show("JSON log lines: an access line", medians({
        "ours (JsonFormatter, orjson)": lambda: ours.format(access_ours),
        "python-json-logger 4.2.0 JsonFormatter": lambda: pjl_json.format(access_pjl),
        "python-json-logger 4.2.0 OrjsonFormatter": lambda: pjl_orjson.format(access_pjl),
    }, 5000, rounds), "ours (JsonFormatter, orjson)")
    context.begin(context.RequestContext("req-err", 0.0))
    try:
        show("JSON log lines: an app error with exc_info, during a request", medians({
            "ours (JsonFormatter, orjson)": lambda: ours.format(error),
            "python-json-logger 4.2.0 OrjsonFormatter": lambda: request_id.filter(error) and pjl_orjson.format(error),
        }, 2000, rounds), "ours (JsonFormatter, orjson)")
    finally:
        context.end()


# --------------------------------------------------------------------------- multipart

def _uploads() -> dict[str, bytes]:
    from training.idx import IMAGES_MAGIC, read_idx

    images = read_idx(ROOT / "tests/fixtures/fashion_mnist_test_500/t10k-images-idx3-ubyte.gz", IMAGES_MAGIC)
    png = io.BytesIO()
    Image.fromarray(images[0]).save(png, format="PNG")
    # A photo-like 200 KB JPEG: smooth colour gradients under sensor-like noise.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:600, 0:800]
    photo = np.stack([x * 255 / 800, y * 255 / 600, (x + y) * 255 / 1400], axis=-1)
    photo = np.clip(photo + rng.normal(0, 10, photo.shape), 0, 255).astype(np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(photo).save(jpeg, format="JPEG", quality=70)
    return {"28x28 PNG": png.getvalue(), f"{len(jpeg.getvalue()) // 1024} KB JPEG": jpeg.getvalue()}


def _bodies(data: bytes, count: int) -> list[tuple[bytes, str]]:
    """`count` upload bodies, each with its own random boundary, as requests/urllib3 make them."""
    from urllib3 import encode_multipart_formdata

    return [encode_multipart_formdata({"image": ("item.png", data, "image/png")}) for _ in range(count)]


def _werkzeug(body: bytes, content_type: str) -> list[bytes]:
    from werkzeug.formparser import MultiPartParser
    from werkzeug.http import parse_options_header

    boundary = parse_options_header(content_type)[1]["boundary"].encode()
    _, files = MultiPartParser().parse(io.BytesIO(body), boundary, len(body))
    return [file.read() for file in files.values()]


def _python_multipart(body: bytes, content_type: str) -> list[bytes]:
    from python_multipart import MultipartParser
    from python_multipart.multipart import parse_options_header

    boundary = parse_options_header(content_type)[1][b"boundary"]
    chunks: list[bytes] = []
    found: list[bytes] = []
    parser = MultipartParser(boundary, callbacks={
        "on_part_begin": chunks.clear,
        "on_part_data": lambda data, start, end: chunks.append(data[start:end]),
        "on_part_end": lambda: found.append(b"".join(chunks)),
    })
    parser.write(body)
    parser.finalize()
    return found


def _ours(body: bytes, content_type: str) -> list[bytes]:
    from service.codecs.multipart import parse_multipart

    return [part.data for part in parse_multipart(body, content_type, 32)]


def _refuses(parse: Callable[[bytes, str], list[bytes]], body: bytes, content_type: str) -> bool:
    try:
        parse(body, content_type)
    except Exception:   # whatever each library raises for a bad body
        return True
    return False


def _cycling(parse: Callable[[bytes, str], list[bytes]], bodies: list[tuple[bytes, str]]) -> Callable[[], Any]:
    """Each call parses the next body: a new boundary every time, as in production."""
    turn = iter(range(10**12))
    return lambda: parse(*bodies[next(turn) % len(bodies)])


def bench_multipart(rounds: int) -> None:
    parsers = {"ours (split on the delimiter)": _ours, "Werkzeug 3.1.9 MultiPartParser": _werkzeug,
               "python-multipart 0.0.34 MultipartParser": _python_multipart}
    for label, data in _uploads().items():
        # More distinct boundaries than re's cache of compiled patterns (512) holds, as in production.
        bodies = _bodies(data, 600)
        for name, parse in parsers.items():
            assert parse(*bodies[0]) == [data], name
        figures = medians({name: _cycling(parse, bodies) for name, parse in parsers.items()}, 300, rounds)
        show(f"multipart: one upload of a {label} ({len(bodies[0][0])} bytes of body)", figures,
             "ours (split on the delimiter)")
    body, content_type = _bodies(b"data", 1)[0]
    malformed = {"truncated": body[:-10],
                 "no Content-Disposition": body.replace(b"Content-Disposition", b"Content-Whatever"),
                 "no boundary anywhere": b"no boundary anywhere"}
    print("\nmultipart: refuses the malformed bodies of tests/unit/test_multipart.py")
    for name, parse in parsers.items():
        print(f"  {name:<44} " + ", ".join(f"{case}: {'yes' if _refuses(parse, bad, content_type) else 'NO'}"
                                            for case, bad in malformed.items()))


# --------------------------------------------------------------------------- settings

def _import_ms(statement: str, runs: int) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                  text=True, cwd=ROOT).stdout) * 1000 for _ in range(runs))


def bench_settings(runs: int) -> None:
    print("\nsettings: import time in a fresh interpreter (median of", runs, "runs)")
    for statement in ("import service.config", "import pydantic", "import pydantic_settings"):
        print(f"  {statement:<44} {_import_ms(statement, runs):9.1f} ms")
    from pydantic import PositiveInt, ValidationError
    from pydantic_settings import BaseSettings

    from service.config import Config

    class Settings(BaseSettings):
        max_instances: PositiveInt = 256

    print("settings: what a bad MAX_INSTANCES says at start")
    for raw in ("many", "0"):
        try:
            Config.from_env({"MAX_INSTANCES": raw})
        except ValueError as exc:
            print(f"  ours:              {exc}")
        os.environ["MAX_INSTANCES"] = raw
        try:
            Settings()
        except ValidationError as exc:
            print("  pydantic-settings: " + str(exc).replace("\n", "\n                     "))
        finally:
            del os.environ["MAX_INSTANCES"]


# --------------------------------------------------------------------------- Open Inference Protocol types

def _wheel_module(wheel: Path, package_dir: str, name: str) -> types.ModuleType:
    """A package (or single module) from inside a wheel, without its parent package's __init__."""
    target = Path("/tmp/bench_libraries") / wheel.stem
    if not target.exists():
        zipfile.ZipFile(wheel).extractall(target)
    path = target / package_dir
    init = path / "__init__.py" if path.is_dir() else path
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(path)] if path.is_dir() else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def bench_v2(rounds: int, wheels: Path | None) -> None:
    from service.codecs import v2

    pixels = np.random.default_rng(0).random(784).astype(np.float32).tolist()
    body = orjson.dumps({"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32", "data": pixels}]})
    candidates: dict[str, Callable[[], Any]] = {"ours (orjson.loads + v2.parse_request)":
                                                lambda: v2.parse_request(orjson.loads(body))}
    found = sorted(wheels.glob("*.whl")) if wheels else []
    for wheel in found:
        if wheel.name.startswith("mlserver-"):
            types_ = _wheel_module(wheel, "mlserver/types", "mlserver_types")
            candidates[f"{wheel.stem.split('-py')[0]} types.InferenceRequest"] = (
                lambda model=types_.InferenceRequest: model.model_validate_json(body))
        elif wheel.name.startswith("kserve-"):
            rest = _wheel_module(wheel, "kserve/protocol/rest/v2_datamodels.py", "kserve_v2_datamodels")
            candidates[f"{wheel.stem.split('-py')[0]} v2_datamodels.InferenceRequest"] = (
                lambda model=rest.InferenceRequest: model.model_validate_json(body))
    if not found:
        print("\nOIP types: no wheels given (--wheels DIR, see the docstring); ours alone:")
    show("OIP types: parse and check a 784-float FP32 request (6.6 KB of JSON)",
         medians(candidates, 2000, rounds), "ours (orjson.loads + v2.parse_request)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--wheels", type=Path, help="folder with the mlserver and kserve wheels")
    args = parser.parse_args()
    bench_cors(args.rounds)
    bench_logs(args.rounds)
    bench_multipart(args.rounds)
    bench_settings(args.rounds)
    bench_v2(args.rounds, args.wheels)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
