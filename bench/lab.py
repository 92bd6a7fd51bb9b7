"""How long the NAT lab takes to build and tear down, and what a lab node costs.

Run (as root): ``.venv/bin/python bench/lab.py [--sizes 3 10 30] [--json FILE]``.

For each size N: N hosts, the first public and the rest cycling through the NAT types
(port_restricted, symmetric, port_forwarded, double, none). Figures, all measured here:
- ``plumbing_s``: namespaces, veths, addresses, routes and nftables for N hosts, no nodes;
- ``plumbing_teardown_s``: removing them;
- ``build_s``: the same with a node process per host, until every node answers;
- ``teardown_s``: stopping every node and removing everything;
- ``namespaces``: namespaces the topology used (hosts, routers, the internet);
- ``rss_mb_median`` / ``rss_mb_max``: resident memory of the node processes, once up;
- ``ping_ms_median``: median of one ping from each NATed host to the first public host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import pandas as pd

from ucsdk import errors
from ucsdk.lab import Lab, NatType, check_requirements

CYCLE = [
    NatType.PORT_RESTRICTED,
    NatType.SYMMETRIC,
    NatType.PORT_FORWARDED,
    NatType.DOUBLE,
    NatType.NONE,
]


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
        rss = [h.node.rss_bytes() / 2**20 for h in hosts]
        target = hosts[0]
        pings = []
        for h in hosts[1:]:
            if not h.is_public:
                h.node.connect(target.multiaddr(), timeout=30)
                pings.append(statistics.median(h.node.ping(target.node.peer_id, count=1)))
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
        "rss_mb_median": round(statistics.median(rss), 1),
        "rss_mb_max": round(max(rss), 1),
        "ping_ms_median": round(statistics.median(pings), 3) if pings else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    try:
        check_requirements()
    except errors.LabUnavailable as exc:
        print(f"bench/lab.py: skipped: {exc}")
        return 0
    rows = []
    for size in args.sizes:
        print(f"measuring {size} hosts ...", flush=True)
        rows.append(measure(size))
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
