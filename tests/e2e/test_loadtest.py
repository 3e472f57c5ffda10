"""The load test and the benchmark run end to end against the session's real gunicorn (short runs)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_LOCUST = ROOT / "loadtest" / "run_locust.py"
BENCH = ROOT / "loadtest" / "bench.py"

pytestmark = pytest.mark.slow


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, check=False)


def test_locust_suite_passes_against_the_real_server(server, tmp_path):
    out = tmp_path / "locust"
    result = run(RUN_LOCUST, "--host", server.url, "--users", "4", "--spawn-rate", "4", "--run-time", "5s",
                 "--p99-ms", "60000", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "load test passed" in result.stdout
    for name in ("locust_stats.csv", "locust_failures.csv", "locust.html", "locust_final.json"):
        assert (out / name).is_file(), name
    with (out / "locust_stats.csv").open(newline="") as handle:
        names = {row["Name"] for row in csv.DictReader(handle)}
    assert "Aggregated" in names
    assert any("PNG upload" in name for name in names)
    assert "<html" in (out / "locust.html").read_text().lower()
    total = json.loads((out / "locust_final.json").read_text())["total"]
    assert total["requests"] > 0
    assert total["failures"] == 0


def test_locust_suite_fails_when_p99_is_over_the_threshold(server, tmp_path):
    result = run(RUN_LOCUST, "--host", server.url, "--users", "2", "--spawn-rate", "2", "--run-time", "2s",
                 "--p99-ms", "0.001", "--out", str(tmp_path / "locust"))
    assert result.returncode != 0
    assert "p99" in result.stderr and "above 0.001 ms" in result.stderr


def test_bench_tiny_run_writes_the_table(server, tmp_path):
    out = tmp_path / "bench"
    result = run(BENCH, "--host", server.url, "--server-pid", str(server.process.pid), "--duration", "1",
                 "--connections", "4", "--requests", "ceiling,iris,png_upload,png_upload_lesson", "--warmup", "0",
                 "--rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    rows = report["rows"]
    assert [(r["request"], r["connections"]) for r in rows] == [
        ("ceiling", 4), ("iris", 4), ("png_upload", 4), ("png_upload_lesson", 4)]
    for row in rows:
        assert {"rps", "p50_ms", "p99_ms", "errors", "share_of_ceiling", "pss_mib_max", "pss_mib_workers",
                "target", "result"} <= set(row)
        assert row["rps"] > 0
        assert row["errors"] == 0
        assert row["pss_mib_max"] > 0       # the workers of the session's gunicorn were found
    assert rows[0]["share_of_ceiling"] == 1.0
    assert rows[1]["share_of_ceiling"] > 0
    ratio = report["meta"]["default_vs_lesson"]["png_upload@4"]     # version 2 over version 1 (label lesson)
    assert ratio == pytest.approx(rows[2]["rps"] / rows[3]["rps"], rel=1e-2)
    assert len(report["meta"]["workers_pss_mib"]) == 2
    markdown = (out / "bench.md").read_text()
    assert "| request | conns | req/s |" in markdown and "share of ceiling" in markdown
    assert "share of version 1's" in markdown
