"""The pictures in docs/lab.md, made from a real NAT lab (run as root).

.venv/bin/python docs/examples/pictures.py [FOLDER]   (default: docs/images)

A public relay; alice and bob behind home routers; carol behind a symmetric NAT. alice
reaches bob and carol through the relay; bob's punch succeeds, carol's fails. Then punch
trials per target. Saved: the lab's picture before and after the punches (SVG), the
success-rate heatmap, the time to direct, RTT relayed vs direct and alice's connections
over time (PNG).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import ucsdk
from ucsdk.lab import Lab, NatType
from ucsdk.lab.scenarios import circuit_addr, punch_trials, success_rates, wait_until

DEFAULTS = {"connection_timeout": 3.0, "autonat_min_agreement": 1}


def main(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    with Lab("pics", node_defaults=DEFAULTS) as lab:
        relay = lab.add_public_host("relay", enable_relay_server=True)
        alice = lab.add_host("alice", nat=NatType.PORT_RESTRICTED)
        bob = lab.add_host("bob", nat=NatType.PORT_RESTRICTED)
        carol = lab.add_host("carol", nat=NatType.SYMMETRIC)
        lab.wait_ready()
        for h in (alice, bob, carol):
            h.node.connect(relay.multiaddr())
        assert wait_until(lambda: all(len(h.node.reservations()) for h in (bob, carol)), 40)
        # Relayed links: alice reaches carol (whose punch fails) and stays relayed.
        alice.node.connect(circuit_addr(carol, relay))
        assert wait_until(lambda: len(carol.node.hole_punches()) > 0, 40)
        saved.append(lab.network_graph().save(folder / "lab-relayed.svg"))
        alice.node.connect(circuit_addr(bob, relay))
        assert wait_until(lambda: len(bob.node.hole_punches()) > 0, 30)

        def bob_direct() -> bool:
            conns = alice.node.connections()
            links = conns[conns["peer_id"] == bob.node.peer_id]["relayed"]
            return len(links) > 0 and not links.any()  # the relayed leg closed, too

        assert wait_until(bob_direct, 10)
        saved.append(lab.network_graph().save(folder / "lab-after-punch.svg"))
        trials = pd.concat(
            [punch_trials(alice, t, relay, trials=2, measure_rtt=True) for t in (bob, carol)],
            ignore_index=True,
        )
        figures = {
            "success-heatmap.png": success_rates(trials).ucsdk.plot(),
            "time-to-direct.png": ucsdk.plots.time_to_direct(trials),
            "rtt-relayed-vs-direct.png": ucsdk.plots.rtt(trials),
            "metrics-over-time.png": alice.node.metrics_history().ucsdk.plot(),
        }
        for name, figure in figures.items():
            figure.savefig(folder / name, dpi=96)
            saved.append(folder / name)
    return saved


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1] / "images"
    for path in main(Path(sys.argv[1]) if len(sys.argv) > 1 else default):
        print(path)
