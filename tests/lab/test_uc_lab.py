"""The universal-connectivity app between two ucsdk nodes behind NATs in the lab: the chat
flows over the relayed connection first, then over the direct one DCUtR punches, and no
message is lost across the switch; a direct message and a file cross too."""

from __future__ import annotations

import threading

import pytest

import ucsdk.lab
from ucsdk.apps.uc import CHAT_TOPIC, UC_SETTINGS
from ucsdk.lab.scenarios import wait_until

pytestmark = pytest.mark.lab

DEFAULTS = {
    "connection_timeout": 3.0,
    "autonat_min_agreement": 1,  # one public server in this lab
    "pubsub_announce_interval": 1.0,
    **UC_SETTINGS,
}


def _links(node: ucsdk.lab.LabNode, peer: str) -> list[bool]:
    conns = node.connections()
    return [bool(r) for r in conns[conns["peer_id"] == peer]["relayed"]]


def test_chat_goes_relayed_then_direct_without_losing_a_message(lab_required: None) -> None:
    with ucsdk.lab.Lab(node_defaults=DEFAULTS) as lab:
        relay = lab.add_public_host("relay", enable_relay_server=True)
        a = lab.add_host("a", nat="port_restricted")
        b = lab.add_host("b", nat="port_restricted")
        lab.wait_ready()
        assert a.node.chat.lines() == [] and b.node.chat.lines() == []  # chats on
        a.node.connect(relay.multiaddr())
        b.node.connect(relay.multiaddr())
        assert wait_until(lambda: len(b.node.reservations()) == 1, 30, 0.2), b.node.events()
        circuit = next(x for x in b.node.reservations().iloc[0]["circuit_addrs"] if "/tcp/" in x)

        sent: list[int] = []
        stop = threading.Event()

        def publish() -> None:
            n = 0
            while not stop.is_set():
                a.node.chat.send(f"msg {n}")
                sent.append(n)
                n += 1
                stop.wait(0.02)

        a.node.connect(f"{circuit}/p2p/{b.node.peer_id}")
        publisher = threading.Thread(target=publish, name="uc-lab-publisher")
        publisher.start()
        try:
            assert wait_until(lambda: _links(a.node, b.node.peer_id) == [False], 20), (
                a.node.connections()
            )
            switched = len(sent)
            assert wait_until(lambda: len(sent) >= switched + 50, 20)
        finally:
            stop.set()
            publisher.join(timeout=30)
        last = sent[-1]

        def received() -> list[int]:
            return [int(x.text.split()[1]) for x in b.node.chat.lines() if x.kind == "chat"]

        assert wait_until(lambda: last in received(), 15), received()
        got = received()
        first = min(got)
        # Nothing lost and nothing twice, from the first message b saw to the last
        # (GossipSub does not promise order: one published before a heard b join the
        # topic waits in a queue and may arrive after the next).
        missing = sorted(set(range(first, last + 1)) - set(got))
        assert sorted(got) == list(range(first, last + 1)), (missing, got)
        punch = b.node.hole_punches().iloc[-1]
        assert punch["outcome"] == "success", punch
        lines = b.node.chat.lines()
        # Messages arrived before the direct connection existed (over the relay) and after.
        direct_at = punch["time"]
        before = [x for x in lines if x.kind == "chat" and x.time < direct_at]
        after = [x for x in lines if x.kind == "chat" and x.time > direct_at]
        assert before and len(after) >= 50, (len(before), len(after), direct_at)
        # Before the first message b saw, only the pubsub set-up: a had not yet heard b
        # join the topic.
        assert first < 40, first
        # A direct message and a file over the direct connection.
        a.node.chat.dm(b.node.peer_id, "over the punched hole")
        assert b.node.chat.wait_for("dm").text == "over the punched hole"
        file_id = b.node.chat.share_file(b"\x00\x01" * 50_000, name="blob")
        assert a.node.chat.fetch_file(b.node.peer_id, file_id) == b"\x00\x01" * 50_000
        assert _links(a.node, b.node.peer_id) == [False]
        topics = a.node.topics()
        assert topics.set_index("topic").loc[CHAT_TOPIC, "published"] == last + 1
