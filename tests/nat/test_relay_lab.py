"""Circuit Relay v2 on the NAT lab: two peers behind different NATs meet through a relay."""

from __future__ import annotations

import time

import pytest

import ucsdk.lab

pytestmark = pytest.mark.lab

DEFAULTS = {
    "connection_timeout": 3.0,
    "autonat_min_agreement": 1,  # one public server here
    "pubsub_announce_interval": 1.0,
    "enable_dcutr": False,  # this test is about the relay alone
}


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def test_natted_peers_connect_through_a_relay(lab_required: None) -> None:
    with ucsdk.lab.Lab(node_defaults=DEFAULTS) as lab:
        relay = lab.add_public_host("relay", enable_relay_server=True)
        a = lab.add_host("a", nat="port_restricted")
        b = lab.add_host("b", nat="symmetric")
        c = lab.add_host("c", nat="double")
        lab.wait_ready()
        a.node.connect(relay.multiaddr())
        b.node.connect(relay.multiaddr())
        # b learns from AutoNAT that it is private and reserves a slot by itself.
        assert _wait(lambda: len(b.node.reservations()) == 1, 30), b.node.events()
        reservation = b.node.reservations().iloc[0]
        assert reservation["relay_peer_id"] == relay.node.peer_id
        assert bool(reservation["voucher_valid"])
        assert any(
            c.startswith(f"/ip4/{relay.address}/tcp/4001/p2p/")
            for c in reservation["circuit_addrs"]
        )

        # a cannot dial b directly (NAT), but finds b's circuit address through pubsub
        # discovery and the dial strategy falls back to the relay.
        def knows_circuit() -> bool:
            peers = a.node.peers()
            row = peers[peers["peer_id"] == b.node.peer_id]
            return bool(len(row)) and any("/p2p-circuit" in x for x in row.iloc[0]["multiaddrs"])

        assert _wait(knows_circuit, 20)
        assert a.node.dial_peer(b.node.peer_id, timeout=30)
        conns = a.node.connections()
        to_b = conns[conns["peer_id"] == b.node.peer_id].iloc[0]
        assert to_b["transport"] == "relay" and bool(to_b["relayed"])
        rtts = a.node.ping(b.node.peer_id, count=3)  # data both ways through the relay
        assert len(rtts) == 3
        metrics = a.node.metrics()
        assert metrics.relay_connections == 1 and metrics.direct_connections == 1
        events = a.node.events()
        success = events[events["kind"] == "dial_succeeded"]
        assert success["detail"].str.contains("relayed in").any()
        # An explicit circuit multiaddr works with connect() too.
        tcp_circuit = next(x for x in reservation["circuit_addrs"] if "/tcp/" in x)
        info = c.node.connect(f"{tcp_circuit}/p2p/{b.node.peer_id}")
        assert info.peer_id == b.node.peer_id
        assert c.node.ping(b.node.peer_id, count=1)
        b_events = b.node.events()
        assert (b_events["kind"] == "relay_relayed_in").any()
        relay_events = relay.node.events()
        assert (relay_events["kind"] == "relay_circuit_opened").any()
        assert (relay_events["kind"] == "relay_reservation_granted").any()
