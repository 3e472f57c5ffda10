"""Locust users for the fault scenarios (loadtest/faults.py): cheap, checked requests, all recorded.

Each user keeps one keep-alive connection, as real clients do, and alternates iris through the
friendly API (the answer must be "setosa" from a numbered version) and through TensorFlow
Serving's `:predict` (three probabilities summing to 1). Every request is written, as
[start, end, status, error or null, version or null] (wall clock seconds; status 0 when there
was no answer; the version is the friendly API's, which names the version that answered),
to the JSON file named by FAULT_RECORDS when locust quits, for the scenario to judge over time.
"""

from __future__ import annotations

import math
import time
from typing import Any

from locust import FastHttpUser, between, task

from loadtest.records import records_written_on_quit

SETOSA = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}
FRIENDLY = {"instances": [SETOSA]}
TFSERVING = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
records = records_written_on_quit("FAULT_RECORDS")


class IrisUser(FastHttpUser):
    wait_time = between(0.1, 0.3)
    # A request still unanswered after this is a failure: a fault must not leave clients hanging.
    network_timeout = 20.0
    connection_timeout = 20.0

    @task(2)
    def friendly(self) -> None:
        self._post("/api/models/iris/predict", FRIENDLY, "iris friendly", _check_friendly)

    @task(1)
    def tfserving(self) -> None:
        self._post("/v1/models/iris:predict", TFSERVING, "iris :predict", _check_tfserving)

    def _post(self, path: str, body: dict[str, Any], name: str, check: Any) -> None:
        started = time.time()
        error = version = None
        with self.client.post(path, json=body, catch_response=True, name=name) as response:
            status = response.status_code or 0
            try:
                if status != 200:
                    raise ValueError(f"status {status}: {(response.text or str(response.error))[:200]}")
                version = check(response.json())
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                response.failure(error)
        records.append([started, time.time(), status, error, version])


def _check_friendly(body: dict[str, Any]) -> int:
    if not isinstance(body["version"], int) or body["predictions"][0]["label"] != "setosa":
        raise ValueError(f"wrong answer: {str(body)[:200]}")
    return body["version"]


def _check_tfserving(body: dict[str, Any]) -> None:
    row = body["predictions"][0]
    if len(row) != 3 or not math.isclose(sum(row), 1.0, abs_tol=1e-4) or max(row) != row[0]:
        raise ValueError(f"wrong answer: {row}")
