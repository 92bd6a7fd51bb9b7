"""Hostile peers against a running node: every service either drops bad input and counts it
(and keeps running, restarts == 0), or crashes visibly and recovers while the node works.

The peers are real: py-libp2p hosts on 127.0.0.1 (a relay answering garbage, a reservation
expiring in 2**63 seconds, a stream closed mid-refresh; a DHT peer answering junk) and a
UDP socket multicasting malformed mDNS on loopback (see ``_hostile_peers``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from _hostile_peers import (
    JUNK_FRAMES,
    KAD_PROTOCOL,
    MESHSUB,
    HostilePeer,
    ScriptedRelay,
    answer_junk,
    malformed_mdns_packets,
    mdns_announcement,
    publish_with_junk_key,
    send_mdns,
    txt,
    wait_until,
)

import ucsdk
from ucsdk import errors
from ucsdk._wire import encode_uvarint
from ucsdk.config import DEFAULT_DISCOVERY_TOPIC
from ucsdk.nat import relay as relay_module
from ucsdk.nat.dcutr import DCUTR_PROTOCOL, SYNC
from ucsdk.proto import HolePunch

FAST_RESTART = {"service_restart_backoff": (0.1, 0.5)}
QUIET = {"enable_mdns": False, "relay_auto_reserve": False, **FAST_RESTART}
"""No mDNS (it would find every node on the machine), no automatic reservations."""


# ---------------------------------------------------------------------------- helpers
def service(node: ucsdk.Node, name: str) -> Any:
    """The ``node.services()`` row of ``name``."""
    return node.services().set_index("name").loc[name]


def assert_untouched(node: ucsdk.Node, name: str) -> None:
    """Outcome (a): the service never crashed."""
    row = service(node, name)
    assert (row["state"], row["restarts"]) == ("running", 0), row.to_dict()
    assert pd.isna(row["last_error"]), row.to_dict()
    events = node.events()
    assert not events[events["kind"] == "service_failed"]["detail"].str.startswith(name).any()


def dropped(node: ucsdk.Node, prefix: str) -> dict[str, int]:
    """The node's dropped-input counters of one service, without the prefix."""
    kinds = node.metrics().invalid_message_kinds
    return {k[len(prefix) + 1 :]: v for k, v in kinds.items() if k.startswith(prefix + "_")}


def events_of(node: ucsdk.Node, kind: str, peer_id: str | None = None) -> list[str]:
    frame = node.events()
    rows = frame[frame["kind"] == kind]
    if peer_id is not None:
        rows = rows[rows["peer_id"] == peer_id]
    return list(rows["detail"])


def circuit_addrs(node: ucsdk.Node) -> list[str]:
    """The circuit addresses the node advertises (its address book's circuit rows)."""
    frame = node.addresses()
    return list(frame[(frame["kind"] == "circuit") & frame["advertised"]]["addr"])


def assert_node_works(node: ucsdk.Node) -> None:
    """A fresh connection and a ping to a node that was not there before."""
    with ucsdk.Node.development(enable_mdns=False) as other:
        node.connect(other.addrs[0])
        assert len(node.ping(other.peer_id, count=2)) == 2


# ----------------------------------------------------------------- relay client
@pytest.mark.parametrize("step", ["huge_expire", "past_expire", "far_expire"])
def test_a_reservation_with_an_out_of_range_expire_is_refused_and_counted(step: str) -> None:
    """Outcome (a). Before: 2**63 was kept (and advertised for ever) and its event raised
    OverflowError; an expire in the past was advertised and refreshed every 0.5 s."""
    with ucsdk.Node.development(**QUIET) as node, ScriptedRelay([step]) as relay:
        with pytest.raises(errors.DialError, match="not within a year"):
            node.reserve(relay.addr)
        assert relay.answers == [step]
        assert node.reservations().empty
        assert circuit_addrs(node) == []
        assert dropped(node, "relay_client") == {"bad_expire": 1}
        assert any(
            "not within a year" in d
            for d in events_of(node, "relay_reservation_refused", relay.peer_id)
        )
        assert_untouched(node, "relay_client")
        # A good relay is still used.
        with ucsdk.Node.development(enable_mdns=False, enable_relay_server=True) as good:
            reservation = node.reserve(good.addrs[0])
            assert reservation.relay_peer_id == good.peer_id
            assert circuit_addrs(node) == [
                f"{good.addrs[0].split('/p2p/')[0]}/p2p/{good.peer_id}/p2p-circuit"
            ]


