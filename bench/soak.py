"""Soak: connect, ping, disconnect and relay/hole-punch cycles for a while; do the node
processes' file descriptors, threads, trio tasks and memory stay flat?

Run (as root, for the NAT lab): ``.venv/bin/python bench/soak.py [--duration 600]``.

A lab is built: a public ``relay`` (relay server), a public peer ``p``, ``a`` and ``b``
each behind a port-restricted (cone) NAT; ``b`` holds a reservation on the relay. One
round is one relay/punch cycle (``a`` dials ``b``'s circuit address through the relay,
``b`` drives DCUtR and the connection is upgraded to a direct one, ``a`` pings ``b`` and
disconnects) followed by ``--plain`` plain cycles (``a`` connects to ``p`` directly, pings
it and disconnects). Rounds run back to back for ``--duration`` seconds.

Every ``--interval`` seconds, between two rounds (no connection of the cycles open), each
node process is read from inside (``LabNode.resources()``: ``/proc/self/fd``, the
``Threads:`` line of ``/proc/self/status``, the trio tasks alive on its loop and its RSS)
and a table row printed: time, cycles, fds, threads, tasks, rss_mb, per node.

The verdict: after ``--warmup`` seconds the first reading of each node is its baseline;
each later reading may exceed it by at most the slack (``--slack-fds``, ``--slack-threads``,
``--slack-tasks``, ``--slack-rss-mb``). The largest excess seen, and the share of the
slack it used, is printed with ``flat`` or ``NOT flat``; the exit status is 1 when not flat.

Without root it says why and exits 0 (``--no-lab`` runs plain cycles between two
in-process nodes on loopback instead, reading this process).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd

from ucsdk import errors

COLUMNS = ["time_s", "node", "cycles", "fds", "threads", "tasks", "rss_mb"]
METRICS = ("fds", "threads", "tasks", "rss_mb")
# What each figure may grow by after warm-up and still count as flat. A reading is taken
# between rounds; the slack covers what is legitimately still in flight then (a closing
# connection's socket and tasks, a reservation refresh, a QUIC socket, the allocator's
# arenas), not growth per cycle: a leak of one fd per cycle exceeds it within a minute.
DEFAULT_SLACK = {"fds": 8, "threads": 2, "tasks": 30, "rss_mb": 25.0}
LAB_DEFAULTS = {
    "connection_timeout": 3.0,
    "autonat_min_agreement": 1,
    "pubsub_announce_interval": 1.0,
    "enable_dht_discovery": False,
    "transports": ["tcp"],
    "listen_addrs": ["/ip4/0.0.0.0/tcp/4001"],
}


@dataclasses.dataclass
class Verdict:
    """Whether every node stayed within the slack after warm-up, and by how much."""

    flat: bool
    baseline: dict[str, dict[str, float]]
    excess: dict[str, dict[str, float]]  # node -> metric -> largest growth over baseline
    slack: dict[str, float]

    def slack_used(self) -> dict[str, float]:
        """Per metric, the largest growth over all nodes as a share of its slack."""
        return {
            m: max((e[m] for e in self.excess.values()), default=0.0) / self.slack[m]
            for m in METRICS
        }

    def summary(self) -> str:
        used = self.slack_used()
        parts = []
        for m in METRICS:
            worst = max(self.excess.values(), key=lambda e, m=m: e[m], default={m: 0.0})
            parts.append(f"{m} +{worst[m]:g} of {self.slack[m]:g} ({used[m]:.0%})")
        return ("flat" if self.flat else "NOT flat") + ": largest growth " + ", ".join(parts)


def verdict(frame: pd.DataFrame, warmup: float, slack: dict[str, float] | None = None) -> Verdict:
    """Judge the readings in ``frame`` (:data:`COLUMNS`): flat when no node's figure grew
    beyond its slack over its first reading at or after ``warmup`` seconds."""
    slack = dict(DEFAULT_SLACK if slack is None else slack)
    baseline: dict[str, dict[str, float]] = {}
    excess: dict[str, dict[str, float]] = {}
    flat = True
    for node, rows in frame.groupby("node", sort=False):
        after = rows[rows["time_s"] >= warmup]
        if len(after) < 2:
            raise ValueError(f"node {node}: fewer than 2 readings after {warmup} s of warm-up")
        first = after.iloc[0]
        baseline[str(node)] = {m: float(first[m]) for m in METRICS}
        excess[str(node)] = {
            m: round(max(0.0, float(after[m].max()) - float(first[m])), 1) for m in METRICS
        }
        flat = flat and all(excess[str(node)][m] <= slack[m] for m in METRICS)
    return Verdict(flat, baseline, excess, slack)


def _row(t0: float, node: str, cycles: int, usage: Any) -> dict[str, Any]:
    return {
        "time_s": round(time.monotonic() - t0, 1),
        "node": node,
        "cycles": cycles,
        "fds": usage.fds,
        "threads": usage.threads,
        "tasks": usage.tasks,
        "rss_mb": round(usage.rss_mb, 1),
    }


def _wait(condition: Callable[[], bool], limit: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def soak_lab(
    duration: float,
    interval: float,
    plain: int = 3,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    task_growth_after: float | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Run the lab soak (see the module docstring); the readings and the cycle counts.

    With ``task_growth_after`` (seconds), the tasks alive by name are read at the first
    reading after that time and at the end, and what grew is printed per node."""
    from ucsdk.lab import Lab
    from ucsdk.lab.scenarios import circuit_addr

    counts = {"punch_cycles": 0, "punched": 0, "plain_cycles": 0, "failed_cycles": 0}
    rows: list[dict[str, Any]] = []
    with Lab("soak", node_defaults=LAB_DEFAULTS) as lab:
        relay = lab.add_public_host("relay", enable_relay_server=True)
        p = lab.add_public_host("p")
        a = lab.add_host("a", nat="port_restricted")
        b = lab.add_host("b", nat="port_restricted")
        lab.wait_ready()
        hosts = {"relay": relay, "p": p, "a": a, "b": b}
        for h in (a, b):
            h.node.connect(relay.multiaddr())
        if not _wait(lambda: len(b.node.reservations()) == 1, 40, 0.2):
            b.node.reserve(relay.multiaddr())

        def connected(x: Any, y: Any) -> bool:
            return bool((x.node.connections()["peer_id"] == y.node.peer_id).any())

        def punch_cycle() -> None:
            before = len(b.node.hole_punches())
            a.node.connect(circuit_addr(b, relay), timeout=30)
            counts["punch_cycles"] += 1
            if _wait(lambda: len(b.node.hole_punches()) > before, 30, 0.1):
                outcome = b.node.hole_punches().iloc[-1]["outcome"]
                counts["punched"] += outcome in ("success", "direct_dial")
            a.node.ping(b.node.peer_id, count=1, timeout=10)
            a.node.disconnect(b.node.peer_id)
            _wait(lambda: not connected(a, b) and not connected(b, a), 10)

        def plain_cycle() -> None:
            a.node.connect(p.multiaddr(), timeout=10)
            a.node.ping(p.node.peer_id, count=1, timeout=10)
            a.node.disconnect(p.node.peer_id)
            counts["plain_cycles"] += 1
            _wait(lambda: not connected(a, p) and not connected(p, a), 10)

        t0 = time.monotonic()
        next_reading = 0.0
        names_then: dict[str, Counter[str]] = {}
        while True:
            now = time.monotonic() - t0
            if task_growth_after is not None and now >= task_growth_after and not names_then:
                names_then = {
                    n: Counter(dict(h.node.resources(True).task_names)) for n, h in hosts.items()
                }
            if now >= next_reading:
                cycles = counts["punch_cycles"] + counts["plain_cycles"]
                for name, h in hosts.items():
                    row = _row(t0, name, cycles, h.node.resources())
                    rows.append(row)
                    if on_row is not None:
                        on_row(row)
                next_reading += interval
            if now >= duration:
                break
            for cycle in (punch_cycle, *[plain_cycle] * plain):
                try:
                    cycle()
                except errors.UcsdkError as exc:
                    counts["failed_cycles"] += 1
                    print(f"  a cycle failed: {exc}"[:200], file=sys.stderr)
                    with contextlib.suppress(errors.UcsdkError):
                        a.node.disconnect(b.node.peer_id)
                        a.node.disconnect(p.node.peer_id)
        for name, then in names_then.items():
            grew = Counter(dict(hosts[name].node.resources(True).task_names)) - then
            print(f"  tasks that grew on {name}: {grew.most_common(8)}", file=sys.stderr)
    return pd.DataFrame(rows, columns=COLUMNS), counts


