"""Importing this in a locustfile writes `<csv prefix>_final.json` when locust quits.

Locust rewrites its CSV only once a second and not at shutdown, so the CSV can miss the last
second of a run; these are the totals at the end, which run_locust.py and bench.py judge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import WorkerRunner

_environment: list[Any] = []


@events.init.add_listener
def _remember_environment(environment: Any, **_kwargs: Any) -> None:
    _environment[:] = [environment]


def _entry(stats: Any) -> dict[str, Any]:
    return {
        "method": stats.method, "name": stats.name, "requests": stats.num_requests, "failures": stats.num_failures,
        "rps": stats.total_rps, "avg_ms": stats.avg_response_time,
        "p50_ms": stats.get_response_time_percentile(0.5), "p99_ms": stats.get_response_time_percentile(0.99),
        "max_ms": stats.max_response_time,
    }


@events.quit.add_listener
def _write_final_stats(exit_code: int, **_kwargs: Any) -> None:
    if not _environment:
        return
    environment = _environment[0]
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix or isinstance(environment.runner, WorkerRunner):
        return
    stats = environment.stats
    final = {
        "exit_code": exit_code,
        "total": _entry(stats.total),
        "entries": [_entry(e) for e in sorted(stats.entries.values(), key=lambda e: (e.name, e.method))],
        "errors": [{"method": e.method, "name": e.name, "error": str(e.error), "occurrences": e.occurrences}
                   for e in stats.errors.values()],
    }
    Path(f"{prefix}_final.json").write_text(json.dumps(final, indent=2))
