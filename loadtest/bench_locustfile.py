"""bench.py's fallback when wrk is not installed: one request, repeated as fast as possible.

The request comes from the environment: BENCH_METHOD, BENCH_PATH, and for a POST the file
BENCH_BODY_FILE sent as BENCH_CONTENT_TYPE. Locust is much slower than wrk, so on a small
machine the client, not the server, may be the limit, above all for the ceiling row.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from locust import FastHttpUser, constant, task  # noqa: E402

from loadtest import final_stats  # noqa: E402, F401 - writes <csv prefix>_final.json at the end

METHOD = os.environ.get("BENCH_METHOD", "GET")
PATH = os.environ.get("BENCH_PATH", "/v2/health/live")
BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes() if os.environ.get("BENCH_BODY_FILE") else None
HEADERS = {"Content-Type": os.environ["BENCH_CONTENT_TYPE"]} if os.environ.get("BENCH_CONTENT_TYPE") else {}


class BenchUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def request(self) -> None:
        self.client.request(METHOD, PATH, data=BODY, headers=HEADERS, name=PATH)
