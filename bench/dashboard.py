"""What the notebook dashboard costs: one redraw against the bare reads it is made of,
side by side, and how many widget messages it sends when the node is idle or busy.

Run: ``.venv/bin/python bench/dashboard.py [--peers 0 10 50] [--json PATH]``.

For each size N, one node connected to N others (loopback, one process):
- ``reads_ms``: the node reads one redraw needs (addrs, metrics, peers, connections,
  events, hole punches, reservations), timed from the calling thread, median;
- ``redraw_ms``: ``NodeDashboard.refresh()`` (those reads plus building the HTML and
  sending what changed), median; ``redraw_over_reads`` is their ratio;
- ``idle_msgs_per_s``: widget values sent per second while nothing happens (3 s);
- ``busy_msgs_per_s``: the same while the node pings a peer as fast as it can (3 s), with
  the default ``refresh=0.5``: the rate bound is 2 redraws a second per part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import ExitStack
from typing import Any

import ucsdk
from ucsdk.lab.scenarios import wait_until
from ucsdk.widgets import NodeDashboard

QUIET = {
    "enable_mdns": False,
    "enable_pubsub_discovery": False,
    "enable_autonat": False,
    "enable_dht_discovery": False,
}


def _reads(node: ucsdk.Node) -> None:
    _ = node.addrs
    node.metrics()
    node.peers()
    node.connections()
    node.events()
    node.hole_punches()
    node.reservations()
    node.metrics_history()


def _elapsed_ms(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def measure(peers: int, calls: int = 30) -> dict[str, Any]:
    with ExitStack() as stack:
        node = stack.enter_context(ucsdk.Node.development(**QUIET))
        others = [stack.enter_context(ucsdk.Node.development(**QUIET)) for _ in range(peers)]
        for other in others:
            node.connect(other.addrs[0])
        # Settled: identify has answered for every peer, and the metrics history (sampled
        # every second; the dashboard's sparklines draw it) has a sample with them all.
        wait_until(lambda: node.peers()["agent_version"].notna().all(), 10, 0.1)
        wait_until(lambda: node.metrics_history()["active_connections"].iloc[-1] == peers, 5)
        board = NodeDashboard(node, refresh=0.5)
        reads, redraws = [], []
        for _ in range(calls):  # alternate, so both see the same machine state
            reads.append(_elapsed_ms(lambda: _reads(node)))
            redraws.append(_elapsed_ms(board.refresh))
        before = board.redraws
        time.sleep(3.0)
        idle = (board.redraws - before) / 3.0
        busy_rate = float("nan")
        if others:
            before, started = board.redraws, time.monotonic()
            while time.monotonic() - started < 3.0:
                node.ping(others[0].peer_id, count=1)
            busy_rate = (board.redraws - before) / (time.monotonic() - started)
        board.close()
        reads_ms, redraw_ms = statistics.median(reads), statistics.median(redraws)
        return {
            "peers": peers,
            "reads_ms": round(reads_ms, 2),
            "redraw_ms": round(redraw_ms, 2),
            "redraw_over_reads": round(redraw_ms / reads_ms, 2),
            "idle_msgs_per_s": round(idle, 2),
            "busy_msgs_per_s": round(busy_rate, 2),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", nargs="+", type=int, default=[0, 10, 50])
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    rows = [measure(n) for n in args.peers]
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
