"""DCUtR responder attacks by a hostile peer in another process: port scanning and
reflection through CONNECT, and stream floods.

The victim is a TCP socket listening on 127.0.0.1 in this process; it counts every
connection that reaches it. The node under test is told a public IP of its own
(203.0.113.9, as if identify had confirmed it), so that it has something to offer in
CONNECT: a node without one never punches, and would hide the hole.
"""

from __future__ import annotations

from _attacker import Attacker
from _hostile_peers import wait_until
from _victim import Victim

import ucsdk
from ucsdk._wire import encode_uvarint
from ucsdk.config import ConnectivityConfig
from ucsdk.proto import HolePunch


def _knows_public_ip(node: ucsdk.Node) -> None:
    dcutr = node.manager.dcutr
    assert dcutr is not None
    dcutr.public_ips = lambda: ["203.0.113.9"]


def _dropped(node: ucsdk.Node, reason: str) -> int:
    return int(node.metrics().invalid_message_kinds.get(f"dcutr_{reason}", 0))


def test_dcutr_over_a_direct_connection_is_reset_and_nothing_is_dialled(victim: Victim) -> None:
    # The development preset allows private/loopback targets: even so, a stream that does
    # not arrive over a relayed connection is refused before its CONNECT is read.
    node = ucsdk.Node.development(enable_mdns=False)
    try:
        _knows_public_ip(node)
        with Attacker() as attacker:
            attacker.run("connect", addr=node.addrs[0])
            for _ in range(3):
                answer = attacker.run(
                    "dcutr_connect", peer=node.peer_id, addrs=[victim.addr], wait=3
                )
                # Reset at once: the opener sees the reset during or right after the
                # protocol negotiation, never a CONNECT.
                assert not answer["answered"], answer
                assert answer["ended"] != "timeout", answer
            assert wait_until(lambda: _dropped(node, "not_relayed") == 3, 5)
        assert victim.accepted == 0
        assert len(node.hole_punches()) == 0
    finally:
        node.stop()


def _relayed_setup(
    allow_private: bool,
) -> tuple[ucsdk.Node, ucsdk.Node]:
    relay = ucsdk.Node.development(enable_mdns=False, enable_relay_server=True)
    config = ConnectivityConfig.preset(
        "development", enable_mdns=False, dcutr_allow_private=allow_private
    )
    node = ucsdk.Node(config)
    node.reserve(relay.addrs[0])
    _knows_public_ip(node)
    return relay, node


def test_relayed_connect_naming_loopback_is_not_dialled_by_default(victim: Victim) -> None:
    relay, node = _relayed_setup(allow_private=False)
    try:
        with Attacker() as attacker:
            attacker.run("relay_dial", peer=node.peer_id, relay_addr=relay.addrs[0])
            answer = attacker.run(
                "dcutr_connect",
                peer=node.peer_id,
                addrs=[victim.addr, "/ip4/10.1.2.3/tcp/22", "/ip4/192.168.1.1/udp/53/quic-v1"],
                wait=8,
            )
            # The exchange itself is answered (it is a relayed connection), but none of
            # the three addresses is dialled: each one is refused and counted.
            assert answer["answered"], answer
            assert wait_until(lambda: _dropped(node, "address_refused") >= 3, 10)
            # Junk over the relayed connection is read (under the 4 KiB cap) and counted.
            oversized = encode_uvarint(5000) + b"\x00" * 5000
            sync_first = HolePunch(type=300).SerializeToString()
            for frame in (oversized, encode_uvarint(len(sync_first)) + sync_first):
                answer = attacker.run(
                    "send", peer=node.peer_id, protocol="/libp2p/dcutr", hex=frame.hex(), wait=5
                )
                assert answer["opened"] and answer["ended"] != "timeout", answer
            assert wait_until(
                lambda: _dropped(node, "malformed") == 1 and _dropped(node, "unexpected") == 1, 10
            ), node.metrics().invalid_message_kinds
        assert victim.accepted == 0
    finally:
        node.stop()
        relay.stop()


def test_relayed_dcutr_flood_is_one_exchange_at_a_time(victim: Victim) -> None:
    # Here private targets are allowed (a lab/development node): the per-peer cap alone
    # must keep a flood of 30 concurrent exchanges from turning into 30 x 3 dials.
    relay, node = _relayed_setup(allow_private=True)
    try:
        with Attacker() as attacker:
            attacker.run("relay_dial", peer=node.peer_id, relay_addr=relay.addrs[0])
            outcomes = attacker.run(
                "dcutr_flood", peer=node.peer_id, addrs=[victim.addr], count=30, wait=8
            )
            assert outcomes.get("answered", 0) <= 1, outcomes
            assert wait_until(lambda: _dropped(node, "busy_peer") >= 29, 10)
        # One exchange: at most one dial to the victim per attempt (3 attempts).
        assert victim.accepted <= 3
    finally:
        node.stop()
        relay.stop()


def test_driving_side_does_not_dial_a_loopback_address_the_peer_answers_with(
    victim: Victim,
) -> None:
    # The node is B (the attacker reached it through a relay, so it drives the upgrade);
    # the attacker's CONNECT answer names the victim. Default rule: not dialled, counted.
    relay, node = _relayed_setup(allow_private=False)
    try:
        with Attacker() as attacker:
            attacker.run("dcutr_answer_with", addrs=[victim.addr])
            attacker.run("relay_dial", peer=node.peer_id, relay_addr=relay.addrs[0])
            assert wait_until(lambda: len(node.hole_punches()) >= 1, 20)
            row = node.hole_punches().iloc[0]
            assert row["role"] == "initiator" and row["outcome"] == "no_addresses", dict(row)
            assert _dropped(node, "address_refused") >= 1
        assert victim.accepted == 0
    finally:
        node.stop()
        relay.stop()


def test_dcutr_exchanges_are_capped_in_total() -> None:
    # 12 identities, each over its own relayed connection, start an exchange at once:
    # at most max_inbound (8) are answered; the rest are reset and counted as too_many.
    # The attacker names no address, so no exchange can end in a dial: what is measured is
    # how many exchanges the node takes on at once.
    relay, node = _relayed_setup(allow_private=False)
    try:
        dcutr = node.manager.dcutr
        assert dcutr is not None
        assert getattr(dcutr, "max_inbound", 8) == 8
        with Attacker() as attacker:
            outcomes = attacker.run(
                "dcutr_many_identities",
                timeout=90,
                peer=node.peer_id,
                relay_addr=relay.addrs[0],
                count=12,
                addrs=[],
                wait=3,
            )
            assert outcomes.get("answered", 0) <= 8, outcomes
            assert wait_until(lambda: _dropped(node, "too_many") >= 4, 10), outcomes
    finally:
        node.stop()
        relay.stop()
