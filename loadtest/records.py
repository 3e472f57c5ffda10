"""Per-request records of a locust run, written as JSON when locust quits, for scenarios judged over time."""

from __future__ import annotations

import json
import os
from typing import Any

from locust import events


def records_written_on_quit(variable: str) -> list[list[Any]]:
    """A list the locustfile appends its records to; saved to the file named by `variable` at quit."""
    records: list[list[Any]] = []

    @events.quit.add_listener
    def _write_records(**_kwargs: Any) -> None:
        target = os.environ.get(variable)
        if target:
            with open(target, "w") as handle:
                json.dump(records, handle)

    return records
