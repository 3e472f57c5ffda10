"""`make loadtest`: start the real server, run the locust suite headless, judge the result.

    python loadtest/run_locust.py                                  # starts gunicorn, 20 users, 30 s
    python loadtest/run_locust.py --host http://10.0.0.5:8501      # an existing server
    python loadtest/run_locust.py --processes 2                    # master + 2 local worker processes
    python loadtest/run_locust.py --master --expect-workers 4      # master; workers on other machines:
    python loadtest/run_locust.py --worker --master-host 10.0.0.9  # ... one of them
    python loadtest/run_locust.py -- IrisUser                      # after --: passed to locust as is

Writes locust's CSV (<out>/locust_stats.csv, _failures.csv, _exceptions.csv, _stats_history.csv)
and HTML (<out>/locust.html) reports, plus <out>/locust_final.json, the totals at shutdown that
the verdict uses (locust rewrites its CSV once a second, so the CSV may miss the last second).
Exits non-zero when any request failed (status, shape or value of an answer), when no request
was made, or when the aggregated p99 is above --p99-ms.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.server import MODELS, GunicornServer  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", "-u", type=int, default=20, help="concurrent users (default 20)")
    parser.add_argument("--spawn-rate", "-r", type=float, default=10, help="users started per second (default 10)")
    parser.add_argument("--run-time", "-t", default="30s", help="e.g. 30s, 2m (default 30s)")
    parser.add_argument("--host", help="URL of a running server; without it a gunicorn is started on a free port")
    parser.add_argument("--p99-ms", type=float, default=500.0,
                        help="fail when the aggregated 99th percentile is above this (default 500 ms)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "locust",
                        help="folder for the CSV and HTML reports (default reports/locust)")
    parser.add_argument("--server-workers", type=int, default=2, help="WEB_CONCURRENCY of the started gunicorn")
    dist = parser.add_argument_group("distributed locust")
    dist.add_argument("--processes", type=int,
                      help="fork this many local locust workers under one master (-1: one per core)")
    dist.add_argument("--master", action="store_true", help="be the master; workers connect to it")
    dist.add_argument("--expect-workers", type=int, default=1, help="with --master: wait for this many workers")
    dist.add_argument("--master-bind-port", type=int, default=5557, help="with --master: port for the workers")
    dist.add_argument("--worker", action="store_true", help="be a worker of the master at --master-host")
    dist.add_argument("--master-host", default="127.0.0.1", help="with --worker: the master's address")
    dist.add_argument("--master-port", type=int, default=5557, help="with --worker: the master's port")
    parser.add_argument("locust_args", nargs="*", help="after --: extra locust arguments, e.g. user class names")
    args = parser.parse_args(argv)
    if args.master and args.worker:
        parser.error("--master and --worker exclude each other")
    if args.processes is not None and args.worker:
        parser.error("--processes forks workers for a master; a --worker is one already")
    return args


def locust_command(args: argparse.Namespace, host: str | None) -> list[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    if args.worker:
        # Users, run time and reports come from the master.
        return [*command, "--worker", "--master-host", args.master_host, "--master-port", str(args.master_port),
                *args.locust_args]
    prefix = args.out / "locust"
    command += [
        "--headless", "--host", host or "", "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", args.run_time, "--csv", str(prefix), "--html", str(args.out / "locust.html"),
        "--only-summary", "--stop-timeout", "5", "--exit-code-on-error", "1",
    ]
    if args.processes is not None:
        command += ["--processes", str(args.processes)]
    if args.master:
        command += ["--master", "--expect-workers", str(args.expect_workers),
                    "--master-bind-port", str(args.master_bind_port)]
    return [*command, *args.locust_args]


def final_stats(out: Path) -> dict[str, Any] | None:
    """The numbers at shutdown: locustfile.py's `locust_final.json`, else the Aggregated row of the CSV."""
    final = out / "locust_final.json"
    if final.exists():
        return json.loads(final.read_text())["total"]
    stats = out / "locust_stats.csv"
    if not stats.exists():
        return None
    with stats.open(newline="") as handle:
        total = {row["Name"]: row for row in csv.DictReader(handle)}.get("Aggregated")
    if total is None:
        return None
    number = (lambda v: float(v) if v not in ("", "N/A") else float("nan"))  # noqa: E731
    return {"requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
            "rps": number(total["Requests/s"]), "p50_ms": number(total["50%"]), "p99_ms": number(total["99%"])}


def judge(out: Path, p99_limit_ms: float, locust_rc: int) -> list[str]:
    """Reasons to fail: locust's exit code, failed requests, no requests, p99 above the limit."""
    total = final_stats(out)
    if total is None:
        return [f"locust wrote no statistics to {out} (exit code {locust_rc})"]
    requests, failures, p99 = total["requests"], total["failures"], float(total["p99_ms"])
    print(f"\nAggregated: {requests} requests, {failures} failed, {total['rps']:.1f} req/s, "
          f"p50 {total['p50_ms']:g} ms, p99 {p99:g} ms (limit {p99_limit_ms:g} ms)")
    reasons = []
    if locust_rc != 0:
        reasons.append(f"locust exited with {locust_rc}")
    if requests == 0:
        reasons.append("no request was made")
    if failures:
        reasons.append(f"{failures} failed request(s); see {out / 'locust_failures.csv'}")
    if failures or locust_rc:
        failures_csv = out / "locust_failures.csv"
        if failures_csv.exists():
            with failures_csv.open(newline="") as handle:
                for row in list(csv.DictReader(handle))[:10]:
                    print(f"  {row['Occurrences']:>6} x {row['Method']} {row['Name']}: {row['Error'][:300]}")
    if requests and not p99 <= p99_limit_ms:
        reasons.append(f"aggregated p99 {p99:g} ms is above {p99_limit_ms:g} ms")
    return reasons


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return subprocess.call(locust_command(args, None), cwd=ROOT)

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("locust*"):
        old.unlink()
    server = None
    host = args.host.rstrip("/") if args.host else None
    try:
        if host is None:
            server = GunicornServer({
                "WEB_CONCURRENCY": str(args.server_workers),
                "MODEL_BASE_PATH": os.environ.get("MODEL_BASE_PATH", str(MODELS)),
                "ACCESS_LOG": "", "LOG_LEVEL": "warning",
            }, args.out / "server.log")
            print(f"starting gunicorn on {server.url} (log: {server.log}) ...", flush=True)
            server.wait_ready()
            host = server.url
        print(f"locust: {args.users} users for {args.run_time} against {host}", flush=True)
        rc = subprocess.call(locust_command(args, host), cwd=ROOT)
    finally:
        if server is not None:
            server.stop()
    reasons = judge(args.out, args.p99_ms, rc)
    print(f"reports: {args.out / 'locust.html'}, {args.out / 'locust_stats.csv'}")
    if reasons:
        print("LOAD TEST FAILED: " + "; ".join(reasons), file=sys.stderr)
        return 1
    print("load test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
