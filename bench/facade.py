"""What the blocking facade costs: Node.ping against raw async py-libp2p ping, side by side.

Run: ``make bench`` or ``.venv/bin/python bench/facade.py [--quick] [--json PATH] [--compare REV]``.

Figures (loopback only, one process, both nodes on the shared runtime thread):
- raw ping: ``await PingService(host).ping(peer, 1)`` on the node's own trio loop, timed
  there with perf_counter (one new stream per ping, like ``Node.ping(count=1)``);
- facade ping: ``node.ping(peer, count=1)`` timed from the calling thread;
- the RTT ``Node.ping`` itself reports, and the per-echo RTT of ``count=N`` on one stream;
- one empty facade call (``node.metrics()``) and a bare portal round trip;
- Node start (returns once listening) and stop.
Raw and facade pings alternate in blocks, so both see the same machine state.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _compare import add_options, below, machine, print_targets, run_compare, write_json
from libp2p.host.ping import PingService
from libp2p.peer.id import ID

import ucsdk


def _median_us(fn: Callable[[], Any], calls: int) -> float:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    add_options(parser)
    args = parser.parse_args()
    if args.compare:
        return run_compare(__file__, args)
    blocks, per_block = (4, 20) if args.quick else (10, 50)
    calls = 1000 if args.quick else 5000
    starts = 5 if args.quick else 20

    print(machine())
    a = ucsdk.Node.development()
    b = ucsdk.Node.development()
    try:
        a.connect(b.addrs[0])
        peer = ID.from_base58(b.peer_id)
        host = a.manager.host

        async def raw_pings(count: int) -> list[float]:
            service = PingService(host)
            out = []
            for _ in range(count):
                started = time.perf_counter()
                await service.ping(peer, 1)
                out.append((time.perf_counter() - started) * 1000)
            return out

        # warm-up
        a._portal.call(raw_pings, 20)
        for _ in range(20):
            a.ping(b.peer_id, count=1)

        raw: list[float] = []
        facade: list[float] = []
        reported: list[float] = []
        for _ in range(blocks):
            raw += a._portal.call(raw_pings, per_block)
            for _ in range(per_block):
                started = time.perf_counter()
                reported += a.ping(b.peer_id, count=1)
                facade.append((time.perf_counter() - started) * 1000)
        echo = a.ping(b.peer_id, count=blocks * per_block)

        metrics_us = _median_us(a.metrics, calls)
        portal_us = _median_us(lambda: a._portal.call(lambda: None), calls)
    finally:
        a.stop()
        b.stop()

    start_ms, stop_ms = [], []
    for _ in range(starts):
        started = time.perf_counter()
        node = ucsdk.Node.development()
        start_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        node.stop()
        stop_ms.append((time.perf_counter() - started) * 1000)

    figures = {
        "raw_ping_ms": statistics.median(raw),
        "facade_ping_ms": statistics.median(facade),
        "facade_reported_rtt_ms": statistics.median(reported),
        "one_stream_echo_rtt_ms": statistics.median(echo),
        "facade_call_us": metrics_us,
        "portal_round_trip_us": portal_us,
        "node_start_ms": statistics.median(start_ms),
        "node_stop_ms": statistics.median(stop_ms),
    }
    ratio = figures["facade_ping_ms"] / figures["raw_ping_ms"]
    figures["facade_over_raw_ping"] = ratio

    print(f"\n{'figure':<34}{'median':>12}")
    units = {"ms": "ms", "us": "µs"}
    for name, value in figures.items():
        unit = units.get(name.rsplit("_", 1)[-1], "x")
        print(f"{name:<34}{value:>10.3f} {unit}")
    print(f"\n({len(raw)} raw and {len(facade)} facade pings in {blocks} alternating blocks)")

    targets = [
        ("facade ping <= 1.3x raw async ping", ratio <= 1.3, f"{ratio:.2f}x"),
        ("empty facade call < 200 µs", metrics_us < 200, f"{metrics_us:.0f} µs"),
        (
            "Node start to listening < 1 s",
            figures["node_start_ms"] < 1000,
            f"{figures['node_start_ms']:.1f} ms",
        ),
        below("Node stop < 100 ms", figures["node_stop_ms"], 100, "ms"),
    ]
    print_targets(targets)
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
