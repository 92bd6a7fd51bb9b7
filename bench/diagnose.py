"""How right is ``node.diagnose()``? Every pair of the lab's NAT types, against the lab.

Run (as root): ``.venv/bin/python bench/diagnose.py [--json FILE] [--types a,b,...]``.

One lab: a public relay, a second public host (so that every node has two QUIC observers
for its NAT type) and two hosts of each NAT type. Every node connects to both; each
node behind a NAT reserves on the relay once AutoNAT calls it private. Then, for every
pair of types (same-type pairs use the two hosts of that type), the first host runs
``diagnose(second, probe=True)``: it dials with the full strategy (direct, relay, DCUtR)
and explains what happened.

Per pair the table shows what actually happened (the connection left open: ``direct``,
``relay`` or ``none``), the verdict, and whether the verdict is right: its kind
(``reachable directly``, ``relay only``, ``unreachable``) is what happened, and a
relay-only verdict blames this node's NAT exactly when it maps endpoint-dependently.
``topology`` is what the lab's NATs allow (``direct`` when either side is public or
port-forwarded, or both map endpoint-independently so that a hole punch works; ``relay``
otherwise); a pair that ended worse than that is marked ``short``: the traversal, not the
diagnosis, fell short there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

TYPES = ("none", "port_forwarded", "port_restricted", "double", "symmetric")
DIRECT_TYPES = {"none", "port_forwarded"}
EIM_TYPES = {"port_restricted", "double"}
SHORT = {"none": "pub", "port_forwarded": "fwd", "port_restricted": "cone", "double": "dbl"}
DEFAULTS = {
    "connection_timeout": 3.0,
    "autonat_min_agreement": 1,
    "autonat_boot_delay": 1.0,
    "pubsub_announce_interval": 1.0,
    "enable_dht_discovery": False,
}


def truth(a: str, b: str) -> str:
    """What the topology allows between a host behind ``a`` and one behind ``b``."""
    if a in DIRECT_TYPES or b in DIRECT_TYPES or (a in EIM_TYPES and b in EIM_TYPES):
        return "direct"
    return "relay"


def kind_of(verdict: str) -> str:
    if verdict.startswith("reachable directly"):
        return "direct"
    if verdict.startswith("relay only"):
        return "relay"
    return "none"


def run(types: tuple[str, ...]) -> list[dict[str, Any]]:
    from ucsdk.lab import Lab
    from ucsdk.lab.scenarios import wait_until

    rows: list[dict[str, Any]] = []
    with Lab("diag", node_defaults=DEFAULTS) as lab:
        relay = lab.add_public_host("relay", enable_relay_server=True)
        observer = lab.add_public_host("obs")
        hosts: dict[str, list[Any]] = {}
        for nat in types:
            name = SHORT.get(nat, nat[:4])
            hosts[nat] = [
                lab.add_public_host(f"{name}{i}")
                if nat == "none"
                else lab.add_host(f"{name}{i}", nat=nat)
                for i in (1, 2)
            ]
        lab.wait_ready()
        everyone = [h for pair in hosts.values() for h in pair]
        for host in everyone:
            host.node.connect(relay.multiaddr("quic"))
            host.node.connect(observer.multiaddr("quic"))
        for nat, pair in hosts.items():
            if nat in ("none", "port_forwarded"):
                continue
            for host in pair:
                if not wait_until(lambda h=host: len(h.node.reservations()) > 0, 60, 0.2):
                    events = host.node.events().to_string(max_colwidth=120)
                    raise RuntimeError(f"{host.name} got no reservation:\n{events}")
        for a_type, b_type in itertools.combinations_with_replacement(types, 2):
            a = hosts[a_type][0]
            b = hosts[b_type][1] if a_type == b_type else hosts[b_type][0]
            peer = b.node.peer_id

            def known(a: Any = a, peer: str = peer) -> bool:
                peers = a.node.peers()
                return bool(len(peers[peers["peer_id"] == peer]))

            wait_until(known, 30, 0.2)
            started = time.monotonic()
            report = a.node.diagnose(peer, probe=True, timeout=20)
            took = time.monotonic() - started
            conns = a.node.connections()
            mine = conns[conns["peer_id"] == peer]
            happened = (
                "direct"
                if any(not r for r in mine["relayed"])
                else ("relay" if len(mine) else "none")
            )
            expected = truth(a_type, b_type)
            kind = kind_of(report.verdict)
            right = kind == happened
            if right and kind == "relay":
                # The blame must land on the side that maps endpoint-dependently.
                blames_self = "this node is behind a NAT that maps" in report.verdict
                right = blames_self == (a_type == "symmetric")
            rows.append(
                {
                    "a": a_type,
                    "b": b_type,
                    "truth": expected,
                    "happened": happened,
                    "verdict": report.verdict,
                    "right": right,
                    "seconds": round(took, 1),
                    "a_nat_type": a.node.nat_type().type,
                }
            )
            print(
                f"{a_type:>15} -> {b_type:15} topology {expected:6} happened {happened:6} "
                f"{'RIGHT' if right else 'WRONG'}  {report.verdict}",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    parser.add_argument("--types", default=",".join(TYPES), help="NAT types, comma-separated")
    args = parser.parse_args(argv)
    from ucsdk import errors
    from ucsdk.lab import check_requirements

    try:
        check_requirements()
    except errors.LabUnavailable as exc:
        print(f"bench/diagnose.py: skipped: {exc}")
        return 0
    types = tuple(t.strip() for t in args.types.split(",") if t.strip())
    unknown = [t for t in types if t not in TYPES]
    if unknown:
        parser.error(f"unknown NAT type(s) {unknown}; choose from {', '.join(TYPES)}")
    rows = run(types)
    right = sum(r["right"] for r in rows)
    short = sum(r["truth"] != r["happened"] for r in rows)
    print(f"\n{right}/{len(rows)} pairs diagnosed right; {short} ended short of the topology")
    print(f"{'a':>15} {'b':>15} {'topology':>8} {'happened':>8} {'right':>5}  verdict")
    for r in rows:
        mark = "" if r["truth"] == r["happened"] else " (short)"
        print(
            f"{r['a']:>15} {r['b']:>15} {r['truth']:>8} {r['happened'] + mark:>8} "
            f"{'yes' if r['right'] else 'NO':>5}  {r['verdict']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
