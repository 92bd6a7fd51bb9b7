"""What an idle node costs, and how long Node.stop() takes, in two presets.

Run: ``.venv/bin/python bench/idle.py [--quick] [--nodes N] [--seconds S] [--json PATH]
[--presets development private] [--compare REV [--rounds N]]``.

Figures (loopback only, one process per run, ``--nodes`` (5) nodes of one preset that
find each other by mDNS and pubsub discovery and connect), for each preset in turn:
- ``idle_cpu_percent_per_node``: CPU time of the whole process (``time.process_time()``)
  over ``--seconds`` (30) of wall time with nothing asked of the nodes, in % of one core,
  divided by the number of nodes; measured after ``--settle`` seconds so the start-up
  (connections, identify, the first AutoNAT round) is over. Periodic protocol traffic
  (pubsub discovery announcements, gossipsub heartbeats, mDNS queries, AutoNAT rounds)
  counts: that is what an idle node does. The nodes' mDNS service name is random, so that
  they find each other and not the nodes of other processes on the machine;
- ``node_stop_ms``: ``Node.stop()`` of one of those nodes, connected to the others
  (median over the nodes, stopped one after the other).
The development preset's names have no suffix; the others end in ``_<preset>``.

Presets: ``development`` (the teaching preset: announcements every 2 s, mDNS queries
every 5 s, AutoNAT rounds every 30 s, hence the 30 s window) and ``private`` (the field
defaults without public bootstrap peers: 10 s, 60 s and 300 s), both on 127.0.0.1 only.
Targets: idle < 0.5 % of a core per node; stop < 100 ms, for each preset.
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


def make_node(preset: str, service: str) -> ucsdk.Node:
    """A node of ``preset`` on loopback only (mDNS too), with no public bootstrap."""
    if preset == "development":
        return ucsdk.Node.development(mdns_service_name=service)
    return ucsdk.Node(
        ucsdk.ConnectivityConfig.preset(
            preset,
            listen_host="127.0.0.1",
            mdns_interfaces=["127.0.0.1"],
            mdns_service_name=service,
        )
    )


def measure(
    preset: str, count: int, settle: float, seconds: float
) -> tuple[float, list[float], float]:
    """Idle CPU (% of a core per node), each node's stop time (ms), median connections."""
    service = f"idle{secrets.token_hex(5)}"
    nodes = [make_node(preset, service) for _ in range(count)]
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
    return cpu / wall / count * 100, stop_ms, float(connected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter run (CI smoke run)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=None, help="idle window (30 s)")
    parser.add_argument("--settle", type=float, default=None, help="wait first (20 s)")
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["development", "private"],
        choices=["development", "private"],
        help="presets measured, one after the other",
    )
    add_options(parser)
    args = parser.parse_args()
    if args.compare:
        return run_compare(__file__, args)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 30.0)
    settle = args.settle if args.settle is not None else (3.0 if args.quick else 20.0)

    print(machine())
    figures: dict[str, float] = {}
    targets = []
    for preset in args.presets:
        idle, stop_ms, connected = measure(preset, args.nodes, settle, seconds)
        suffix = "" if preset == "development" else f"_{preset}"
        figures[f"idle_cpu_percent_per_node{suffix}"] = idle
        figures[f"node_stop_ms{suffix}"] = statistics.median(stop_ms)
        figures[f"node_stop_max_ms{suffix}"] = max(stop_ms)
        figures[f"connections_per_node{suffix}"] = connected
        targets.append(
            below(
                f"idle node < {IDLE_TARGET_PERCENT} % of a core ({preset})",
                idle,
                IDLE_TARGET_PERCENT,
                "%",
            )
        )
        targets.append(
            below(
                f"Node.stop() < {STOP_TARGET_MS:g} ms ({preset})",
                statistics.median(stop_ms),
                STOP_TARGET_MS,
                "ms",
            )
        )
    print(f"\n{args.nodes} nodes per preset, {seconds:g} s idle after {settle:g} s")
    for name, value in figures.items():
        print(f"{name:<42}{value:>10.3f}")
    print_targets(targets)
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