@pytest.fixture
def short_relay_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A relay that never answers is given up on after 1.5 s instead of 10 s."""
    monkeypatch.setattr(relay_module, "MESSAGE_TIMEOUT", 1.5)
    yield


@pytest.mark.parametrize("step", ["garbage", "cut_off", "silent"])
def test_a_relay_failing_a_refresh_loses_that_reservation_only(
    step: str, short_relay_timeout: None
) -> None:
    """Outcome (a). Before: the refresh caught only UcsdkError, so garbage (DecodeError),
    a stream closed mid-message (StreamEOF) or a timeout crashed the relay client over
    and over while the dead relay's circuit address stayed advertised."""
    with (
        ucsdk.Node.development(enable_pubsub_discovery=False, **QUIET) as node,
        ScriptedRelay(["ok", step], ttl=4) as bad,
        ScriptedRelay(["ok"], ttl=4) as steady,
    ):
        node.reserve(bad.addr)
        node.reserve(steady.addr)
        bad_circuit = f"{bad.addr.split('/p2p/')[0]}/p2p/{bad.peer_id}/p2p-circuit"
        steady_circuit = f"{steady.addr.split('/p2p/')[0]}/p2p/{steady.peer_id}/p2p-circuit"
        assert sorted(circuit_addrs(node)) == sorted([bad_circuit, steady_circuit])

        def bad_gone() -> bool:
            return bool(events_of(node, "relay_reservation_lost", bad.peer_id))

        assert wait_until(bad_gone, 15), node.events().tail(10)
        assert bad.answers[:2] == ["ok", step]
        assert circuit_addrs(node) == [steady_circuit]
        assert set(node.reservations()["relay_peer_id"]) == {steady.peer_id}
        # The refresh loop goes on for the other relay (two more refreshes).
        answered = len(steady.answers)
        assert wait_until(lambda: len(steady.answers) >= answered + 2, 15), steady.answers
        assert circuit_addrs(node) == [steady_circuit]
        # The node tries to get a lost reservation back (relay_rejoin_window): each garbage
        # answer to those tries is counted too.
        counts = dropped(node, "relay_client")
        if step in ("cut_off", "silent"):
            assert counts == {}
        else:
            assert set(counts) == {"malformed"} and counts["malformed"] >= 1, counts
        assert_untouched(node, "relay_client")
        # A new reservation, on a real relay, and a peer reaches the node through it.
        with (
            ucsdk.Node.development(enable_mdns=False, enable_relay_server=True) as relay,
            ucsdk.Node.development(enable_mdns=False) as other,
        ):
            node.reserve(relay.addrs[0])
            circuit = f"{relay.addrs[0].split('/p2p/')[0]}/p2p/{relay.peer_id}/p2p-circuit"
            assert sorted(circuit_addrs(node)) == sorted([steady_circuit, circuit])
            peer = other.connect(f"{circuit}/p2p/{node.peer_id}")
            assert peer.connection_type == "relay", peer
            assert len(other.ping(node.peer_id, count=2)) == 2


# -------------------------------------------------------------------------- DHT
DHT_ONLY = {
    "enable_pubsub_discovery": False,
    "auto_dial": False,
    "dht_random_walk": False,
    **QUIET,
}


def test_dht_junk_is_counted_and_lookups_still_succeed() -> None:
    """Outcome (a). A DHT peer answers every query with junk and sends junk requests;
    py-libp2p dropped the requests without a word (now counted by kind), and the junk
    answers only fail that peer's part of a lookup."""
    with (
        ucsdk.Node.development(**DHT_ONLY) as node,
        ucsdk.Node.development(**DHT_ONLY) as middle,
        ucsdk.Node.development(**DHT_ONLY) as target,
        HostilePeer({KAD_PROTOCOL: answer_junk}) as junk,
    ):
        middle.connect(target.addrs[0])
        node.connect(junk.addr)
        junk.send(node.peer_id, KAD_PROTOCOL, *JUNK_FRAMES)
        assert wait_until(lambda: sum(dropped(node, "dht").values()) >= 5, 10)
        assert dropped(node, "dht") == {"malformed": 2, "truncated": 2, "oversized": 1}
        node.connect(middle.addrs[0])
        assert target.peer_id not in set(node.peers()["peer_id"])
        found = node.find_peer(target.peer_id, timeout=30)
        assert found.peer_id == target.peer_id and "dht" in found.sources
        assert junk.streams >= 1  # the junk peer was asked, and answered junk
        assert len(node.ping(target.peer_id, count=1)) == 1
        assert_untouched(node, "dht")


