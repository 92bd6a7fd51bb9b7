"""The benchmark scripts run to the end and write every figure (speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_facade_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "facade.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    for name in ("raw_ping_ms", "facade_ping_ms", "facade_call_us", "node_start_ms"):
        assert figures[name] > 0
    assert figures["facade_over_raw_ping"] == figures["facade_ping_ms"] / figures["raw_ping_ms"]
    assert "target empty facade call" in result.stdout


def test_discovery_benchmark_quick_run() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "discovery.py"),
            "--quick",
            "--mechanisms",
            "pubsub",
            "mdns",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("3 ")]
    assert {row[1] for row in rows} == {"pubsub", "mdns"}
    for row in rows:
        assert row[2] != "None", result.stdout  # every node found every other


def test_dashboard_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dashboard.py"), "--peers", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())
    assert row["peers"] == 2 and row["reads_ms"] > 0 and row["redraw_ms"] > 0
    assert row["idle_msgs_per_s"] == 0, row
    assert row["busy_msgs_per_s"] > 0, row
