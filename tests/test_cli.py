"""The `ucsdk` command, run as real processes on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from ucsdk.config import transport_of
from ucsdk.identity import new_key_pair, peer_id_of

UCSDK = [sys.executable, "-m", "ucsdk"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UCSDK, *args], capture_output=True, text=True, timeout=timeout)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_demo_discovers_pings_and_cleans_up() -> None:
    result = _run("demo", "--nodes", "4")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    children = re.findall(r"child pid (\d+) peer (\S+)", out)
    assert len(children) == 3
    ours = out.split("Peers of this node", 1)[1].split("Peers of child", 1)[0]
    for pid, peer_id in children:
        short = f"{peer_id[:8]}…{peer_id[-6:]}"
        # Found by pubsub discovery (the node was told only the bootstrap's address).
        assert re.search(rf"found {re.escape(short)} via pubsub after \d+\.\d s", out)
        assert re.search(rf"{re.escape(short)}: median \d+\.\d+ ms", out)
        row = next(line for line in ours.splitlines() if short in line)
        assert "pubsub" in row and "True" in row and "direct" in row
        # Each child printed its own table, naming how it found the others.
        child_table = out.split(f"Peers of child {short}", 1)[1].split("\n\n", 1)[0]
        assert "pubsub" in child_table
        assert _gone(int(pid)), f"child {pid} still running"
    assert "not found within" not in out
    assert "stopped 3 node processes" in out
    # Then the NAT lab part: real NAT when root, else skipped with the reason.
    lab_part = out.split("=== The NAT lab", 1)[1]
    if os.geteuid() == 0 and "skipped" not in lab_part.splitlines()[1]:
        grid = lab_part.split("Direct dial works?", 1)[1].split("\n\n", 1)[0]
        relay_row = next(line for line in grid.splitlines() if line.startswith("relay"))
        # relay cannot dial the hosts behind NAT, but reaches the port-forwarded one
        assert relay_row.split()[1:] == ["no", "yes", "no", "yes", "-", "no"], grid
        traversal = out.split("=== NAT traversal in the lab", 1)[1]
        punches = traversal.split("DCUtR hole punches", 1)[1].split("\n\n", 1)[0]
        bob = next(line for line in punches.splitlines() if line.strip().startswith("bob"))
        carol = next(line for line in punches.splitlines() if line.strip().startswith("carol"))
        assert "success" in bob and "failed" in carol, punches
    else:
        assert "skipped: the NAT lab needs" in lab_part
        assert os.environ.get("UCSDK_REQUIRE_LAB") != "1"


@pytest.fixture
def node_process() -> tuple[subprocess.Popen[str], str]:  # type: ignore[misc]
    process = subprocess.Popen(
        [*UCSDK, "node", "--listen-host", "127.0.0.1", "--interval", "3600"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("READY "):
                ready = line.split(" ", 1)[1].strip()
                break
        assert ready, "node process never printed READY"
        yield process, ready
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_ping_a_node_process(node_process: tuple[subprocess.Popen[str], str]) -> None:
    process, addr = node_process
    result = _run("ping", addr, "--count", "3", timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^ping \d: \d+\.\d\d ms$", result.stdout, re.M)) == 3
    assert "median" in result.stdout
    process.terminate()
    assert process.wait(timeout=15) == 0  # SIGTERM stops the node cleanly


def test_ping_malformed_multiaddr_exits_2() -> None:
    result = _run("ping", "/not/a/multiaddr", timeout=60)
    assert result.returncode == 2
    assert "/not/a/multiaddr" in result.stderr


def _closed_port_target() -> str:
    """A peer address on 127.0.0.1 where nothing listens (a port just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(new_key_pair())}"


LIBP2P_LINE = re.compile(r"^\w+ libp2p[.:]", re.M)


