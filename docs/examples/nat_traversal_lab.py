"""NAT traversal in the lab, start to finish (run as root): AutoNAT, relay, DCUtR.

.venv/bin/python docs/examples/nat_traversal_lab.py
"""

from __future__ import annotations

import time

import ucsdk.lab

DEFAULTS = {
    "connection_timeout": 3.0,  # a NAT drops unsolicited packets: fail fast
    "autonat_min_agreement": 1,  # one AutoNAT server (the relay) in this lab
}


def wait(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.1)
    return bool(predicate())


def show(title: str, frame, columns: list[str]) -> None:  # type: ignore[no-untyped-def]
    print(f"\n{title}")
    print(frame[columns].to_string(index=False))


with ucsdk.lab.Lab(node_defaults=DEFAULTS) as lab:
    relay = lab.add_public_host("relay", enable_relay_server=True)
    alice = lab.add_host("alice", nat="port_restricted")  # a home router
    bob = lab.add_host("bob", nat="port_restricted")
    carol = lab.add_host("carol", nat="symmetric")
    lab.wait_ready()
    for host in (alice, bob, carol):
        host.node.connect(relay.multiaddr())

    # 1. AutoNAT: the relay dials each peer back on a fresh connection; the NAT drops it.
    wait(lambda: all(len(h.node.reservations()) == 1 for h in (bob, carol)))
    show(
        "AutoNAT answers bob got (why bob thinks it is private):",
        bob.node.autonat_reports(),
        ["status", "status_text", "nat_status_after"],
    )

    # 2. Private, so bob and carol reserved a slot on the relay by themselves.
    show(
        "bob's reservation:",
        bob.node.reservations(),
        ["circuit_addrs", "expires_in_s", "limit_duration", "limit_data", "voucher_valid"],
    )

    # 3. alice reaches bob through the relay; bob drives DCUtR; the link becomes direct.
    circuit = bob.node.reservations().iloc[0]["circuit_addrs"][0]
    alice.node.connect(f"{circuit}/p2p/{bob.node.peer_id}")
    wait(lambda: len(bob.node.hole_punches()) > 0)
    show(
        "bob's hole punch with alice:",
        bob.node.hole_punches(),
        ["role", "transport", "attempts", "rtt_ms", "time_to_direct_ms", "outcome"],
    )
    time.sleep(1.5)  # the relayed leg closes after a grace period
    links = alice.node.connections()
    links["peer"] = links["peer_id"].map({h.node.peer_id: h.name for h in (relay, bob, carol)})
    show("alice's connections now:", links, ["peer", "remote_addr", "transport", "relayed"])

    # 4. carol is behind a symmetric NAT: the punch fails, the relay keeps them connected.
    circuit = carol.node.reservations().iloc[0]["circuit_addrs"][0]
    alice.node.connect(f"{circuit}/p2p/{carol.node.peer_id}")
    wait(lambda: len(carol.node.hole_punches()) > 0, 60)
    punch = carol.node.hole_punches().iloc[-1]
    print(f"\ncarol's hole punch with alice: {punch['outcome']} after {punch['attempts']} attempts")
    print(f"  why: {punch['reason'].split('; ')[-1]}")
    print(f"  still reachable through the relay: {alice.node.ping(carol.node.peer_id, count=1)}")
