"""What the operations hooks cost per request: request id, context, metrics, JSON access line.

Runs the hooks of service/middleware/observe.py the way Flask does for one inference request
(before_request, the core's two notes, after_request, teardown) inside a pushed request
context, against a baseline that makes the same calls without the hooks (the notes are then
no-ops). Timed in CPU time (time.process_time), best of several rounds, so other processes
on a busy machine do not count. The access line is formatted and written to /dev/null.
Multi-process mode (what gunicorn runs: each sample an mmap write) needs
PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported, so it runs in a subprocess.

    python loadtest/overhead.py                    # both modes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def measure(iterations: int = 20000, rounds: int = 7) -> dict[str, Any]:
    """Microseconds of CPU per request for the hooks, in this process's metrics mode."""
    from types import SimpleNamespace

    from flask import Flask, Response

    from service.middleware import observe as hooks
    from service.ops import context, logs, metrics

    servable: Any = SimpleNamespace(name="iris", version=1)
    app = Flask("overhead")
    app.add_url_rule("/api/models/<name>/predict", "predict", lambda name: Response(b"{}"), methods=["POST"])
    body = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
    response = Response(b'{"predictions": [[0.98, 0.01, 0.01]]}', mimetype="application/json")

    def baseline(n: int) -> None:
        for _ in range(n):
            context.note_servable(servable)
            context.note_inference(servable, time.perf_counter())

    def hooked(n: int) -> None:
        for _ in range(n):
            hooks._before()
            context.note_servable(servable)
            context.note_inference(servable, time.perf_counter())
            hooks._after(response)
            hooks._teardown(None)

    def best(run: Any, n: int) -> float:
        times = []
        for _ in range(rounds):
            started = time.process_time()
            run(n)
            times.append(time.process_time() - started)
        return min(times) / n * 1e6

    access = logs.ACCESS
    saved = (access.handlers, access.level, access.propagate, access.disabled)
    results: dict[str, Any] = {"multiprocess": metrics.MULTIPROCESS, "iterations": iterations, "rounds": rounds}
    try:
        with open(os.devnull, "w") as devnull:
            handler = logging.StreamHandler(devnull)
            handler.setFormatter(logs.JsonFormatter())
            access.handlers, access.propagate = [handler], False
            access.setLevel(logging.INFO)
            for name, request_id, log_on in (("total_us", "bench-1", True), ("new_request_id_us", None, True),
                                             ("without_access_log_us", "bench-1", False)):
                headers = {"Content-Type": "application/json"} | ({"X-Request-ID": request_id} if request_id else {})
                access.disabled = not log_on
                with app.test_request_context("/api/models/iris/predict", method="POST", data=body, headers=headers):
                    hooked(1000)  # warm: label children created, caches filled
                    results[name] = round(best(hooked, iterations) - best(baseline, iterations), 1)
    finally:
        access.handlers, _, access.propagate, access.disabled = saved
        access.setLevel(saved[1])
    return results


def measure_multiprocess(iterations: int = 20000, rounds: int = 7) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="overhead-metrics-") as folder:
        output = subprocess.run(
            [sys.executable, __file__, "--json", "--iterations", str(iterations), "--rounds", str(rounds)],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}, capture_output=True, check=True, cwd=ROOT,
        ).stdout
    return json.loads(output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="this process's metrics mode only, as JSON")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.iterations, args.rounds)))
        return 0
    for result in (measure(args.iterations, args.rounds), measure_multiprocess(args.iterations, args.rounds)):
        mode = "multi-process (gunicorn)" if result["multiprocess"] else "single process"
        print(f"{mode:>25}: {result['total_us']:5.1f} us per request "
              f"({result['new_request_id_us']:5.1f} us when the id is made up, "
              f"{result['without_access_log_us']:5.1f} us without the access line)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
