"""Private-to-private WebRTC (``/webrtc``) between real nodes on loopback: a relay, a node
reserved on it, and a node that dials ``<circuit>/webrtc/p2p/<peer>``: signalling over the
relayed connection, then a direct WebRTC connection that carries streams. And the
signalling handler against a hostile peer (garbage framing, messages out of order,
candidates it may not use, two sessions at once). Through real NATs: tests/nat/
test_webrtc_lab.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

import ucsdk
from tests._util import echo_round_trip, wait_for
from ucsdk._wire import encode_uvarint
from ucsdk.proto import SignalingMessage
from ucsdk.transports.webrtc_private import SIGNALING_PROTOCOL

QUIET = {"enable_mdns": False, "enable_dht_discovery": False, "enable_autonat": False}
WEBRTC = {**QUIET, "enable_webrtc": True, "enable_dcutr": False, "connection_timeout": 10.0}


def _frame(kind: int, data: str) -> bytes:
    body = SignalingMessage(type=kind, data=data.encode()).SerializeToString()
    return encode_uvarint(len(body)) + body


def _dropped(node: ucsdk.Node) -> dict[str, int]:
    kinds = node.metrics().invalid_message_kinds
    return {k.removeprefix("webrtc_signaling_"): v for k, v in kinds.items() if "signaling" in k}


@pytest.fixture
def trio_of_nodes() -> Iterator[tuple[ucsdk.Node, ucsdk.Node, ucsdk.Node]]:
    relay = ucsdk.Node.development(**QUIET, enable_relay_server=True, relay_allow_unknown_ip=True)
    a = ucsdk.Node.development(**WEBRTC)
    b = ucsdk.Node.development(**WEBRTC)
    try:
        yield relay, a, b
    finally:
        for node in (a, b, relay):
            node.stop()


def _webrtc_addr(relay: ucsdk.Node, b: ucsdk.Node) -> str:
    reservation = b.reserve(relay.addrs[0])
    circuit = reservation.circuit_addrs[0]
    return f"{circuit}/webrtc/p2p/{b.peer_id}"


def _webrtc_rows(node: ucsdk.Node, peer: str) -> Any:
    conns = node.connections()
    return conns[(conns["peer_id"] == peer) & (conns["transport"] == "webrtc")]


def test_a_relayed_connection_becomes_a_webrtc_one(trio_of_nodes: Any) -> None:
    relay, a, b = trio_of_nodes
    addr = _webrtc_addr(relay, b)
    assert "/p2p-circuit/webrtc/p2p/" in addr
    assert a.connect(addr).peer_id == b.peer_id
    assert len(_webrtc_rows(a, b.peer_id)) == 1
    assert wait_for(lambda: len(_webrtc_rows(b, a.peer_id)) == 1, 10), b.connections()
    row = _webrtc_rows(a, b.peer_id).iloc[0]
    assert not row["relayed"] and row["direction"] == "outbound"
    assert str(row["remote_addr"]).endswith("/webrtc")
    # New streams take the direct WebRTC connection (py-libp2p prefers direct ones).
    assert a.ping(b.peer_id, count=3)
    echo_round_trip(b, a, 256 * 1024 + 5, timeout=60)
    assert not _dropped(a) and not _dropped(b), (_dropped(a), _dropped(b))


def test_a_hang_up_is_noticed_at_once_and_streams_open_both_ways(trio_of_nodes: Any) -> None:
    """The side that did not hang up drops the connection when the peer's DTLS close
    arrives (it used to keep it until ICE consent failed, ~30 s, and opened streams on it
    that nobody answered); and each new connection carries streams in both directions."""
    relay, a, b = trio_of_nodes
    addr = _webrtc_addr(relay, b)
    for _ in range(3):
        a.connect(addr)
        assert wait_for(lambda: len(_webrtc_rows(b, a.peer_id)) == 1, 10), b.connections()
        assert len(a.ping(b.peer_id, count=2)) == 2
        assert len(b.ping(a.peer_id, count=2)) == 2
        a.disconnect(b.peer_id)
        assert wait_for(lambda: len(_webrtc_rows(b, a.peer_id)) == 0, 5), b.connections()


def test_bytes_sent_while_a_channel_opens_reach_the_stream() -> None:
    """A peer may answer on a new data channel the moment it opens (a multistream
    listener sends its header at once). Those bytes arrive on the bridge thread, possibly
    before the opener's trio side resumes: the stream is registered before its channel is
    created, so they are not dropped as "for an unknown channel"."""
    import trio
    from libp2p.peer.id import ID
    from libp2p.transport.webrtc._asyncio_bridge import AsyncioBridge
    from libp2p.transport.webrtc.connection import WebRTCConnection
    from libp2p.transport.webrtc.pb.webrtc_pb2 import Message

    import ucsdk.transports.webrtc  # noqa: F401  (ucsdk's fixes to py-libp2p's connection)

    answer = Message(message=b"/multistream/1.0.0\n")
    framed = encode_uvarint(answer.ByteSize()) + answer.SerializeToString()

    async def main() -> bytes:
        async with AsyncioBridge() as bridge:
            conn = WebRTCConnection(ID(b"\x00\x01\x00"), bridge, is_initiator=True)

            async def create_channel(channel_id: int, label: str) -> None:
                conn.on_channel_message(channel_id, framed)  # the peer's answer, at once

            conn._create_channel_cb = create_channel
            stream = await conn.open_stream()
            with trio.fail_after(5):
                return bytes(await stream.read(len(answer.message)))

    assert trio.run(main) == answer.message


def test_webrtc_needs_the_service_and_a_relay(trio_of_nodes: Any) -> None:
    relay, _, b = trio_of_nodes
    addr = _webrtc_addr(relay, b)
    with (
        ucsdk.Node.development(**QUIET) as plain,
        pytest.raises(ucsdk.errors.DialError, match="enable_webrtc"),
    ):
        plain.connect(addr)


# ------------------------------------------------------------------ a hostile peer
@pytest.fixture
def answerer() -> Iterator[ucsdk.Node]:
    """A WebRTC node that only allows public candidates (as a public deployment would)."""
    node = ucsdk.Node.development(**WEBRTC, dcutr_allow_private=False)
    try:
        yield node
    finally:
        node.stop()


def _attack(attacker: ucsdk.Node, victim: ucsdk.Node, payload: bytes) -> None:
    # The victim resets or ends the stream (perhaps before the protocol's echo arrives).
    with (
        contextlib.suppress(ucsdk.errors.UcsdkError),
        attacker.open_stream(victim.peer_id, SIGNALING_PROTOCOL) as stream,
    ):
        stream.write(payload)
        stream.read(timeout=15)


def test_garbage_framing_is_counted(answerer: ucsdk.Node) -> None:
    with ucsdk.Node.development(**QUIET) as attacker:
        attacker.connect(answerer.addrs[0])
        _attack(attacker, answerer, encode_uvarint(1 << 30) + b"x" * 10)  # a 1 GiB "message"
        assert wait_for(lambda: _dropped(answerer).get("malformed") == 1, 10), _dropped(answerer)
        _attack(attacker, answerer, _frame(SignalingMessage.SDP_ANSWER, "v=0"))  # out of order
        assert wait_for(lambda: _dropped(answerer).get("unexpected_message") == 1, 10)
        assert answerer.ping(attacker.peer_id, count=1)  # the node serves on


def test_candidates_it_may_not_use_are_refused(answerer: ucsdk.Node) -> None:
    """An offer whose candidates name loopback, private and TCP addresses: none is used
    (counted), so no connectivity check goes anywhere on the peer's word."""
    offer = "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "c=IN IP4 0.0.0.0",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:abcdefghijklmnopqrstuvwxyz",
            "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
            "a=setup:actpass",
            "a=mid:0",
            "a=sctp-port:5000",
            "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
            "a=candidate:2 1 udp 2130706431 10.1.2.3 5000 typ host",
            "a=candidate:3 1 tcp 2130706431 198.51.100.7 5000 typ host",
            "a=candidate:garbage",
            "",
        ]
    )
    with ucsdk.Node.development(**QUIET) as attacker:
        attacker.connect(answerer.addrs[0])
        _attack(attacker, answerer, _frame(SignalingMessage.SDP_OFFER, offer))
        refused = _dropped(answerer)
        assert refused.get("candidate_refused") == 2, refused
        assert refused.get("candidate_not_udp") == 1 and refused.get("candidate_malformed") == 1


def test_one_session_per_peer_at_a_time(answerer: ucsdk.Node) -> None:
    with ucsdk.Node.development(**QUIET) as attacker:
        attacker.connect(answerer.addrs[0])
        first = attacker.open_stream(answerer.peer_id, SIGNALING_PROTOCOL)
        first.write(b"\x05")  # a length, then silence: the session stays under way
        assert wait_for(lambda: answerer.manager.webrtc.sessions(), 10)
        _attack(attacker, answerer, _frame(SignalingMessage.SDP_OFFER, "v=0"))
        assert wait_for(lambda: _dropped(answerer).get("busy_with_peer") == 1, 10)
        first.close()
