"""Kademlia DHT: in a chain of 8 nodes, the first finds the last by peer id alone."""

from __future__ import annotations

import itertools
import time

import pytest

import ucsdk
from ucsdk import errors
from ucsdk.identity import new_key_pair, peer_id_of

# Only the DHT may find anyone here: no pubsub discovery, no mDNS, no auto-dial.
DHT_ONLY = {
    "enable_pubsub_discovery": False,
    "enable_mdns": False,
    "auto_dial": False,
    "dht_random_walk": False,
}


def _chain(nodes: list[ucsdk.Node]) -> None:
    """Connect each node to the next, then let identify put neighbours in routing tables."""
    for left, right in itertools.pairwise(nodes):
        left.connect(right.addrs[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
        (n.manager.dht is not None and n.manager.dht.routing_table_size() >= 1) for n in nodes
    ):
        time.sleep(0.1)


def test_chain_of_eight_first_finds_last_by_peer_id() -> None:
    nodes = [ucsdk.Node.development(**DHT_ONLY) for _ in range(8)]
    try:
        _chain(nodes)
        first, last = nodes[0], nodes[-1]
        assert last.peer_id not in set(first.peers()["peer_id"])
        found = first.find_peer(last.peer_id, timeout=30)
        assert found.peer_id == last.peer_id
        assert last.addrs[0].split("/p2p/")[0] in found.multiaddrs
        assert "dht" in found.sources
        # ... and connects with nothing but the id.
        assert first.dial_peer(last.peer_id, timeout=30) is True
        assert first.ping(last.peer_id, count=1)
        row = first.peers().set_index("peer_id").loc[last.peer_id]
        assert bool(row["connected"]) and "dht" in row["sources"]
    finally:
        for node in nodes:
            node.stop()


def test_unknown_peer_is_not_found_quickly() -> None:
    with ucsdk.Node.development(**DHT_ONLY) as a, ucsdk.Node.development(**DHT_ONLY) as b:
        a.connect(b.addrs[0])
        started = time.monotonic()
        with pytest.raises(errors.PeerNotFound):
            a.find_peer(peer_id_of(new_key_pair()), timeout=20)
        assert time.monotonic() - started < 20


def test_providers_are_found_across_the_chain_and_listed_once() -> None:
    nodes = [ucsdk.Node.development(**DHT_ONLY) for _ in range(4)]
    try:
        _chain(nodes)
        key = "ucsdk-test-content"
        # Two providers; the last announces twice, so the DHT holds its record repeatedly.
        assert nodes[2].provide(key, timeout=30)
        assert nodes[3].provide(key, timeout=30)
        assert nodes[3].provide(key, timeout=30)
        providers = nodes[0].find_providers(key, timeout=30)
        ids = [p.peer_id for p in providers]
        assert len(ids) == len(set(ids)), ids
        assert {nodes[2].peer_id, nodes[3].peer_id} <= set(ids)
        assert all("dht" in p.sources for p in providers)
        with pytest.raises(errors.InvalidInput, match="content key"):
            nodes[0].find_providers("")
    finally:
        for node in nodes:
            node.stop()


def test_provider_calls_need_the_dht() -> None:
    with (
        ucsdk.Node.development(enable_dht_discovery=False) as node,
        pytest.raises(errors.ConfigError, match="enable_dht_discovery"),
    ):
        node.find_providers("anything")
