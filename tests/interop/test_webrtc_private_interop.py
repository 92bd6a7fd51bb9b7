"""Private-to-private WebRTC (``/webrtc``) between ucsdk and js-libp2p in Node.js
(``@libp2p/webrtc`` 6.0.33 on node-datachannel, with ``@libp2p/circuit-relay-v2``: the app's
node peer with ``--webrtc-via``), real processes on loopback. A ucsdk relay carries the
signalling (``/webrtc-signaling/0.0.1``: js trickles its candidates one message each, ucsdk
sends them in its description); each side dials the other's ``<circuit>/webrtc`` address and
they chat on the app's topic over the WebRTC connection, both ways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import ucsdk
from tests._util import wait_for
from tests.interop._ucjs import UcJsPeer
from ucsdk.apps.uc import CHAT_TOPIC, UC_SETTINGS, Chat

QUIET = {"enable_mdns": False, "enable_dht_discovery": False, "enable_autonat": False}
WEBRTC_PEER = {**QUIET, "auto_dial": False, "enable_webrtc": True, "enable_dcutr": False}


@pytest.fixture
def relay() -> Iterator[ucsdk.Node]:
    node = ucsdk.Node.development(**QUIET, enable_relay_server=True, relay_allow_unknown_ip=True)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def js(js_ready: Path, relay: ucsdk.Node) -> Iterator[UcJsPeer]:
    tcp = next(a for a in relay.addrs if "/tcp/" in a and "/ws" not in a)
    with UcJsPeer(js_ready, webrtc_via=tcp) as peer:
        yield peer


def _webrtc_rows(node: ucsdk.Node, peer: str) -> object:
    rows = node.connections()
    return rows[(rows["peer_id"] == peer) & (rows["transport"] == "webrtc")]


def _transports(node: ucsdk.Node, peer: str) -> list[str]:
    rows = node.connections()
    return list(rows[rows["peer_id"] == peer]["transport"])


def _chat_both_ways(js: UcJsPeer, chat: Chat, text: str) -> None:
    assert chat.node.wait_for_subscribers(CHAT_TOPIC, 1, timeout=20)
    assert js.wait_for_subscriber(CHAT_TOPIC, chat.node.peer_id)
    chat.send(text)
    got = js.wait_event("message", lambda e: e["topic"] == CHAT_TOPIC and e["text"] == text)
    assert got["from"] == chat.node.peer_id
    assert js.publish(CHAT_TOPIC, f"{text}, and back") == [chat.node.peer_id]
    line = chat.wait_for("chat", timeout=15)
    assert (line.text, line.peer_id) == (f"{text}, and back", js.peer_id)


def test_js_dials_ucsdk_over_webrtc_through_its_relay(js: UcJsPeer, relay: ucsdk.Node) -> None:
    with ucsdk.Node.development(**WEBRTC_PEER, **UC_SETTINGS) as node, Chat(node) as chat:
        tcp = next(a for a in relay.addrs if "/tcp/" in a and "/ws" not in a)
        circuit = node.reserve(tcp).circuit_addrs[0]
        answer = js.command("dial", addr=f"{circuit}/webrtc/p2p/{node.peer_id}")
        assert answer["peer"] == node.peer_id and answer["remoteAddr"].endswith(
            f"/p2p-circuit/webrtc/p2p/{node.peer_id}"
        )
        assert wait_for(lambda: len(_webrtc_rows(node, js.peer_id)) == 1, 10), node.connections()
        assert node.manager.webrtc is not None
        session = node.manager.webrtc.sessions()[-1]
        assert (session.role, session.outcome) == ("responder", "connected"), session
        # js trickles its candidates one message each; its connectivity checks often come
        # first, and ICE pairs with the address they came from (peer-reflexive).
        assert " -> " in session.selected, session
        _chat_both_ways(js, chat, "hello over webrtc from js's dial")
        assert not node.metrics().invalid_message_kinds


def test_ucsdk_dials_js_over_webrtc_through_the_relay(js: UcJsPeer) -> None:
    addr = next(a for a in js.addrs if "/p2p-circuit/webrtc/" in a)
    with ucsdk.Node.development(**WEBRTC_PEER, **UC_SETTINGS) as node, Chat(node) as chat:
        info = node.connect(addr)
        assert (info.peer_id, info.transport) == (js.peer_id, "webrtc")
        # The relayed leg closes after its grace period: the chat below takes WebRTC.
        assert wait_for(lambda: _transports(node, js.peer_id) == ["webrtc"], 15), node.connections()
        _chat_both_ways(js, chat, "hello over webrtc from ucsdk's dial")
        assert not node.metrics().invalid_message_kinds
