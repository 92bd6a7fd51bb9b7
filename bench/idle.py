"""What an idle node costs, and how long Node.stop() takes.

Run: ``.venv/bin/python bench/idle.py [--quick] [--nodes N] [--seconds S] [--json PATH]
[--compare REV [--rounds N]]``.

Figures (loopback only, one process, development preset: the nodes find each other by
mDNS and pubsub discovery and connect):
- ``idle_cpu_percent_per_node``: CPU time of the whole process (``time.process_time()``)
  over ``--seconds`` (30) of wall time with nothing asked of the nodes, in % of one core,
  divided by the number of nodes; measured after ``--settle`` seconds so the start-up
  (connections, identify, the first AutoNAT round) is over. Periodic protocol traffic
  (pubsub discovery announcements every 2 s in this preset, gossipsub heartbeats,
  AutoNAT rounds, every 30 s in this preset: hence the 30 s window) counts: that is what
  an idle node does. The nodes' mDNS service name is random, so that they find each other
  and not the nodes of other processes on the machine;
- ``node_stop_ms``: ``Node.stop()`` of one of those nodes, connected to the others
  (median over the nodes, stopped one after the other).
Targets: idle < 0.5 % of a core per node; stop < 100 ms.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time

from _compare import add_options, below, machine, print_targets, run_compare, write_json

import ucsdk

IDLE_TARGET_PERCENT = 0.5
STOP_TARGET_MS = 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter run (CI smoke run)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=None, help="idle window (30 s)")
    parser.add_argument("--settle", type=float, default=None, help="wait first (20 s)")
    add_options(parser)
    args = parser.parse_args()
    if args.compare:
        return run_compare(__file__, args)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 30.0)
    settle = args.settle if args.settle is not None else (3.0 if args.quick else 20.0)

    print(machine())
    service = f"idle{secrets.token_hex(5)}"
    nodes = [ucsdk.Node.development(mdns_service_name=service) for _ in range(args.nodes)]
    stop_ms: list[float] = []
    try:
        time.sleep(settle)
        connected = statistics.median(len(n.connections()) for n in nodes)
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        for node in nodes:
            started = time.perf_counter()
            node.stop()
            stop_ms.append((time.perf_counter() - started) * 1000)
    stop = statistics.median(stop_ms)
    figures = {
        "idle_cpu_percent_per_node": cpu / wall / args.nodes * 100,
        "node_stop_ms": stop,
        "node_stop_max_ms": max(stop_ms),
        "connections_per_node": float(connected),
    }
    print(f"\n{args.nodes} nodes, {seconds:g} s idle after {settle:g} s")
    for name, value in figures.items():
        print(f"{name:<34}{value:>10.3f}")
    idle = figures["idle_cpu_percent_per_node"]
    print_targets(
        [
            below(f"idle node < {IDLE_TARGET_PERCENT} % of a core", idle, IDLE_TARGET_PERCENT, "%"),
            below(f"Node.stop() < {STOP_TARGET_MS:g} ms", stop, STOP_TARGET_MS, "ms"),
        ]
    )
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
