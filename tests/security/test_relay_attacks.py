"""Hostile peers (separate attacker processes on loopback) against a node's relay server
and relay client: STOP streams that fail, circuits whose source vanishes, identities
that hide their IP, a relay that lies about who is calling."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from _attacker import Attacker
from _util import QUIET_NODE, on_loop, wait_for
from libp2p.peer.id import ID

import ucsdk
from ucsdk.identity import new_key_pair
from ucsdk.nat.relay import CONNECTION_FAILED, OK, RESERVATION_REFUSED

RELAY: dict[str, Any] = {**QUIET_NODE, "enable_relay_server": True}


def tcp_addr(node: ucsdk.Node) -> str:
    return next(a for a in node.addrs if "/tcp/" in a and "/ws" not in a)


def dropped(node: ucsdk.Node) -> dict[str, int]:
    return dict(node.metrics().invalid_message_kinds)


def circuits(node: ucsdk.Node) -> int:
    def count() -> int:
        server = node.manager.relay_server
        assert server is not None
        return len(server.circuits)

    return on_loop(node, count)


def streams_to(node: ucsdk.Node, peer: str) -> int:
    """Open streams the node holds on its connections to ``peer``."""

    def count() -> int:
        host = node.manager.host
        conns = host.get_network().connections.get(ID.from_base58(peer), [])
        return sum(len(c.get_streams()) for c in conns)

    return on_loop(node, count)


@pytest.fixture
def relay_node() -> Iterator[ucsdk.Node]:
    node = ucsdk.Node.development(
        **RELAY,
        listen_addrs=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"],
    )
    try:
        yield node
    finally:
        node.stop()


def _target(attacker: Attacker, node: ucsdk.Node, mode: str, watch: float = 20) -> None:
    attacker.run("connect", addr=tcp_addr(node))
    assert attacker.run("stop_handler", mode=mode, watch=watch)
    assert attacker.run("relay_reserve", relay=node.peer_id) == OK


@pytest.mark.parametrize("mode", ["garbage", "reset"])
def test_a_failed_stop_stream_is_reset_and_leaves_no_circuit(
    relay_node: ucsdk.Node, mode: str
) -> None:
    """A target whose STOP handler answers garbage (or resets): the relay resets the STOP
    stream at once (before: it stayed open for the life of the target's connection)."""
    node = relay_node
    with Attacker() as target, Attacker() as source:
        _target(target, node, mode, watch=8)
        before = streams_to(node, target.peer_id)
        source.run("connect", addr=tcp_addr(node))
        assert source.run("hop_connect", relay=node.peer_id, target=target.peer_id) == {
            "status": CONNECTION_FAILED
        }
        seen = wait_for(lambda: target.run("stop_seen"), 10)
        assert len(seen) == 1
        if mode == "garbage":
            # The target watched its STOP stream: the relay ended it, within seconds.
            seen = wait_for(
                lambda: [s for s in target.run("stop_seen") if s["ended"] != "open"], 12
            )
            assert seen and seen[0]["ended"] in ("reset", "eof"), seen
            assert seen[0]["after"] < 5
        # The relay holds no stream and no circuit for it any more.
        assert wait_for(lambda: streams_to(node, target.peer_id) <= before, 5)
        assert circuits(node) == 0
        assert dropped(node).get("relay_stop_failed") == 1


def test_a_circuit_ends_when_its_source_disconnects(relay_node: ucsdk.Node) -> None:
    """The source drops its connection to the relay right after the circuit opens; the
    target keeps its end open and silent. The relay removes the circuit within seconds
    (before: it stayed in ``circuits`` until the 120 s duration limit)."""
    node = relay_node
    with Attacker() as target, Attacker() as source:
        _target(target, node, "accept", watch=30)
        source.run("connect", addr=tcp_addr(node))
        answer = source.run(
            "hop_connect", relay=node.peer_id, target=target.peer_id, then="disconnect"
        )
        assert answer == {"status": OK}
        started = time.monotonic()
        assert wait_for(lambda: circuits(node) == 0, 10), "the circuit outlived its source"
        assert time.monotonic() - started < 10
        # The target's end was torn down too.
        seen = wait_for(lambda: [s for s in target.run("stop_seen") if s["ended"] != "open"], 5)
        assert seen and seen[0]["ended"] in ("reset", "eof")

        def closed_reason() -> str | None:
            server = node.manager.relay_server
            assert server is not None
            return server.closed_circuits[-1].ended if server.closed_circuits else None

        assert "source" in (on_loop(node, closed_reason) or "")


def test_an_idle_circuit_is_closed_at_the_duration_limit() -> None:
    """A circuit both ends keep open and silent ends at ``relay_limit_duration``."""
    node = ucsdk.Node.development(
        **RELAY,
        relay_limit_duration=4,
    )
    try:
        with Attacker() as target, Attacker() as source:
            _target(target, node, "accept", watch=30)
            source.run("connect", addr=tcp_addr(node))
            assert source.run("hop_connect", relay=node.peer_id, target=target.peer_id) == {
                "status": OK
            }
            # The circuit lived (the target saw it open), then the relay ended it: no sooner
            # than the limit (a second's slack for the two clocks), and not long after even
            # on a busy machine. (Counting it open right after CONNECT raced the limit.)
            assert wait_for(lambda: circuits(node) == 0, 20)
            seen = wait_for(lambda: [s for s in target.run("stop_seen") if s["ended"] != "open"], 5)
            assert seen and seen[0]["ended"] == "reset" and 3 < seen[0]["after"] < 20
    finally:
        node.stop()


def test_websocket_identities_cannot_dodge_the_per_ip_limit(relay_node: ucsdk.Node) -> None:
    """Ten fresh identities from one IP reserve over WebSocket, where py-libp2p reports no
    remote address: at most ``max_reservations_per_ip`` (8) get a slot (before: all)."""
    node = relay_node
    ws = next(a for a in node.addrs if "/ws" in a)
    with Attacker() as attacker:
        statuses = attacker.run("ws_reserve_flood", addr=ws, count=10)
    assert statuses.count(OK) == 8
    assert statuses.count(RESERVATION_REFUSED) == 2
    assert dropped(node).get("relay_per_ip_limit") == 2


def test_a_relayed_peer_that_is_not_who_the_relay_announced_is_refused() -> None:
    """A relay we reserved on announces a connection from peer X and secures it as Y:
    the node closes it and counts it (before: accepted, only logged)."""
    node = ucsdk.Node.development(
        **QUIET_NODE,
    )
    try:
        with Attacker() as relay:
            assert relay.run("fake_relay")
            node.reserve(relay.addr)
            claimed = ID.from_pubkey(new_key_pair().public_key).to_base58()
            answer = relay.run("stop_as_other", victim=node.peer_id, claim=claimed, wait=5)
            assert answer == {"status": OK, "closed": True}
            assert dropped(node).get("relay_client_peer_mismatch") == 1

            def no_relayed() -> bool:
                frame = node.connections()
                return not len(frame) or not frame["relayed"].any()

            assert wait_for(no_relayed, 5)
    finally:
        node.stop()


def test_a_circuit_over_its_data_limit_is_closed() -> None:
    """The source pushes 256 KiB into a circuit limited to 64 KiB each way: the target gets
    at most 64 KiB, both ends are reset and the circuit is removed."""
    node = ucsdk.Node.development(
        **RELAY,
        relay_limit_data=65536,
    )
    try:
        with Attacker() as target, Attacker() as source:
            _target(target, node, "accept", watch=30)
            source.run("connect", addr=tcp_addr(node))
            answer = source.run(
                "hop_connect", relay=node.peer_id, target=target.peer_id, then="send", bytes=262144
            )
            assert answer["status"] == OK
            assert wait_for(lambda: circuits(node) == 0, 10)
            seen = wait_for(lambda: [s for s in target.run("stop_seen") if s["ended"] != "open"], 5)
            assert seen and seen[0]["ended"] == "reset"
            assert 0 < seen[0]["bytes"] <= 65536
    finally:
        node.stop()


def test_relay_allow_unknown_ip_is_validated() -> None:
    """The knob that widens the rule is a plain bool, checked when the config is made."""
    from ucsdk.config import ConnectivityConfig
    from ucsdk.errors import ConfigError

    assert ConnectivityConfig().relay_allow_unknown_ip is False
    assert ConnectivityConfig(relay_allow_unknown_ip=True).relay_allow_unknown_ip is True
    with pytest.raises(ConfigError, match="relay_allow_unknown_ip"):
        ConnectivityConfig(relay_allow_unknown_ip="yes")  # type: ignore[arg-type]
