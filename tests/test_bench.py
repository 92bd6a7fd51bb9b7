"""The benchmark scripts run to the end and write every figure (speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _quick_run(
    bench: str, tmp_path: Path, *args: str, timeout: float = 300
) -> tuple[dict[str, Any], str]:
    """Run ``bench/<bench> --quick ARGS --json`` from the project's folder: its figures
    and its output."""
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / bench), "--quick", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures, result.stdout


def test_facade_benchmark_quick_run(tmp_path: Path) -> None:
    figures, stdout = _quick_run("facade.py", tmp_path)
    for name in ("raw_ping_ms", "facade_ping_ms", "facade_call_us", "node_start_ms"):
        assert figures[name] > 0
    assert figures["facade_over_raw_ping"] == figures["facade_ping_ms"] / figures["raw_ping_ms"]
    assert "target empty facade call" in stdout
    assert "target Node stop" in stdout


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
    assert "cpu_ms_per_node_announcement" in result.stdout
    for target in ("pubsub discovery, 40 nodes", "pubsub discovery, 100", "mdns discovery, 100"):
        assert f"target {target}" in result.stdout, result.stdout


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


def test_pubsub_benchmark_quick_run(tmp_path: Path) -> None:
    """Every section runs (the js one too where Node.js is, as in CI) and nothing is lost
    without a count."""
    import os

    figures, stdout = _quick_run("pubsub.py", tmp_path)
    cases = [(r["case"], r["publisher"]) for r in figures["pubsub"]]
    assert cases == [
        ("ucsdk -> 1 ucsdk", "aio"),
        ("ucsdk -> 1 ucsdk", "blocking"),
        ("ucsdk -> 1 ucsdk", "paced"),
        ("ucsdk -> 10 ucsdk", "aio"),
    ]
    if os.environ.get("UCSDK_REQUIRE_NODE") == "1":
        assert [r["case"] for r in figures["js"]] == ["ucsdk -> js", "js -> ucsdk"]
    for row in figures["pubsub"] + figures["js"]:
        assert row["delivered_per_s"] > 0 and row["p50_ms"] > 0, row
        assert row["silent"] == 0, row
    ways = {(r["transport"], r["way"]) for r in figures["streams"]}
    assert ("tcp", "raw trio TCP sockets") in ways and ("quic", "ucsdk stream on the loop") in ways
    assert all(r["mb_per_s"] > 0 for r in figures["streams"])
    assert "target: >= 2,000 messages/s" in stdout


def test_browser_benchmark_quick_run() -> None:
    """bench/browser.py's ucsdk-to-ucsdk section runs and prints a row per transport (its
    browser section is what tests/browser/test_browser_peer.py checks)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "browser.py"), "--quick", "--no-browser"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for transport in ("webtransport", "quic", "tcp"):
        assert f"| ucsdk -> ucsdk, {transport} |" in result.stdout, result.stdout


def test_peers_benchmark_quick_run(tmp_path: Path) -> None:
    """bench/peers.py prints every figure of every pairing (the js ones run where Node.js
    is, and must in CI: UCSDK_REQUIRE_NODE=1) and both targets' verdicts."""
    import os

    figures, stdout = _quick_run("peers.py", tmp_path, timeout=600)
    pairings = [row["pairing"] for row in figures["rows"]]
    if os.environ.get("UCSDK_REQUIRE_NODE") == "1" or figures["js_skipped"] is None:
        assert pairings == ["ucsdk -> ucsdk", "js -> js", "ucsdk -> js", "js -> ucsdk"]
    else:
        assert pairings == ["ucsdk -> ucsdk"]
    for row in figures["rows"]:
        for name in ("connect_ms", "ping_ms", "rtt_ms", "tcp_mb_s", "gossip_msg_s"):
            assert row[name] > 0, (name, row)
        assert f"\n{row['pairing']:<16}" in stdout
    assert figures["rows"][0]["quic_mb_s"] > 0
    assert all(row["quic_mb_s"] is None for row in figures["rows"][1:])
    assert figures["quic_bulk_mb_s"] > 0 and figures["raw_aioquic_mb_s"] > 0
    for target in ("target 3 (new-stream ping", "target 5 (ucsdk QUIC"):
        assert target in stdout, stdout
    assert "QUIC n/a on js" in stdout


def test_idle_benchmark_quick_run(tmp_path: Path) -> None:
    figures, stdout = _quick_run("idle.py", tmp_path, "--nodes", "2")
    for suffix, preset in (("", "development"), ("_private", "private")):
        assert figures[f"idle_cpu_percent_per_node{suffix}"] > 0, figures
        assert figures[f"node_stop_ms{suffix}"] > 0, figures
        assert figures[f"connections_per_node{suffix}"] == 1, figures  # they found each other
        assert f"% of a core ({preset})" in stdout, stdout
        assert f"target Node.stop() < 100 ms ({preset})" in stdout, stdout
