"""`make bench`: throughput and latency of the hot paths against the server's own ceiling.

Starts the real server once (gunicorn, service/gunicorn_conf.py, the same settings for every
row) and drives it from a separate process, wrk if installed (Lua scripts in loadtest/wrk/,
bodies prepared in advance), else locust. For each request and connection count it reports
req/s, p50, p99, errors (non-2xx responses + socket errors), the share of the ceiling
(`GET /v2/health/live` at the same connections, in the same round: every request runs in
turn, three rounds by default, and a row gives the medians) and the proportional set size
(PSS) of the gunicorn workers, and checks the reference targets:

    ceiling        GET /v2/health/live                                  0 errors, PSS <= 350 MiB per worker
    iris           POST /v1/models/iris:predict, 1 instance            share >= 0.80, p99 < 25 ms at 64 connections
    fashion_json   POST /v1/models/fashion_mnist:predict, 784 numbers  share >= 0.65, p99 < 30 ms at 64 connections
    png_upload     POST /api/models/fashion_mnist/predict, 28x28 PNG   share >= 0.50, p99 < 40 ms at 64 connections
                   (and 0 errors, PSS <= 350 MiB per worker for every row)

Writes <out>/bench.json and <out>/bench.md. Figures depend on the machine and on what else runs
on it: the load average at the start is recorded with them.

    python loadtest/bench.py                                   # ~3 minutes
    python loadtest/bench.py --duration 5 --connections 16 --requests ceiling,iris
    python loadtest/bench.py --host http://127.0.0.1:8501 --server-pid <gunicorn master pid>
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402
from PIL import Image  # noqa: E402

from loadtest.faults import wait_for_workers  # noqa: E402
from loadtest.server import MODELS, GunicornServer, child_pids, pss_mib  # noqa: E402
from training.idx import IMAGES_MAGIC, read_idx  # noqa: E402

HERE = Path(__file__).resolve().parent
WRK_DIR = HERE / "wrk"
PSS_LIMIT_MIB = 350.0
P99_AT_CONNECTIONS = 64
BOUNDARY = "keras-serving-bench-9f3c"


@dataclass(frozen=True)
class Target:
    share: float      # of the ceiling's req/s at the same connections
    p99_ms: float     # at P99_AT_CONNECTIONS

    def text(self) -> str:
        return f"share >= {self.share:.2f}, p99 < {self.p99_ms:g} ms @{P99_AT_CONNECTIONS}"


@dataclass(frozen=True)
class BenchRequest:
    key: str
    label: str
    method: str
    path: str
    content_type: str | None = None
    target: Target | None = None
    body: str | None = None       # key of the request body in prepare_bodies() (default: key)

    @property
    def body_key(self) -> str:
        return self.body or self.key


REQUESTS = {
    r.key: r for r in (
        BenchRequest("ceiling", "ceiling: GET /v2/health/live", "GET", "/v2/health/live"),
        BenchRequest("iris", "iris JSON, 1 instance :predict", "POST", "/v1/models/iris:predict",
                     "application/json", Target(0.80, 25)),
        BenchRequest("fashion_json", "fashion_mnist JSON 784 numbers :predict", "POST",
                     "/v1/models/fashion_mnist:predict", "application/json", Target(0.65, 30)),
        BenchRequest("png_upload", "fashion_mnist 28x28 PNG upload", "POST", "/api/models/fashion_mnist/predict",
                     f"multipart/form-data; boundary={BOUNDARY}", Target(0.50, 40)),
        # The same two requests answered by version 1 (label `lesson`, the lesson's MLP): version 2, the
        # default, may cost at most 10% of their throughput (README, "Real photos").
        BenchRequest("fashion_json_lesson", "fashion_mnist JSON, version 1 (lesson)", "POST",
                     "/v1/models/fashion_mnist/labels/lesson:predict", "application/json", body="fashion_json"),
        BenchRequest("png_upload_lesson", "fashion_mnist PNG upload, version 1 (lesson)", "POST",
                     "/api/models/fashion_mnist/labels/lesson/predict", f"multipart/form-data; boundary={BOUNDARY}",
                     body="png_upload"),
    )
}
# (default row, version-1 row): req/s of the default version as a share of version 1's, per connection count
VERSION_PAIRS = (("fashion_json", "fashion_json_lesson"), ("png_upload", "png_upload_lesson"))


# --------------------------------------------------------------------------- request bodies, made in advance

def prepare_bodies(folder: Path) -> dict[str, Path]:
    """One real instance each: the first iris row and the first Fashion-MNIST test image."""
    with (ROOT / "training" / "data" / "iris.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    iris = [float(row[name]) for name in ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")]
    image = read_idx(ROOT / "tests" / "fixtures" / "fashion_mnist_test_500" / "t10k-images-idx3-ubyte.gz",
                     IMAGES_MAGIC)[0]
    png = io.BytesIO()
    Image.fromarray(image, "L").save(png, format="PNG")
    multipart = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="0.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + png.getvalue() + f"\r\n--{BOUNDARY}--\r\n".encode()
    bodies = {
        "iris": json.dumps({"instances": [iris]}).encode(),
        "fashion_json": json.dumps({"instances": [image.tolist()]}).encode(),
        "png_upload": multipart,
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, body in bodies.items():
        paths[key] = folder / f"{key}.body"
        paths[key].write_bytes(body)
    return paths


def check_answer(url: str, request: BenchRequest, body: Path | None) -> str | None:
    """One request before the load: the answer must be right, or the numbers mean nothing."""
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    response = requests.request(request.method, url + request.path, data=body.read_bytes() if body else None,
                                headers=headers, timeout=30)
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    answer = response.json()
    if request.key == "ceiling":
        return None if answer == {"live": True} else f"unexpected answer {answer}"
    if request.body_key == "png_upload":
        if not isinstance(answer.get("version"), int) or len(answer.get("predictions", [])) != 1:
            return f"unexpected answer {str(answer)[:300]}"
        probabilities = list(answer["predictions"][0]["probabilities"].values())
    else:
        predictions = answer.get("predictions", [])
        probabilities = predictions[0] if len(predictions) == 1 else []
    expected = 3 if request.body_key == "iris" else 10
    row = np.asarray(probabilities, dtype=float)
    if row.shape != (expected,) or abs(row.sum() - 1) > 1e-3:
        return f"expected {expected} probabilities, got {str(answer)[:300]}"
    return None


# --------------------------------------------------------------------------- load generators

def run_wrk(url: str, request: BenchRequest, body: Path | None, connections: int, duration: float,
            threads: int) -> dict[str, Any]:
    script = WRK_DIR / ("post.lua" if body else "get.lua")
    command = ["wrk", "-t", str(max(1, min(threads, connections))), "-c", str(connections),
               "-d", f"{max(1, round(duration))}s", "--timeout", "10s", "-s", str(script), url + request.path]
    if body:
        command += ["--", str(body), request.content_type or "application/octet-stream"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
    report = json.loads(line.removeprefix("BENCH_RESULT "))
    errors = report["errors"]
    return {
        "rps": report["requests"] / (report["duration_us"] / 1e6),
        "requests": report["requests"],
        "p50_ms": report["p50_us"] / 1000, "p99_ms": report["p99_us"] / 1000,
        "errors": sum(errors.values()),
        "error_detail": {"non_2xx": errors["status"], **{k: v for k, v in errors.items() if k != "status"}},
    }


def run_locust(url: str, request: BenchRequest, body: Path | None, connections: int, duration: float,
               scratch: Path) -> dict[str, Any]:
    prefix = scratch / f"locust_{request.key}_{connections}"
    env = {**os.environ, "BENCH_METHOD": request.method, "BENCH_PATH": request.path,
           "BENCH_BODY_FILE": str(body or ""), "BENCH_CONTENT_TYPE": request.content_type or ""}
    command = [sys.executable, "-m", "locust", "-f", str(HERE / "bench_locustfile.py"), "--headless",
               "--host", url, "--users", str(connections), "--spawn-rate", str(connections),
               "--run-time", f"{max(1, round(duration))}s", "--csv", str(prefix), "--only-summary",
               "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    final = Path(f"{prefix}_final.json")
    if result.returncode != 0 or not final.exists():
        raise RuntimeError(f"locust failed ({result.returncode}): {result.stderr[-2000:]}")
    total = json.loads(final.read_text())["total"]
    return {"rps": total["rps"], "requests": total["requests"], "p50_ms": float(total["p50_ms"]),
            "p99_ms": float(total["p99_ms"]), "errors": total["failures"],
            "error_detail": {"failed": total["failures"]}}


# --------------------------------------------------------------------------- the table

def judge(row: dict[str, Any], request: BenchRequest) -> list[str]:
    problems = []
    if row["errors"]:
        problems.append(f"{row['errors']} errors")
    if row["pss_mib_max"] is not None and row["pss_mib_max"] > PSS_LIMIT_MIB:
        problems.append(f"PSS {row['pss_mib_max']:.0f} MiB > {PSS_LIMIT_MIB:g}")
    target = request.target
    if target is not None:
        if row["share_of_ceiling"] is not None and row["share_of_ceiling"] < target.share:
            problems.append(f"share {row['share_of_ceiling']:.2f} < {target.share:.2f}")
        if row["connections"] == P99_AT_CONNECTIONS and row["p99_ms"] >= target.p99_ms:
            problems.append(f"p99 {row['p99_ms']:.1f} >= {target.p99_ms:g} ms")
    return problems


COLUMNS = ("request", "conns", "req/s", "p50 ms", "p99 ms", "errors", "share of ceiling", "PSS MiB (max worker)",
           "target", "result")


def table_cells(row: dict[str, Any]) -> list[str]:
    share = row["share_of_ceiling"]
    pss = row["pss_mib_max"]
    return [row["label"], str(row["connections"]), f"{row['rps']:.0f}", f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}", str(row["errors"]), "n/a" if share is None else f"{share:.2f}",
            "n/a" if pss is None else f"{pss:.0f}", row["target"], row["result"]]


def text_table(rows: list[dict[str, Any]]) -> str:
    cells = [list(COLUMNS)] + [table_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i in (0, 8, 9) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths,
                                                                                                strict=True)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    server = ("an existing server" if meta["gunicorn_workers"] is None else
              f"gunicorn {meta['gunicorn_workers']} workers (gevent, service/worker.py)")
    lines = [
        f"Benchmark {meta['date']}: {meta['tool']}, {meta['duration_s']:g} s per row; {server}; "
        f"{meta['cpus']} CPUs, load average {meta['loadavg_start'][0]:.2f} at the start.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if i in (0, 8, 9) else "---:" for i in range(len(COLUMNS))) + "|",
    ]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    pss = ", ".join(f"{pid}: {mib:.0f} MiB" for pid, mib in meta["workers_pss_mib"].items()) or "n/a"
    lines += ["", f"Worker PSS after the run: {pss}; master: {meta['master_pss_mib']} MiB.", ""]
    if meta["default_vs_lesson"]:
        lines += [ratio_text(meta["default_vs_lesson"]), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=12.0,
                        help="seconds per row, split over the rounds (default 12)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over all requests; shares are the median of the rounds' (default 3)")
    parser.add_argument("--connections", default="16,64", help="comma-separated connection counts (default 16,64)")
    parser.add_argument("--requests", default=",".join(REQUESTS),
                        help=f"comma-separated subset of {', '.join(REQUESTS)} (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, WEB_CONCURRENCY (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of unrecorded load per request, all before the first row (default 2; 0: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="folder for bench.json, bench.md")
    parser.add_argument("--host", help="benchmark a running server instead of starting one")
    parser.add_argument("--server-pid", type=int, help="with --host: its gunicorn master's pid, for PSS")
    parser.add_argument("--tool", choices=("auto", "wrk", "locust"), default="auto",
                        help="load generator (default: wrk if installed, else locust)")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk threads (default 1: leaves the cores to the server)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a row misses its target")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    args.requests = [r.strip() for r in args.requests.split(",") if r.strip()]
    unknown = sorted(set(args.requests) - set(REQUESTS))
    if unknown or not args.requests:
        parser.error(f"--requests: unknown {unknown}; choose from {', '.join(REQUESTS)}")
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds must be at least 1 and --duration positive")
    if not args.connections or min(args.connections) < 1:
        parser.error("--connections: give positive numbers, e.g. 16,64")
    if args.tool == "auto":
        args.tool = "wrk" if shutil.which("wrk") else "locust"
    elif args.tool == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [REQUESTS[key] for key in REQUESTS if key in args.requests]   # the ceiling first
    server = None
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch_name:
        scratch = Path(scratch_name)
        bodies = prepare_bodies(scratch / "bodies")
        try:
            if args.host:
                url, master_pid = args.host.rstrip("/"), args.server_pid
            else:
                server = GunicornServer({
                    "WEB_CONCURRENCY": str(args.workers),
                    "MODEL_BASE_PATH": os.environ.get("MODEL_BASE_PATH", str(MODELS)),
                    "ACCESS_LOG": "", "LOG_LEVEL": "warning",
                }, args.out / "bench_server.log")
                print(f"starting gunicorn ({args.workers} workers) on {server.url} ...",
                      flush=True)
                server.wait_ready()
                wait_for_workers(server, args.workers)   # readiness is the first worker's only
                url, master_pid = server.url, server.process.pid
            rows, meta = bench(args, url, master_pid, chosen, bodies, scratch)
        finally:
            if server is not None:
                server.stop()

    print()
    print(text_table(rows))
    pss = ", ".join(f"{pid}: {mib:.0f} MiB" for pid, mib in meta["workers_pss_mib"].items()) or "n/a"
    print(f"\nworker PSS after the run: {pss}; master {meta['master_pss_mib']} MiB; "
          f"load average at the start {meta['loadavg_start'][0]:.2f} on {meta['cpus']} CPUs "
          "(other work on the machine lowers every figure)")
    if meta["default_vs_lesson"]:
        print(ratio_text(meta["default_vs_lesson"]))
    (args.out / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "bench.md").write_text(markdown(meta, rows))
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    failed = [r for r in rows if r["problems"]]
    return 1 if args.strict and failed else 0


def bench(args: argparse.Namespace, url: str, master_pid: int | None, chosen: list[BenchRequest],
          bodies: dict[str, Path], scratch: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "url": url, "tool": _tool_version(args.tool),
        "duration_s": args.duration, "connections": args.connections,
        "gunicorn_workers": None if args.host else args.workers,
        "cpus": os.cpu_count(), "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "loadavg_start": list(os.getloadavg()), "pss_limit_mib": PSS_LIMIT_MIB,
    }

    def load(request: BenchRequest, connections: int, seconds: float) -> dict[str, Any]:
        body = bodies.get(request.body_key)
        if args.tool == "wrk":
            return run_wrk(url, request, body, connections, seconds, args.wrk_threads)
        return run_locust(url, request, body, connections, seconds, scratch)

    def workers_pss() -> dict[str, float]:
        if master_pid is None:
            return {}
        found = {str(pid): pss_mib(pid) for pid in child_pids(master_pid)}
        return {pid: round(mib, 1) for pid, mib in found.items() if mib is not None}

    rows: list[dict[str, Any]] = []
    for request in chosen:
        problem = check_answer(url, request, bodies.get(request.body_key))
        if problem:
            raise SystemExit(f"{request.label}: wrong answer before the load, not benchmarking: {problem}")
        if args.warmup > 0:
            load(request, max(args.connections), args.warmup)

    # Rounds: every request in turn, `rounds` times, so a machine that gets slower or faster
    # during the run moves the ceiling and the requests alike; a share is the median of the
    # rounds' shares, each against the same round's ceiling.
    seconds = args.duration / args.rounds
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for connections in args.connections:
        for round_number in range(1, args.rounds + 1):
            ceiling_rps = None
            for request in chosen:
                print(f"{request.label} at {connections} connections, round {round_number}/{args.rounds}, "
                      f"{seconds:g} s ...", flush=True)
                run = load(request, connections, seconds)
                if request.key == "ceiling":
                    ceiling_rps = run["rps"]
                run["share"] = run["rps"] / ceiling_rps if ceiling_rps else None
                runs.setdefault((request.key, connections), []).append(run)
        pss = workers_pss()
        for request in chosen:
            rows.append(_row(request, connections, runs[request.key, connections], pss))
    meta["workers_pss_mib"] = workers_pss()
    # TensorFlow is imported in the master before the fork: its pages are shared with the workers.
    master = pss_mib(master_pid) if master_pid is not None else None
    meta["master_pss_mib"] = None if master is None else round(master, 1)
    meta["loadavg_end"] = list(os.getloadavg())
    meta["default_vs_lesson"] = version_ratios(rows)
    return rows, meta


def _row(request: BenchRequest, connections: int, runs: list[dict[str, Any]],
         pss: dict[str, float]) -> dict[str, Any]:
    """One table row from a request's rounds: medians, except p99 (the worst round's) and errors (all)."""
    shares = [r["share"] for r in runs if r["share"] is not None]
    row: dict[str, Any] = {
        "request": request.key, "label": request.label, "method": request.method, "path": request.path,
        "connections": connections, "rounds": len(runs),
        "rps": float(np.median([r["rps"] for r in runs])),
        "requests": sum(r["requests"] for r in runs),
        "p50_ms": float(np.median([r["p50_ms"] for r in runs])),
        "p99_ms": max(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "error_detail": [r["error_detail"] for r in runs],
        "rounds_rps": [round(r["rps"], 1) for r in runs],
        "share_of_ceiling": float(np.median(shares)) if shares else None,
        "pss_mib_workers": pss,
        "pss_mib_max": max(pss.values()) if pss else None,
        "target": request.target.text() if request.target else f"0 errors, PSS <= {PSS_LIMIT_MIB:g} MiB",
    }
    row["problems"] = judge(row, request)
    row["result"] = "FAIL: " + "; ".join(row["problems"]) if row["problems"] else "pass"
    return row


def version_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """`<request>@<connections>`: req/s of the default version over version 1's (goal: at least 0.90)."""
    rps = {(r["request"], r["connections"]): r["rps"] for r in rows}
    return {f"{default}@{connections}": round(rps[default, connections] / rps[lesson, connections], 3)
            for default, lesson in VERSION_PAIRS for (key, connections) in rps
            if key == default and rps.get((lesson, connections))}


def ratio_text(ratios: dict[str, float]) -> str:
    """The comparison line under the table (called only when both versions were measured)."""
    pairs = ", ".join(f"{key} {value:.2f}" for key, value in ratios.items())
    return f"Default version (2) req/s as a share of version 1's (goal >= 0.90): {pairs}."


def _tool_version(tool: str) -> str:
    if tool == "wrk":
        result = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        first = (result.stdout or result.stderr).strip().splitlines()
        return first[0].split(" [")[0] if first else "wrk"
    # Not `import locust` here: it would monkey-patch this process for gevent.
    from importlib.metadata import version

    return f"locust {version('locust')}"


if __name__ == "__main__":
    sys.exit(main())
