"""Dialling a NATed peer: how long the seed's ``dial_peer`` takes, and what it returns.

Run (as root): ``.venv/bin/python bench/dial.py [--trials 3] [--compare REV]``.

Each trial builds a lab with the default timeouts: a public relay, ``a`` behind a home
router (it reserves on the relay once AutoNAT says private, and its circuit address
reaches ``b`` through pubsub discovery) and ``b`` behind a carrier-grade double NAT. Then
``b`` dials ``a`` two ways:

- ``given``: ``dial_peer(a, addrs=<a's private addresses>, use_relay=True)`` — the call
  with addresses a user copied from ``a``;
- ``known``: after disconnecting, ``dial_peer(a, use_relay=True)`` — only what the peer
  table knows.

Figures per way: ``ok`` (what ``dial_peer`` returned), ``call_ms`` (wall time of the call,
including the lab's pipe to the node process), ``to_direct_ms`` (from the call until the
only connection between them is direct, after DCUtR; ``nan`` if never within 20 s),
``circuits`` (relayed connections ``a`` accepted from ``b`` for the call: one dial should
open one circuit).

``--compare REV`` runs the same trials on another revision of ucsdk (checked out in a
temporary git worktree) in the same run and prints both side by side with their ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _compare import run_on_revision

DEFAULTS = {
    "autonat_min_agreement": 1,  # one public AutoNAT server in this lab
    "pubsub_announce_interval": 1.0,
    "enable_dht_discovery": False,
}
WAYS = ("given", "known")


def _direct_only(node: Any, peer: str) -> bool:
    conns = node.connections()
    mine = conns[conns["peer_id"] == peer]
    return len(mine) > 0 and not any(bool(r) for r in mine["relayed"])


def _connected(node: Any, peer: Any) -> bool:
    return any(
        p.peer_id == peer.node.peer_id and p.connected for p in node.node.get_discovered_peers()
    )


def _circuits_in(a: Any) -> int:
    events = a.node.events()
    return int((events["kind"] == "relay_relayed_in").sum())


def _time_dial(b: Any, a: Any, addrs: list[str] | None, wait_until: Any) -> dict[str, Any]:
    circuits_before = _circuits_in(a)
    started = time.monotonic()
    ok = bool(b.node.dial_peer(a.node.peer_id, addrs=addrs, use_relay=True, timeout=60))
    call_ms = (time.monotonic() - started) * 1000
    direct = ok and wait_until(lambda: _direct_only(b.node, a.node.peer_id), 20, 0.05)
    to_direct = (time.monotonic() - started) * 1000 if direct else float("nan")
    return {
        "ok": ok,
        "call_ms": round(call_ms, 1),
        "to_direct_ms": round(to_direct, 1),
        "circuits": _circuits_in(a) - circuits_before,
    }


def one_trial(index: int) -> dict[str, dict[str, Any]]:
    from ucsdk.lab import Lab
    from ucsdk.lab.scenarios import wait_until

    with Lab(f"dial{index}", node_defaults=DEFAULTS) as lab:
        relay = lab.add_public_host("relay", enable_relay_server=True)
        a = lab.add_host("a", nat="port_restricted")
        b = lab.add_host("b", nat="double")
        lab.wait_ready()
        a.node.connect(relay.multiaddr())
        b.node.connect(relay.multiaddr())
        if not wait_until(lambda: len(a.node.reservations()) == 1, 60, 0.2):
            raise RuntimeError(f"a got no reservation: {a.node.events().tail()}")

        def knows_circuit() -> bool:
            peers = b.node.peers()
            row = peers[peers["peer_id"] == a.node.peer_id]
            return bool(len(row)) and any("/p2p-circuit" in x for x in row.iloc[0]["multiaddrs"])

        if not wait_until(knows_circuit, 30, 0.2):
            raise RuntimeError("b never learnt a's circuit address")
        private = [x.rsplit("/p2p/", 1)[0] for x in a.node.addrs if "/ip4/10." in x]
        out = {"given": _time_dial(b, a, private, wait_until)}
        b.node.disconnect(a.node.peer_id)
        wait_until(lambda: not _connected(b, a), 10, 0.05)
        out["known"] = _time_dial(b, a, None, wait_until)
        return out


def run_trials(trials: int) -> dict[str, dict[str, Any]]:
    rows = [one_trial(i) for i in range(trials)]
    summary: dict[str, dict[str, Any]] = {}
    for way in WAYS:
        got = [r[way] for r in rows]
        summary[way] = {
            "ok": sum(g["ok"] for g in got),
            "trials": trials,
            "call_ms": statistics.median(g["call_ms"] for g in got),
            "to_direct_ms": statistics.median(g["to_direct_ms"] for g in got),
            "circuits": max(g.get("circuits", 0) for g in got),
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    from ucsdk import errors
    from ucsdk.lab import check_requirements

    try:
        check_requirements()
    except errors.LabUnavailable as exc:
        print(f"bench/dial.py: skipped: {exc}")
        return 0
    import ucsdk

    print(f"measuring this tree ({Path(ucsdk.__file__).parent}), {args.trials} trials", flush=True)
    now = run_trials(args.trials)
    columns: dict[str, dict[str, dict[str, Any]]] = {"this": now}
    if args.compare:
        print(f"measuring {args.compare}, {args.trials} trials", flush=True)
        columns[args.compare] = run_on_revision(
            __file__, ["--trials", str(args.trials)], args.compare
        )
    print(
        f"{'way':6} {'revision':12} {'ok':>6} {'call ms':>9} {'to direct ms':>13} "
        f"{'max circuits':>12}"
    )
    for way in WAYS:
        for name, figures in columns.items():
            f = figures[way]
            print(
                f"{way:6} {name[:12]:12} {f['ok']:>3}/{f['trials']:<2} {f['call_ms']:>9.1f} "
                f"{f['to_direct_ms']:>13.1f} {f.get('circuits', '–'):>12}"
            )
        if args.compare:
            old, new = columns[args.compare][way], now[way]
            ratios = [old[k] / new[k] for k in ("call_ms", "to_direct_ms")]
            shown = ["–" if math.isnan(r) else f"{r:.1f}x" for r in ratios]
            print(f"{way:6} {'old/this':12} {'':6} {shown[0]:>9} {shown[1]:>13}")
    if args.json:
        Path(args.json).write_text(json.dumps(now if not args.compare else columns, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
