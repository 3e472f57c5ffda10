"""`make reliability`: the bad-input catalogue and the fuzzer against a real server, with figures.

    python loadtest/reliability.py                          # catalogue, bomb memory, schemathesis
    python loadtest/reliability.py --max-examples 20 --seed 7
    python loadtest/reliability.py --skip-fuzz

Starts gunicorn the way `make serve` does (service/gunicorn_conf.py), with three settings that
make the run say more: REQUEST_TIMEOUT=4 (so the request whose body never comes is cut off in
seconds, not 30), FLASK_DEBUG=1 (which the server must ignore: no answer may show a stack trace)
and a model config that gives every model a `stable` label (so the label routes are fuzzed too).

1. The catalogue (loadtest/catalogue.py): each case over a raw socket, then a readiness check
   on a new connection; printed as a table (case, status, error message, healthy after it).
2. Decompression bombs: the 20,000 x 20,000 PNGs sent ten times each while the workers' RSS and
   PSS are read from /proc; neither may grow by more than 50 MB.
3. Schemathesis (`st run`) against the server's own /openapi.json, with the checks of
   schemathesis.toml (5xx, conformance of status, content type, headers and body; ST202 off,
   see there): at least 1,000 generated requests, none may fail.

Exits non-zero on any unexpected answer, memory growth or fuzzing failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest import catalogue  # noqa: E402
from loadtest.faults import wait_for_workers  # noqa: E402
from loadtest.server import MODELS, GunicornServer  # noqa: E402

REQUEST_TIMEOUT = 4
BOMB_ROUNDS = 10
MEMORY_LIMIT_MB = 50.0
MIN_FUZZ_CASES = 1000
LABELS_CONFIG = "models:\n" + "".join(f"  {name}:\n    labels: {{stable: 1}}\n"
                                      for name in ("fashion_mnist", "iris", "linear"))


def server_env(workdir: Path) -> dict[str, str]:
    config = workdir / "models.yaml"
    config.write_text(LABELS_CONFIG)
    return {"WEB_CONCURRENCY": "2", "MODEL_BASE_PATH": str(MODELS), "MODEL_CONFIG": str(config),
            "REQUEST_TIMEOUT": str(REQUEST_TIMEOUT), "FLASK_DEBUG": "1", "ACCESS_LOG": "", "LOG_LEVEL": "warning"}


def run_catalogue(server: GunicornServer) -> list[catalogue.Result]:
    secrets = (str(MODELS), str(ROOT))
    return [catalogue.run_case(case, "127.0.0.1", server.port, secrets) for case in catalogue.cases()]


def bomb_memory(server: GunicornServer, rounds: int = BOMB_ROUNDS) -> tuple[dict[int, tuple[float, float]], list[str]]:
    """Growth of each worker's (RSS, PSS) in MB over `rounds` of every bomb case; problems."""
    bombs = [case for case in catalogue.cases() if case.group == "image" and case.message == "the limit is"]
    workers = server.worker_pids()
    before = {pid: catalogue.memory_mib(pid) for pid in workers}
    problems = []
    for _ in range(rounds):
        for case in bombs:
            reply = catalogue.send("127.0.0.1", server.port, case.build(), timeout=30)
            if reply.status != 413:
                problems.append(f"{case.name}: {reply.status} {reply.error[:100]}")
    growth = {}
    for pid in workers:
        after = catalogue.memory_mib(pid)
        if before[pid] is None or after is None:
            problems.append(f"worker {pid} is gone")
            continue
        growth[pid] = (after[0] - before[pid][0], after[1] - before[pid][1])
        if max(growth[pid]) > MEMORY_LIMIT_MB:
            problems.append(f"worker {pid} grew by {max(growth[pid]):.1f} MB")
    return growth, problems


