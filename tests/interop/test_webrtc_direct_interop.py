"""WebRTC-Direct between ucsdk and js-libp2p in Node.js (``@libp2p/webrtc`` 6.0.33 on
node-datachannel, the app's node peer with ``--webrtc-direct``), real processes on
loopback: each dials the other's ``/webrtc-direct/certhash/…`` address (v1, what both
dialers speak by default) and they chat on the app's topic over it, both ways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import ucsdk
from tests._util import wait_for
from tests.interop._ucjs import UcJsPeer
from ucsdk.apps.uc import CHAT_TOPIC, UC_SETTINGS, Chat

ONLY_THE_JS_PEER = {
    "enable_mdns": False,
    "enable_dht_discovery": False,
    "enable_autonat": False,
    "auto_dial": False,
    **UC_SETTINGS,
}
LISTEN = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/webrtc-direct"]


@pytest.fixture
def js(js_ready: Path) -> Iterator[UcJsPeer]:
    with UcJsPeer(js_ready, webrtc_direct=True) as peer:
        yield peer


def _node() -> ucsdk.Node:
    return ucsdk.Node.development(listen_addrs=LISTEN, **ONLY_THE_JS_PEER)


def _chat_both_ways(js: UcJsPeer, chat: Chat) -> None:
    assert chat.node.wait_for_subscribers(CHAT_TOPIC, 1, timeout=20)
    assert js.wait_for_subscriber(CHAT_TOPIC, chat.node.peer_id)
    chat.send("hello over webrtc-direct")
    got = js.wait_event("message", lambda e: e["topic"] == CHAT_TOPIC)
    assert (got["from"], got["text"]) == (chat.node.peer_id, "hello over webrtc-direct")
    assert js.publish(CHAT_TOPIC, "and back") == [chat.node.peer_id]
    line = chat.wait_for("chat", timeout=15)
    assert (line.text, line.peer_id) == ("and back", js.peer_id)


def _only_webrtc(node: ucsdk.Node, peer: str) -> bool:
    rows = node.connections()
    return list(rows[rows["peer_id"] == peer]["transport"]) == ["webrtc-direct"]


def test_ucsdk_dials_js_over_webrtc_direct(js: UcJsPeer) -> None:
    addr = next(a for a in js.addrs if "/webrtc-direct/certhash/" in a)
    with (
        ucsdk.Node.development(listen_addrs=LISTEN, **ONLY_THE_JS_PEER) as node,
        Chat(node) as chat,
    ):
        info = node.connect(addr if "/p2p/" in addr else f"{addr}/p2p/{js.peer_id}")
        assert (info.peer_id, info.transport) == (js.peer_id, "webrtc-direct")
        _chat_both_ways(js, chat)
        assert _only_webrtc(node, js.peer_id)


def test_js_dials_ucsdk_over_webrtc_direct(js: UcJsPeer) -> None:
    with (
        ucsdk.Node.development(listen_addrs=LISTEN, **ONLY_THE_JS_PEER) as node,
        Chat(node) as chat,
    ):
        addr = next(a for a in node.addrs if "/webrtc-direct/" in a)
        answer = js.command("dial", addr=addr)
        assert answer["peer"] == node.peer_id and "/webrtc-direct" in answer["remoteAddr"]
        assert wait_for(lambda: _only_webrtc(node, js.peer_id), 10), node.connections()
        _chat_both_ways(js, chat)
        assert node.manager.webrtc_direct is not None
        assert node.manager.webrtc_direct.versions["v1"] >= 1
