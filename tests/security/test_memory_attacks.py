"""What a remote peer can make a node keep: bloated identify answers and swarms of fresh
identities claiming to be relays, from attacker processes on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from _attacker import Attacker
from _util import QUIET_NODE, on_loop, wait_for
from libp2p.peer.id import ID

import ucsdk
from ucsdk.connectivity.identify import (
    MAX_LISTEN_ADDRS,
    MAX_PROTOCOL_LENGTH,
    MAX_PROTOCOLS,
    MAX_STRING,
)
from ucsdk.connectivity.natcoord import MAX_RELAYS_SEEN
from ucsdk.peers import MAX_ADDRS_PER_PEER


@pytest.fixture
def node() -> Iterator[ucsdk.Node]:
    node = ucsdk.Node.development(**QUIET_NODE, auto_dial=False)
    try:
        yield node
    finally:
        node.stop()


def kept(node: ucsdk.Node, peer: str) -> dict[str, Any]:
    """What the node holds about ``peer``: its peer record and py-libp2p's peerstore."""

    def read() -> dict[str, Any]:
        record = node.manager.peers.get(peer)
        store = node.manager.host.get_peerstore()
        pid = ID.from_base58(peer)
        try:
            protocols, addrs = list(store.get_protocols(pid)), list(store.addrs(pid))
        except Exception:  # not in the peerstore
            protocols, addrs = [], []
        return {
            "agent": record.agent_version if record else None,
            "protocols": list(record.protocols) if record else [],
            "addrs": list(record.multiaddrs) if record else [],
            "store_protocols": protocols,
            "store_addrs": [str(a) for a in addrs],
        }

    return on_loop(node, read)


def test_a_bloated_identify_answer_is_kept_within_bounds(node: ucsdk.Node) -> None:
    """An attacker answers identify with a 20 000-char agent and protocol version, 1000
    protocol ids (some 300 chars long) and 200 addresses: the node keeps at most 256
    chars, 256 protocols (none over 128 chars) and 64 addresses, in its peer table and in
    py-libp2p's peerstore, and counts each cut (before: the peerstore kept all 1000
    protocols and 200 addresses, and nothing was counted)."""
    with Attacker() as attacker:
        assert attacker.run(
            "bloated_identify", agent=20000, protocols=1000, long_protocols=10, addrs=200
        )
        attacker.run("connect", addr=node.addrs[0])
        assert wait_for(lambda: kept(node, attacker.peer_id)["agent"], 15)
        # Both identifies (py-libp2p's and ucsdk's) have run once the record has its agent;
        # the peerstore trim follows in the same step.
        state = kept(node, attacker.peer_id)
        assert len(state["agent"]) == MAX_STRING
        assert 0 < len(state["protocols"]) <= MAX_PROTOCOLS
        assert all(len(p) <= MAX_PROTOCOL_LENGTH for p in state["protocols"])
        assert len(state["addrs"]) <= MAX_ADDRS_PER_PEER
        assert len(state["store_protocols"]) <= MAX_PROTOCOLS
        assert all(len(p) <= MAX_PROTOCOL_LENGTH for p in state["store_protocols"])
        assert len(state["store_addrs"]) <= MAX_LISTEN_ADDRS + 2
        counted = node.metrics().invalid_message_kinds
        for kind in (
            "identify_long_agent",
            "identify_long_protocol_version",
            "identify_long_protocol",
            "identify_too_many_protocols",
            "identify_too_many_addrs",
        ):
            assert counted.get(kind, 0) >= 1, (kind, counted)


def test_a_64_kib_agent_string_is_never_kept(node: ucsdk.Node) -> None:
    """A 64 KiB agent string: the answer is over identify's 64 KiB cap, so nothing of it is
    kept; the refusal is counted (before: only logged at debug, and retried) and the node
    still answers."""
    with Attacker() as attacker:
        assert attacker.run("bloated_identify", agent=65536)
        attacker.run("connect", addr=node.addrs[0])
        # ucsdk's identify gives up on the oversize answer, and counts it.
        assert wait_for(lambda: node.metrics().invalid_message_kinds.get("identify_malformed"), 15)
        state = kept(node, attacker.peer_id)
        assert state["agent"] is None or len(state["agent"]) <= MAX_STRING
        answer = attacker.run("send", peer=node.peer_id, protocol="/ipfs/ping/1.0.0", hex="00" * 32)
        assert answer["reply_hex"] == "00" * 32


def test_fresh_identities_claiming_to_be_relays_cannot_push_out_a_real_one(
    node: ucsdk.Node,
) -> None:
    """One relay connects first; then 80 fresh identities, each speaking the relay hop
    protocol, connect, get identified and leave. The relays-seen set stays within its
    bound and still holds the real relay (before: the flood evicted it, oldest first)."""
    with Attacker() as relay:
        assert relay.run("fake_relay")
        relay.run("connect", addr=node.addrs[0])

        def connected_relays() -> list[str]:
            return on_loop(node, node.manager.nat.connected_relays)

        assert wait_for(lambda: relay.peer_id in connected_relays(), 10)
        with Attacker() as flood:
            identified = flood.run(
                "claim_relay_flood", addr=node.addrs[0], count=80, at_once=6, timeout=20
            )
            assert identified >= 70  # the flood really reached the node
            seen = on_loop(node, lambda: list(node.manager.nat._relays_seen))
            assert len(seen) <= MAX_RELAYS_SEEN
            assert relay.peer_id in connected_relays()

        def prune_all() -> int:
            nat = node.manager.nat
            nat.prune_relays(time.monotonic() + 3600)  # as if an hour had passed
            return len(nat._relays_seen)

        def left() -> list[tuple[str, bool]]:
            nat = node.manager.nat
            return [(r[-8:], nat.is_connected(r)) for r in nat._relays_seen]

        # The flood's process has ended, so its connections are gone; once they have aged
        # out, only the real (connected) relay remains.
        assert wait_for(lambda: on_loop(node, prune_all) == 1, 20), (
            relay.peer_id[-8:],
            on_loop(node, left),
        )


def test_a_bloated_identify_push_is_kept_within_bounds(node: ucsdk.Node) -> None:
    """After identify, the attacker pushes 1000 protocols and 500 addresses: the peerstore
    keeps at most the caps and the cut is counted (before: py-libp2p's push handler stored
    all 1000 protocols and 500 addresses)."""
    with Attacker() as attacker:
        attacker.run("connect", addr=node.addrs[0])
        assert wait_for(lambda: kept(node, attacker.peer_id)["agent"], 15)
        assert attacker.run("identify_push_bloat", peer=node.peer_id, protocols=1000, addrs=500)

        def counted() -> int:
            return int(node.metrics().invalid_message_kinds.get("identify_too_many_protocols", 0))

        assert wait_for(counted, 10)
        # The push changed the peerstore (so it was taken in), within the caps.
        state = wait_for(
            lambda: (
                (s := kept(node, attacker.peer_id))
                and any(p.startswith("/pushed/") for p in s["store_protocols"])
                and s
            ),
            10,
        )
        assert state, "the push never reached the peerstore"
        assert len(state["store_protocols"]) <= MAX_PROTOCOLS
        assert len(state["store_addrs"]) <= MAX_LISTEN_ADDRS + 2
