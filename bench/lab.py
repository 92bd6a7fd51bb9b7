"""How long the NAT lab takes to build and tear down, and what a lab node costs.

Run (as root): ``.venv/bin/python bench/lab.py [--sizes 10 30 100] [--compare REV
[--compare-sizes 10 30]] [--json FILE]``.

For each size N: N hosts, the first public and the rest cycling through the NAT types
(port_restricted, symmetric, port_forwarded, double, none). Figures, all measured here:
- ``plumbing_s``: namespaces, veths, addresses, routes and nftables for N hosts, no nodes;
- ``plumbing_teardown_s``: removing them;
- ``build_s``: the same with a node process per host, until every node answers;
- ``teardown_s``: stopping every node and removing everything;
- ``namespaces``: namespaces the topology used (hosts, routers, the internet);
- ``ping_ms_median``: median of one ping from each NATed host to the first public host;
- memory of the node processes once every NATed host has connected and pinged, from
  ``/proc/<pid>/smaps_rollup``: ``rss_mb_median``; ``pss_mb_median`` / ``pss_mb_max``
  (proportional: each shared page divided among the processes that map it);
  ``uss_mb_median`` (unique: the node's private pages); ``pss_mb_per_node`` (the PSS of
  every node process plus the lab's zygote, if any, divided by N: what one more host costs).

Targets (issue 16): 100 hosts build in under 60 s, at most 60 MB PSS per node, teardown
under 15 s; printed as ``met`` / ``NOT met`` for the largest size measured (they speak of
100 hosts). ``--compare REV`` also measures another git revision (a temporary worktree,
same run, this bench file) at ``--compare-sizes`` (default: the sizes up to 30, since the
interpreter-per-host design needs about 130 MB of memory per host) and prints both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import pandas as pd
from _compare import run_on_revision

from ucsdk import errors
from ucsdk.lab import Lab, NatType, check_requirements

CYCLE = [
    NatType.PORT_RESTRICTED,
    NatType.SYMMETRIC,
    NatType.PORT_FORWARDED,
    NatType.DOUBLE,
    NatType.NONE,
]


TARGET_HOSTS = 100
TARGET_BUILD_S = 60.0
TARGET_PSS_MB = 60.0
TARGET_TEARDOWN_S = 15.0


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private clean + dirty) of ``pid`` in MB, from smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {
        "rss": fields.get("Rss", 0) / 1024,
        "pss": fields.get("Pss", 0) / 1024,
        "uss": uss / 1024,
    }


def _build(lab: Lab, size: int, node: bool) -> None:
    lab.add_public_host("h0", node=node)
    for i in range(1, size):
        lab.add_host(f"h{i}", nat=CYCLE[(i - 1) % len(CYCLE)], node=node)


def measure(size: int) -> dict[str, float | int]:
    lab = Lab(f"bench{size}")
    started = time.perf_counter()
    with lab:
        _build(lab, size, node=False)
        plumbing = time.perf_counter() - started
        namespaces = len(lab._namespaces)
        stopping = time.perf_counter()
    plumbing_teardown = time.perf_counter() - stopping

    lab = Lab(f"bench{size}n")
    started = time.perf_counter()
    lab.start()
    try:
        _build(lab, size, node=True)
        lab.wait_ready(timeout=300)
        build = time.perf_counter() - started
        hosts = list(lab._hosts.values())
        target = hosts[0]
        pings = []
        for h in hosts[1:]:
            if not h.is_public:
                h.node.connect(target.multiaddr(), timeout=30)
                pings.append(statistics.median(h.node.ping(target.node.peer_id, count=1)))
        memory = [memory_mb(h.node.pid) for h in hosts]
        zygotes = [memory_mb(z.pid) for z in getattr(lab, "_zygotes", [])]
    finally:
        stopping = time.perf_counter()
        lab.stop()
    teardown = time.perf_counter() - stopping
    return {
        "hosts": size,
        "namespaces": namespaces,
        "plumbing_s": round(plumbing, 2),
        "plumbing_teardown_s": round(plumbing_teardown, 2),
        "build_s": round(build, 2),
        "teardown_s": round(teardown, 2),
        "ping_ms_median": round(statistics.median(pings), 3) if pings else float("nan"),
        "rss_mb_median": round(statistics.median(m["rss"] for m in memory), 1),
        "pss_mb_median": round(statistics.median(m["pss"] for m in memory), 1),
        "pss_mb_max": round(max(m["pss"] for m in memory), 1),
        "uss_mb_median": round(statistics.median(m["uss"] for m in memory), 1),
        "pss_mb_per_node": round(
            (sum(m["pss"] for m in memory) + sum(z["pss"] for z in zygotes)) / size, 1
        ),
    }


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The three lab targets, judged on the largest size measured."""
    row = max(rows, key=lambda r: r["hosts"])
    n = row["hosts"]
    note = "" if n >= TARGET_HOSTS else f" (measured at {n} hosts, the target is {TARGET_HOSTS})"

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        f"target build of {TARGET_HOSTS} hosts < {TARGET_BUILD_S:g} s: {row['build_s']} s: "
        f"{verdict(n >= TARGET_HOSTS and row['build_s'] < TARGET_BUILD_S)}{note}",
        f"target PSS per node <= {TARGET_PSS_MB:g} MB: {row['pss_mb_per_node']} MB "
        f"(median node {row['pss_mb_median']} MB, max {row['pss_mb_max']} MB, with the "
        f"zygote's share): {verdict(n >= TARGET_HOSTS and row['pss_mb_per_node'] <= TARGET_PSS_MB)}"
        f"{note}",
        f"target teardown of {TARGET_HOSTS} hosts < {TARGET_TEARDOWN_S:g} s: "
        f"{row['teardown_s']} s: "
        f"{verdict(n >= TARGET_HOSTS and row['teardown_s'] < TARGET_TEARDOWN_S)}{note}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision")
    parser.add_argument(
        "--compare-sizes", type=int, nargs="+", help="sizes for --compare (default: up to 30)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--no-targets", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        check_requirements()
    except errors.LabUnavailable as exc:
        print(f"bench/lab.py: skipped: {exc}")
        return 0
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)", flush=True)
    rows = []
    for size in args.sizes:
        print(f"measuring {size} hosts ...", flush=True)
        rows.append({"revision": "this", **measure(size)})
    if args.compare:
        sizes = args.compare_sizes or [s for s in args.sizes if s <= 30] or args.sizes[:1]
        print(f"measuring {args.compare} at {sizes} hosts ...", flush=True)
        old = run_on_revision(__file__, ["--sizes", *map(str, sizes), "--no-targets"], args.compare)
        rows.extend({**r, "revision": args.compare} for r in old)
    frame = pd.DataFrame(rows).sort_values(["hosts", "revision"], kind="stable")
    print(frame.to_string(index=False))
    if not args.no_targets:
        for line in targets([r for r in rows if r["revision"] == "this"]):
            print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
