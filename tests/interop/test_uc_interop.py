"""ucsdk's universal-connectivity peer against a js-libp2p peer configured as the app's
node-js-peer (``js/uc-peer.mjs``: its GossipSub options and message-id function, its
direct-message handler, the js-peer's file sharing), each a real process on loopback:
chat, a direct message and a file, each both ways, and two ucsdk nodes that chat through
the js peer alone."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import ucsdk
from tests._util import wait_for
from tests.interop._ucjs import UcJsPeer
from ucsdk.apps.uc import CHAT_TOPIC, FILE_TOPIC, UC_SETTINGS, Chat

ONLY_THE_JS_PEER = {
    "enable_mdns": False,
    "enable_dht_discovery": False,
    "enable_autonat": False,
    "auto_dial": False,  # reach other peers only through connections the test makes
    **UC_SETTINGS,
}


@pytest.fixture
def js(js_ready: Path) -> Iterator[UcJsPeer]:
    with UcJsPeer(js_ready) as peer:
        yield peer


@pytest.fixture
def chat(js: UcJsPeer) -> Iterator[Chat]:
    with ucsdk.Node.development(**ONLY_THE_JS_PEER) as node, Chat(node) as chat:
        node.connect(js.addr)
        assert node.wait_for_subscribers(CHAT_TOPIC, 1, timeout=15)
        assert js.wait_for_subscriber(CHAT_TOPIC, node.peer_id)
        yield chat


def test_chat_both_ways(js: UcJsPeer, chat: Chat) -> None:
    msg_id = chat.send("hello from ucsdk ✓")
    got = js.wait_event("message", lambda e: e["topic"] == CHAT_TOPIC)
    # The js peer shows only signed messages; the app's message id is sha256 of the
    # decimal seqno, which ucsdk computes the same way ("uc").
    assert (got["type"], got["from"], got["text"]) == (
        "signed",
        chat.node.peer_id,
        "hello from ucsdk ✓",
    )
    assert msg_id == hashlib.sha256(got["seqno"].encode()).hexdigest()
    assert js.publish(CHAT_TOPIC, "hello from js") == [chat.node.peer_id]
    line = chat.wait_for("chat", timeout=15)
    assert (line.text, line.peer_id) == ("hello from js", js.peer_id)
    raw = chat.node.wait_for_message(CHAT_TOPIC, timeout=5)
    assert raw.data == b"hello from js" and raw.msg_id == line.msg_id


def test_direct_messages_both_ways(js: UcJsPeer, chat: Chat) -> None:
    chat.dm(js.peer_id, "a dm for js")  # returns once js answered status OK
    got = js.wait_event("dm")
    assert (got["from"], got["text"], got["type"]) == (
        chat.node.peer_id,
        "a dm for js",
        "text/plain",
    )
    # js opens the stream with negotiateFully: false, so its request follows the protocol
    # line at once; js checks our answer (status 200 with metadata) or raises.
    js.dm(chat.node.peer_id, "a dm for ucsdk")
    line = chat.wait_for("dm", timeout=15)
    assert (line.text, line.peer_id) == ("a dm for ucsdk", js.peer_id)
    assert not chat.dropped


def test_files_both_ways(js: UcJsPeer, chat: Chat) -> None:
    ours = os.urandom(200_000)
    file_id = chat.share_file(ours, name="ours.bin")
    announced = js.wait_event("message", lambda e: e["topic"] == FILE_TOPIC)
    assert announced["text"] == file_id and announced["type"] == "signed"
    assert js.fetch(chat.node.peer_id, file_id) == ours
    theirs = os.urandom(150_000)
    their_id = js.share(theirs, name="theirs.bin")
    line = chat.wait_for("file", timeout=15)
    assert (line.file_id, line.peer_id) == (their_id, js.peer_id)
    assert chat.fetch_file(js.peer_id, their_id) == theirs


def test_two_ucsdk_nodes_chat_through_the_js_peer(js: UcJsPeer) -> None:
    with (
        ucsdk.Node.development(enable_pubsub_discovery=False, **ONLY_THE_JS_PEER) as a,
        ucsdk.Node.development(enable_pubsub_discovery=False, **ONLY_THE_JS_PEER) as b,
        Chat(a) as alice,
        Chat(b) as bob,
    ):
        a.connect(js.addr)
        b.connect(js.addr)
        assert js.wait_for_subscriber(CHAT_TOPIC, a.peer_id)
        assert js.wait_for_subscriber(CHAT_TOPIC, b.peer_id)
        assert a.wait_for_subscribers(CHAT_TOPIC, 1) and b.wait_for_subscribers(CHAT_TOPIC, 1)
        alice.send("alice to bob, via js")
        line = bob.wait_for("chat", timeout=15)
        assert (line.text, line.peer_id) == ("alice to bob, via js", a.peer_id)
        bob.send("bob to alice, via js")
        assert alice.wait_for("chat", timeout=15).text == "bob to alice, via js"
        # The only path was the js peer: a and b never connected to each other.
        assert b.peer_id not in set(a.connections()["peer_id"])
        assert a.peer_id not in set(b.connections()["peer_id"])
        raw = b.wait_for_message(CHAT_TOPIC, timeout=5)
        assert (raw.from_peer, raw.received_from) == (a.peer_id, js.peer_id)


def test_js_peer_discovers_ucsdk_on_the_app_topic(js: UcJsPeer) -> None:
    """Pubsub peer discovery on universal-connectivity-browser-peer-discovery, both ways."""
    with ucsdk.Node.development(
        pubsub_announce_interval=1.0, **{**ONLY_THE_JS_PEER, "auto_dial": True}
    ) as node:
        node.connect(js.addr)
        ours = node.addrs[0].split("/p2p/")[0]
        js.wait_event(
            "discovered",
            lambda e: e["peer"] == node.peer_id and any(ours in a for a in e["addrs"]),
            timeout=20,
        )

        def node_found_js() -> bool:
            peers = node.peers()
            row = peers[peers["peer_id"] == js.peer_id]
            return bool(len(row)) and "pubsub" in row.iloc[0]["sources"]

        assert wait_for(node_found_js, 20), node.peers()