def soak_loopback(
    duration: float, interval: float, on_row: Callable[[dict[str, Any]], None] | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Plain cycles between two in-process nodes on loopback, reading this process."""
    from ucsdk import Node

    counts = {"plain_cycles": 0, "failed_cycles": 0}
    rows: list[dict[str, Any]] = []
    with Node.development(enable_mdns=False) as a, Node.development(enable_mdns=False) as b:
        t0 = time.monotonic()
        next_reading = 0.0
        while True:
            now = time.monotonic() - t0
            if now >= next_reading:
                row = _row(t0, "process", counts["plain_cycles"], a.resources())
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                next_reading += interval
            if now >= duration:
                break
            try:
                a.connect(b.addrs[0])
                a.ping(b.peer_id, count=1)
                a.disconnect(b.peer_id)
                counts["plain_cycles"] += 1
                _wait(lambda: a.connections().empty and b.connections().empty, 10)
            except errors.UcsdkError as exc:
                counts["failed_cycles"] += 1
                print(f"  a cycle failed: {exc}"[:200], file=sys.stderr)
    return pd.DataFrame(rows, columns=COLUMNS), counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (600)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between readings")
    parser.add_argument("--warmup", type=float, default=None, help="default: 20%% of duration")
    parser.add_argument("--plain", type=int, default=3, help="plain cycles per round (3)")
    for m, v in DEFAULT_SLACK.items():
        parser.add_argument(f"--slack-{m.replace('_', '-')}", type=float, default=v)
    parser.add_argument("--no-lab", action="store_true", help="loopback only, no root needed")
    parser.add_argument(
        "--task-growth", action="store_true", help="print which tasks grew after warm-up"
    )
    parser.add_argument("--json", metavar="FILE", help="also write readings and verdict")
    args = parser.parse_args(argv)
    warmup = args.duration * 0.2 if args.warmup is None else args.warmup
    slack = {m: getattr(args, f"slack_{m}") for m in METRICS}

    def show(row: dict[str, Any]) -> None:
        print("  ".join(f"{row[c]!s:>8}" for c in COLUMNS), flush=True)

    print("  ".join(f"{c:>8}" for c in COLUMNS), flush=True)
    if args.no_lab:
        frame, counts = soak_loopback(args.duration, args.interval, show)
    else:
        from ucsdk.lab import check_requirements

        try:
            check_requirements()
        except errors.LabUnavailable as exc:
            print(f"bench/soak.py: skipped: {exc} (--no-lab runs without the lab)")
            return 0
        frame, counts = soak_lab(
            args.duration,
            args.interval,
            args.plain,
            show,
            task_growth_after=warmup if args.task_growth else None,
        )
    result = verdict(frame, warmup, slack)
    print(f"cycles: {counts}")
    print(f"after {warmup:g} s of warm-up: {result.summary()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "readings": frame.to_dict("records"),
                    "counts": counts,
                    "warmup_s": warmup,
                    **dataclasses.asdict(result),
                },
                fh,
                indent=2,
            )
    return 0 if result.flat else 1


if __name__ == "__main__":
    sys.exit(main())