def test_ping_closed_port_exits_1_within_timeout() -> None:
    target = _closed_port_target()
    started = time.monotonic()
    result = _run("ping", target, "--timeout", "3", timeout=60)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    # ucsdk's message, and none of py-libp2p's own log lines about the failed dial
    assert result.stderr.startswith("ucsdk: could not connect"), result.stderr
    assert "Connection refused" in result.stderr
    assert "Failed to open" not in result.stderr
    assert not LIBP2P_LINE.search(result.stderr), result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_libp2p_log_lines(where: str) -> None:
    target = _closed_port_target()
    ping = ["ping", target, "--timeout", "3"]
    result = _run(*(["-v", *ping] if where == "before" else [*ping, "-v"]), timeout=60)
    assert result.returncode == 1
    assert re.search(
        r"^ERROR libp2p\.transport\.tcp\.tcp: Failed to open TCP stream", result.stderr, re.M
    ), result.stderr
    assert result.stderr.splitlines()[-1].startswith("ucsdk: could not connect")


def test_cli_logging_keeps_ucsdk_records_and_hides_libp2p_ones() -> None:
    script = (
        "import logging, sys\n"
        "from ucsdk.cli import _configure_logging\n"
        "_configure_logging(int(sys.argv[1]))\n"
        "logging.getLogger('UniversalConnectivity').warning('ours')\n"
        "logging.getLogger('libp2p.transport.tcp.tcp').error('theirs')\n"
        "logging.getLogger('libp2p').critical('theirs too')\n"
    )
    for verbose, shown in ((0, []), (1, ["theirs", "theirs too"])):
        result = subprocess.run(
            [sys.executable, "-c", script, str(verbose)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        assert lines[0] == "WARNING UniversalConnectivity: ours"
        assert [line.split(": ", 1)[1] for line in lines[1:]] == shown


def test_node_once_prints_ready_and_exits() -> None:
    result = _run("node", "--once", timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^READY /ip4/127\.0\.0\.1/tcp/\d+/p2p/12D3KooW\w+$", result.stdout, re.M)
    assert "(no peers yet)" in result.stdout


def test_node_with_the_server_preset_listens_where_browsers_can_dial() -> None:
    result = _run("node", "--preset", "server", "--no-mdns", "--no-dht", "--once", timeout=60)
    assert result.returncode == 0, result.stderr
    listening = re.findall(r"^listening: (\S+)$", result.stdout, re.M)
    kinds = {transport_of(a) for a in listening}
    assert kinds == {"tcp", "quic", "websocket", "webtransport", "webrtc-direct"}
    wt = next(a for a in listening if "/webtransport" in a)
    assert re.search(r"/quic-v1/webtransport(/certhash/uEi[\w-]{44}){2}/p2p/12D3KooW", wt)
    rtc = next(a for a in listening if "/webrtc-direct" in a)
    assert re.search(r"/udp/\d+/webrtc-direct/certhash/uEi[\w-]{44}/p2p/12D3KooW\w+$", rtc)


def test_lab_lists_scenarios() -> None:
    result = _run("lab", "--list")
    assert result.returncode == 0, result.stderr
    for name in ("home", "symmetric", "cgnat", "all-nats", "traversal"):
        assert re.search(rf"^{name}\s", result.stdout, re.MULTILINE)


@pytest.mark.lab
def test_lab_scenario_shows_the_nat(lab_required: None) -> None:
    result = _run("lab", "symmetric", "--json", timeout=180)
    assert result.returncode == 0, result.stderr
    tables = {}
    for line in result.stdout.splitlines():
        tables.update(json.loads(line))
    reach = {(r["dialer"], r["target"]): r["ok"] for r in tables["reachability"]}
    assert reach[("alice", "relay")] and reach[("bob", "relay")]
    assert not reach[("relay", "alice")] and not reach[("relay", "bob")]
    mapped = {}
    for row in tables["mapping"]:
        mapped.setdefault(row["host"], set()).add(row["mapped"])
    assert len(mapped["alice"]) == 1  # one STUN server here: one mapping each
    assert {r["host"] for r in tables["relay_view"]} == {"alice", "bob"}
    assert all(r["remote_addr"].startswith("/ip4/198.51.100.") for r in tables["relay_view"])
