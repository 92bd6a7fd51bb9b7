"""Addresses you can trust: an observed address counts only when enough peers agree.

Real py-libp2p hosts on loopback answer identify with an ``observedAddr`` of our choice
(a liar, or honest observers of a public mapping). 127.0.0.0/16 and 127.1.0.0/16 are two
IP groups, so loopback alone can stand for observers on two networks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import multiaddr
import pytest
from anyio.from_thread import start_blocking_portal
from libp2p.abc import INetStream
from libp2p.identity.identify.pb.identify_pb2 import Identify

import ucsdk
from ucsdk._wire import write_delimited
from ucsdk.addresses import rank_scopes, scope_of
from ucsdk.host import build_host, disable_auto_dial
from ucsdk.identity import new_key_pair
from ucsdk.protocols import IDENTIFY_PROTOCOL

PUBLIC_MAPPING = "/ip4/203.0.113.77/tcp/40001"
"""What the observers claim to see us at (documentation range: nothing is sent to it)."""


@contextlib.asynccontextmanager
async def _observers(ips: list[str], observed: str) -> AsyncIterator[list[str]]:
    """Hosts listening on ``ips`` whose identify answer says ``observed``; their full
    multiaddrs."""
    config = ucsdk.ConnectivityConfig.preset("development", enable_mdns=False)
    async with contextlib.AsyncExitStack() as stack:
        addrs: list[str] = []
        for ip in ips:
            host = build_host(config, new_key_pair())
            await stack.enter_async_context(host.run([multiaddr.Multiaddr(f"/ip4/{ip}/tcp/0")]))
            stack.push_async_callback(host.close)
            await disable_auto_dial(host)

            def answer(host: Any = host) -> Callable[[INetStream], Any]:
                async def handle(stream: INetStream) -> None:
                    message = Identify(
                        protocol_version="ipfs/0.1.0",
                        agent_version="observer",
                        public_key=host.get_public_key().serialize(),
                        listen_addrs=[a.to_bytes() for a in host.get_transport_addrs()],
                        observed_addr=multiaddr.Multiaddr(observed).to_bytes(),
                        protocols=[str(IDENTIFY_PROTOCOL)],
                    )
                    await write_delimited(stream, message.SerializeToString())
                    await stream.close()

                return handle

            host.set_stream_handler(IDENTIFY_PROTOCOL, answer())
            addrs.append(f"{host.get_transport_addrs()[0]}/p2p/{host.get_id()}")
        yield addrs


def _observed_row(node: ucsdk.Node) -> dict[str, Any] | None:
    rows = node._snapshot("read addresses", lambda: node.manager.get_addresses())
    found = [r for r in rows if r.addr == PUBLIC_MAPPING and r.kind == "observed"]
    return found[0].__dict__ if found else None


def _dcutr_ips(node: ucsdk.Node) -> list[str]:
    """The IPs DCUtR would put in its offers (and predict from)."""
    return node._snapshot("read dcutr ips", lambda: node.manager.dcutr._ips())


def _advertised(node: ucsdk.Node) -> list[str]:
    return node._snapshot(
        "read advertised", lambda: [str(a) for a in node.manager.host.get_addrs()]
    )


def _meet(node: ucsdk.Node, observers: list[str], expected: int) -> dict[str, Any]:
    for addr in observers:
        node.connect(addr)
    deadline = time.monotonic() + 10
    row = _observed_row(node)
    while (row is None or row["observers"] < expected) and time.monotonic() < deadline:
        time.sleep(0.05)
        row = _observed_row(node)
    assert row is not None and row["observers"] == expected, row
    return row


def _node() -> ucsdk.Node:
    return ucsdk.Node.development(
        enable_mdns=False, observed_addr_min_observers=4, observed_addr_min_groups=2
    )


def test_one_lying_peer_steers_nothing() -> None:
    with (
        _node() as node,
        start_blocking_portal(backend="trio") as portal,
        portal.wrap_async_context_manager(_observers(["127.0.0.1"], PUBLIC_MAPPING)) as liars,
    ):
        row = _meet(node, liars, expected=1)
        assert row["confirmed"] is False and row["advertised"] is False
        assert "203.0.113.77" not in _dcutr_ips(node)
        assert not any("203.0.113.77" in a for a in node.addrs)
        assert not any("203.0.113.77" in a for a in _advertised(node))


def test_four_observers_on_one_network_are_not_enough() -> None:
    ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]  # one /16: one group
    with (
        _node() as node,
        start_blocking_portal(backend="trio") as portal,
        portal.wrap_async_context_manager(_observers(ips, PUBLIC_MAPPING)) as observers,
    ):
        row = _meet(node, observers, expected=4)
        assert row["confirmed"] is False
        assert "203.0.113.77" not in _dcutr_ips(node)


def test_four_observers_from_two_networks_confirm_it() -> None:
    ips = ["127.0.0.1", "127.0.0.2", "127.1.0.1", "127.1.0.2"]  # two /16 groups
    with (
        _node() as node,
        start_blocking_portal(backend="trio") as portal,
        portal.wrap_async_context_manager(_observers(ips, PUBLIC_MAPPING)) as observers,
    ):
        row = _meet(node, observers, expected=4)
        assert row["confirmed"] is True and row["advertised"] is True
        assert "203.0.113.77" in _dcutr_ips(node)
        assert node.addrs[0] == f"{PUBLIC_MAPPING}/p2p/{node.peer_id}"  # public first
        assert any(PUBLIC_MAPPING in a for a in _advertised(node))


def test_an_observer_vouches_for_one_address_per_transport() -> None:
    """A peer that changes its story moves its vote; it does not confirm both stories."""
    from ucsdk.connectivity.addressbook import ObservedAddrs

    observed = ObservedAddrs(min_observers=1, min_groups=1, ttl=60)
    observed.report("p", "192.0.2.1", "/ip4/203.0.113.1/tcp/1", now=0)
    observed.report("p", "192.0.2.1", "/ip4/203.0.113.2/tcp/1", now=1)
    assert observed.confirmed(now=2) == ["/ip4/203.0.113.2/tcp/1"]
    observed.report("q", None, "/ip4/203.0.113.3/tcp/1", now=3)  # no observer IP: dropped
    assert observed.rejected == 1


@pytest.mark.parametrize(
    ("addr", "scope"),
    [
        ("/ip4/127.0.0.1/tcp/1", "loopback"),
        ("/ip6/::1/tcp/1", "loopback"),
        ("/ip4/10.3.0.2/tcp/1", "private"),
        ("/ip4/100.64.0.9/tcp/1", "private"),
        ("/ip4/203.0.113.5/tcp/1", "public"),
        ("/ip4/1.1.1.1/udp/1/quic-v1", "public"),
        ("/ip4/198.51.100.1/tcp/1/p2p/QmRelay/p2p-circuit", "circuit"),
    ],
)
def test_scopes(addr: str, scope: str) -> None:
    assert scope_of(addr) == scope


def test_own_addresses_are_public_first() -> None:
    mixed = ["/ip4/127.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/1", "/ip4/203.0.113.9/tcp/1"]
    assert [scope_of(a) for a in rank_scopes(mixed)] == ["public", "private", "loopback"]


def test_a_loopback_peer_is_told_loopback_addresses() -> None:
    """Identify answers a peer on loopback with our loopback addresses (it can use them)."""
    with (
        ucsdk.Node.development(enable_mdns=False) as a,
        ucsdk.Node.development(enable_mdns=False) as b,
    ):
        a.connect(b.addrs[0])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            peers = a.peers()
            if len(peers) and peers.iloc[0]["agent_version"]:
                break
            time.sleep(0.05)
        told = list(a.peers().iloc[0]["multiaddrs"])
        assert b.addrs[0].rsplit("/p2p/", 1)[0] in told