def run_fuzz(url: str, workdir: Path, max_examples: int, seed: int) -> tuple[dict, list[str]]:
    """schemathesis' CLI against the server; its JSON report and the problems found in it."""
    report = workdir / "schemathesis.json"
    command = [str(Path(sys.executable).parent / "st"), "--config-file", str(ROOT / "schemathesis.toml"), "run",
               f"{url}/openapi.json", "--checks", "all",
               # Explicitly, as schemathesis.toml explains: a schema cannot express every rule.
               "--exclude-checks", "positive_data_acceptance",
               "--max-examples", str(max_examples), "--seed", str(seed),
               # One worker: with two, a race inside hypothesis (describing lambdas) errored now and then.
               "--workers", "1",
               "--request-timeout", "20", "--report", "json", "--report-json-path", str(report)]
    started = time.monotonic()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if not report.exists():
        return {}, [f"schemathesis wrote no report (exit {completed.returncode}):\n{completed.stdout[-3000:]}"]
    data = json.loads(report.read_text())
    data["seconds"] = seconds
    problems = []
    generated = data["test_cases"]["generated"]
    if generated < MIN_FUZZ_CASES:
        problems.append(f"only {generated} cases generated; expected at least {MIN_FUZZ_CASES}")
    for failure in data["failures"]:
        problems.append(f"{failure['code']} {failure['title']}: {failure['count']} in {failure['operations'][:5]}")
    if data["errors"]:
        problems.append(f"{len(data['errors'])} errors: {str(data['errors'])[:500]}")
    if problems:
        print(completed.stdout[-6000:])
    return data, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=10, help="schemathesis cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1, help="schemathesis seed (default 1: a reproducible run)")
    parser.add_argument("--skip-fuzz", action="store_true", help="catalogue and memory only")
    args = parser.parse_args(argv)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        workdir = Path(tmp)
        server = GunicornServer(server_env(workdir), workdir / "server.log")
        try:
            print(f"starting gunicorn on {server.url} ...", flush=True)
            server.wait_ready()
            wait_for_workers(server)

            started = time.monotonic()
            results = run_catalogue(server)
            print(f"\n## Bad input: {len(results)} cases in {time.monotonic() - started:.1f} s "
                  f"(REQUEST_TIMEOUT={REQUEST_TIMEOUT}, FLASK_DEBUG=1)\n")
            print(catalogue.table(results))
            unexpected = [r for r in results if not r.ok]
            problems += [f"{r.case.name}: {'; '.join(r.problems)}" for r in unexpected]
            print(f"\n{len(results) - len(unexpected)} of {len(results)} as expected; "
                  f"server healthy after every case: {'yes' if all(r.healthy for r in results) else 'NO'}")

            growth, memory_problems = bomb_memory(server)
            problems += memory_problems
            print(f"\n## Decompression bombs: each sent {BOMB_ROUNDS} times; worker memory growth "
                  f"(limit {MEMORY_LIMIT_MB:g} MB)")
            for pid, (rss, pss) in growth.items():
                print(f"  worker {pid}: RSS {rss:+.1f} MB, PSS {pss:+.1f} MB")

            console = catalogue.send("127.0.0.1", server.port, catalogue.request("GET", "/console"))
            print(f"\n## Debug mode (FLASK_DEBUG=1 in the environment): GET /console -> {console.status} "
                  f"{console.error[:80]}")
            if console.status != 404:
                problems.append(f"/console answered {console.status}")

            if not args.skip_fuzz:
                print(f"\n## Fuzzing: schemathesis, --max-examples {args.max_examples}, seed {args.seed} ...",
                      flush=True)
                data, fuzz_problems = run_fuzz(server.url, workdir, args.max_examples, args.seed)
                problems += fuzz_problems
                if data:
                    cases = data["test_cases"]
                    print(f"  {data['operations']['tested']} operations, {cases['generated']} requests generated "
                          f"in {data['seconds']:.0f} s; {cases['with_failures']} with failures, "
                          f"{cases['errored']} errored; 5xx: "
                          f"{sum(f['count'] for f in data['failures'] if f['code'] == 'ST101')}")
                    phases = ", ".join(f"{name} {phase['status']}" for name, phase in data["phases"].items())
                    print(f"  phases: {phases}")
        finally:
            server.stop()
            log = (workdir / "server.log").read_text(errors="replace")
            if "Traceback" in log:
                problems.append("the server logged a traceback (see its log)")
                print(log[-4000:])
    print(f"\n{len(problems)} problem(s)" + "".join(f"\n  - {p}" for p in problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