# ------------------------------------------------------------------------- mDNS
def test_a_burst_of_malformed_mdns_packets_is_dropped_and_counted() -> None:
    """Outcome (a). Packets no DNS parser accepts are dropped by zeroconf (the node never
    sees them); well-formed announcements with bad TXT records are dropped and counted."""
    name = f"uch{os.getpid() % 100000}"  # this test's own service type: no other node's
    service_type = f"_{name}._udp.local."
    with (
        ucsdk.Node.development(
            mdns_service_name=name,
            mdns_interfaces=["127.0.0.1"],
            mdns_query_interval=60.0,  # no fresh browser rescues a broken one in time
            relay_auto_reserve=False,
            **FAST_RESTART,
        ) as node,
        ucsdk.Node.development(enable_mdns=False) as other,
    ):
        assert service(node, "mdns")["state"] == "running"
        packets = malformed_mdns_packets(service_type, other.peer_id)
        send_mdns(packets["junk"] + packets["malformed"] + packets["no_dnsaddr"])
        want = {"malformed": len(packets["malformed"]), "no_dnsaddr": len(packets["no_dnsaddr"])}
        assert wait_until(lambda: dropped(node, "mdns") == want, 15), dropped(node, "mdns")
        assert_untouched(node, "mdns")
        # A good announcement after the burst is still heard, and the peer is reachable.
        record = txt(f"dnsaddr={other.addrs[0]}".encode())
        send_mdns([mdns_announcement(service_type, "honest0000", record)])

        def found() -> bool:
            peers = {p.peer_id: p for p in node.get_discovered_peers()}
            return other.peer_id in peers and "mdns" in peers[other.peer_id].sources

        assert wait_until(found, 15)
        assert len(node.ping(other.peer_id, count=1)) == 1
        assert dropped(node, "mdns") == want


# ----------------------------------------------------------------------- pubsub
def _discovers_over_pubsub(node: ucsdk.Node) -> None:
    with ucsdk.Node.development(enable_mdns=False, pubsub_announce_interval=1.0) as honest:
        honest.connect(node.addrs[0])

        def heard() -> bool:
            peers = {p.peer_id: p for p in node.get_discovered_peers()}
            return honest.peer_id in peers and "pubsub" in peers[honest.peer_id].sources

        assert wait_until(heard, 20)
        assert len(node.ping(honest.peer_id, count=1)) == 1


def test_junk_pubsub_frames_are_counted_and_the_node_survives() -> None:
    """Outcome (a). Before: py-libp2p's pubsub stream handler let a DecodeError out, which
    ended the host's swarm: one junk frame from any peer stopped the whole node. The host's
    guard (``ucsdk.host.GuardedStreams``) now resets such a stream and counts it."""
    with ucsdk.Node.development(**QUIET) as node, HostilePeer({}) as peer:
        node.connect(peer.addr)
        peer.send(node.peer_id, MESHSUB, *JUNK_FRAMES)
        # Frames 0 and 1 are not RPCs; py-libp2p itself handles the cut-off frames (2, 4)
        # and the one over its size limit (3).
        # The host's stream guard resets those two streams and counts them by error type.
        want = {"DecodeError": 2}
        assert wait_until(lambda: dropped(node, "stream_handler") == want, 10), dropped(
            node, "stream_handler"
        )
        assert_untouched(node, "pubsub")
        assert_node_works(node)
        _discovers_over_pubsub(node)


def test_a_message_with_a_junk_key_is_dropped_and_counted() -> None:
    """Outcome (a). py-libp2p's signature check raises on a ``key`` that is not a key, in
    a task of its Pubsub service; before, that ended the service (the supervisor restarted
    it). ucsdk's Pubsub checks first and drops the message, counted."""
    with ucsdk.Node.development(**QUIET) as node, HostilePeer({}) as peer:
        node.connect(peer.addr)
        peer.send(node.peer_id, MESHSUB, publish_with_junk_key(DEFAULT_DISCOVERY_TOPIC, 1))
        assert wait_until(
            lambda: node.metrics().invalid_message_kinds.get("pubsub_bad_signature", 0) >= 1, 10
        )
        assert_node_works(node)
        _discovers_over_pubsub(node)
        frame = node.services().set_index("name")
        assert set(frame["state"]) == {"running"} and set(frame["restarts"]) == {0}


# ------------------------------------------------------------------------ DCUtR
def test_malformed_hole_punch_messages_are_counted() -> None:
    """Outcome (a). Before: a HolePunch over 4 KiB or one that does not parse ended the
    exchange uncounted. Over a direct connection, as here, each stream is now reset before
    it is read (``not_relayed``); the same junk over a relayed connection is counted as
    ``malformed``/``unexpected`` (tests/security/test_dcutr_attacks.py)."""
    with ucsdk.Node.development(**QUIET) as node, HostilePeer({}) as peer:
        node.connect(peer.addr)
        oversized = encode_uvarint(5000) + b"\x00" * 5000
        sync_first = HolePunch(type=SYNC).SerializeToString()
        for frame in (oversized, JUNK_FRAMES[0], encode_uvarint(len(sync_first)) + sync_first):
            # The reset may reach the opener during protocol negotiation: new_stream raises.
            with contextlib.suppress(Exception):
                peer.send(node.peer_id, DCUTR_PROTOCOL, frame)
        want = {"not_relayed": 3}
        assert wait_until(lambda: dropped(node, "dcutr") == want, 10), dropped(node, "dcutr")
        assert node.hole_punches().empty
        assert_untouched(node, "dcutr")
        assert_node_works(node)
