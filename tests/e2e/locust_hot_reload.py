"""Locust users for tests/e2e/test_operations.py's hot reload test: iris through the friendly API.

Every answer must be a 200 with a `version` and the right species, where the species name
comes from that version's own card (version 2's card in the test names "setosa-v2"): an
answer computed by one version but labelled with another would fail. Each response is also
written, as [start, end, status, version or null, error or null] (wall clock seconds), to
the JSON file named by HOT_RELOAD_RECORDS when locust quits, for the test to judge over time.
"""

from __future__ import annotations

import time

from locust import FastHttpUser, between, task

from loadtest.records import records_written_on_quit

SETOSA = {"instances": [{"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4,
                         "petal_width_cm": 0.2}]}
records = records_written_on_quit("HOT_RELOAD_RECORDS")


def expected_label(version: int) -> str:
    return "setosa" if version == 1 else f"setosa-v{version}"


class IrisUser(FastHttpUser):
    wait_time = between(0.1, 0.3)

    @task
    def predict(self) -> None:
        started = time.time()
        version = error = None
        with self.client.post("/api/models/iris/predict", json=SETOSA, catch_response=True,
                              name="iris predict") as response:
            status = response.status_code
            try:
                if status != 200:
                    raise ValueError(f"status {status}: {(response.text or '')[:200]}")
                body = response.json()
                version = body["version"]
                if not isinstance(version, int):
                    raise ValueError(f"version {version!r} is not a number")
                label = body["predictions"][0]["label"]
                if label != expected_label(version):
                    raise ValueError(f"version {version} answered {label!r}, expected {expected_label(version)!r}")
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                response.failure(error)
        records.append([started, time.time(), status, version, error])
