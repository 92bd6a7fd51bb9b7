"""The blocking Node facade with real nodes on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pandas as pd
import pytest
from _util import closed_port, is_utc

import ucsdk
from ucsdk import errors
from ucsdk.frames import CONNECTION_COLUMNS, EVENT_COLUMNS, METRIC_COLUMNS, PEER_COLUMNS
from ucsdk.identity import new_key_pair, peer_id_of


def test_addrs_end_in_peer_id(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, _ = node_pair
    assert a.peer_id.startswith("12D3KooW")
    assert a.addrs
    for addr in a.addrs:
        assert addr.startswith("/ip4/127.0.0.1/tcp/")
        assert addr.endswith(f"/p2p/{a.peer_id}")


def test_connect_and_ping_both_ways(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = node_pair
    info = a.connect(b.addrs[0])
    assert isinstance(info, ucsdk.PeerInfo)
    assert info.peer_id == b.peer_id
    assert info.connection_type == "direct"
    assert info.transport == "tcp"
    rtts_ab = a.ping(b.peer_id, count=5)
    rtts_ba = b.ping(a.peer_id, count=3)
    assert len(rtts_ab) == 5 and len(rtts_ba) == 3
    for rtt in [*rtts_ab, *rtts_ba]:
        assert isinstance(rtt, float)
        assert 0.0 < rtt < 1000.0
    # Sub-millisecond precision: py-libp2p's own ping would give whole numbers.
    assert any(rtt != round(rtt) for rtt in rtts_ab)


def test_dataframes_describe_what_happened(
    connected_pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, b = connected_pair
    rtts = a.ping(b.peer_id, count=4)
    deadline = time.monotonic() + 5
    while a.peers().loc[0, "agent_version"] is None and time.monotonic() < deadline:
        time.sleep(0.05)  # identify runs in the background after connecting

    peers = a.peers()
    assert list(peers.columns) == list(PEER_COLUMNS)
    assert len(peers) == 1
    row = peers.iloc[0]
    assert row["peer_id"] == b.peer_id
    assert bool(row["connected"]) is True
    assert row["connection_type"] == "direct"
    assert row["transport"] == "tcp"
    # Discovery (mDNS, pubsub) may have found b before the manual connect did.
    assert "manual" in row["sources"]
    assert b.addrs[0].rsplit("/p2p/", 1)[0] in row["multiaddrs"]
    assert row["rtt_ms"] == pytest.approx(pd.Series(rtts).median())
    assert row["agent_version"].startswith("py-libp2p")
    assert "/ipfs/ping/1.0.0" in row["protocols"]
    assert is_utc(peers["first_seen"])
    assert row["first_seen"] <= row["last_seen"]

    inbound = b.peers().iloc[0]
    assert inbound["peer_id"] == a.peer_id
    assert inbound["sources"][0] == "inbound"

    conns = a.connections()
    assert list(conns.columns) == list(CONNECTION_COLUMNS)
    assert len(conns) == 1
    conn = conns.iloc[0]
    assert conn["peer_id"] == b.peer_id
    assert conn["direction"] == "outbound"
    assert conn["security"] == "/noise"
    assert conn["muxer"] == "/yamux/1.0.0"
    assert conn["relayed"] == False  # noqa: E712 - numpy bool
    assert conn["remote_addr"] == b.addrs[0].rsplit("/p2p/", 1)[0]
    assert b.connections().iloc[0]["direction"] == "inbound"

    events = a.events()
    assert list(events.columns) == list(EVENT_COLUMNS)
    kinds = list(events["kind"])
    for kind in ("started", "peer_discovered", "connected", "dial_succeeded", "ping"):
        assert kind in kinds
    assert kinds.index("connected") < kinds.index("ping")
    assert set(events.loc[events["kind"] == "connected", "peer_id"]) == {b.peer_id}

    metrics = a.metrics()
    assert metrics == a.get_metrics() or metrics.last_updated <= a.get_metrics().last_updated
    assert metrics.active_connections == 1
    assert metrics.direct_connections == 1
    assert metrics.relay_connections == 0
    assert metrics.total_connections_established == 1
    assert metrics.total_peers_discovered == 1
    assert metrics.nat_status == "unknown"

    discovered = a.get_discovered_peers()
    assert [p.peer_id for p in discovered] == [b.peer_id]


def test_metrics_history_samples() -> None:
    with ucsdk.Node.development(metrics_history_interval=0.05) as node:
        time.sleep(0.4)
        history = node.metrics_history()
    assert list(history.columns) == list(METRIC_COLUMNS)
    assert len(history) >= 3
    assert is_utc(history["last_updated"])


def test_empty_frames_keep_columns() -> None:
    # A node alone (no mDNS, which would find the other test nodes on this machine).
    with ucsdk.Node.development(enable_mdns=False) as a:
        assert list(a.peers().columns) == list(PEER_COLUMNS) and a.peers().empty
        assert list(a.connections().columns) == list(CONNECTION_COLUMNS)
        assert a.connections().empty


def test_disconnect_is_recorded(connected_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = connected_pair
    a.disconnect(b.peer_id)
    deadline = time.monotonic() + 5
    while a.metrics().active_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.metrics().active_connections == 0
    assert not bool(a.peers().iloc[0]["connected"])
    assert "disconnected" in set(a.events()["kind"])


@pytest.mark.parametrize("transport", ["quic", "websocket"])
def test_other_transports_connect_and_ping(transport: str) -> None:
    with (
        ucsdk.Node.development(transports=[transport]) as a,
        ucsdk.Node.development(transports=[transport]) as b,
    ):
        info = a.connect(b.addrs[0])
        assert info.transport == transport
        assert len(a.ping(b.peer_id, count=2)) == 2
        conn = a.connections().iloc[0]
        assert conn["transport"] == transport
        if transport == "websocket":
            assert conn["remote_addr"].endswith("/ws")
        else:
            assert "quic" in conn["remote_addr"]


def test_malformed_multiaddr_is_named(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, _ = node_pair
    with pytest.raises(errors.InvalidMultiaddr, match=re.escape("/ip4/999.0.0.1/tcp/1")):
        a.connect("/ip4/999.0.0.1/tcp/1/p2p/" + a.peer_id, timeout=3)
    with pytest.raises(errors.InvalidMultiaddr, match="must end in /p2p/"):
        a.connect("/ip4/127.0.0.1/tcp/1", timeout=3)
    with pytest.raises(errors.InvalidPeerId, match="not-a-peer"):
        a.ping("not-a-peer", timeout=3)


def test_unknown_peer_fails_fast(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, _ = node_pair
    stranger = peer_id_of(new_key_pair())
    started = time.monotonic()
    with pytest.raises(errors.PeerNotFound, match=stranger):
        a.ping(stranger, timeout=3)
    assert time.monotonic() - started < 3
    assert a.dial_peer(stranger) is False
    assert a.metrics().total_connections_failed == 2


def test_closed_port_gives_dial_error_within_timeout(
    node_pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, _ = node_pair
    stranger = peer_id_of(new_key_pair())
    addr = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{stranger}"
    started = time.monotonic()
    with pytest.raises(errors.DialError) as caught:
        a.connect(addr, timeout=5)
    assert time.monotonic() - started < 5 + 2
    assert caught.value.peer_id == stranger
    assert stranger in str(caught.value)
    assert "dial_failed" in set(a.events()["kind"])


def test_blocking_call_times_out(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, _ = node_pair
    # A listener that accepts TCP but never speaks: the handshake can only time out.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(new_key_pair())}"
        started = time.monotonic()
        with pytest.raises(errors.Timeout) as caught:
            a.connect(addr, timeout=1.0)
        assert time.monotonic() - started < 1.0 + 2.5
    assert caught.value.seconds == 1.0
    with pytest.raises(errors.InvalidInput, match="timeout"):
        a.ping(a.peer_id, timeout=-1)


def test_seed_dial_peer_returns_bool(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = node_pair
    addr = b.addrs[0].rsplit("/p2p/", 1)[0]
    assert a.dial_peer(b.peer_id, [addr], use_relay=True) is True
    assert a.dial_peer(b.peer_id, [f"/ip4/127.0.0.1/tcp/{closed_port()}"], use_relay=False)
    with pytest.raises(errors.InvalidMultiaddr):
        a.dial_peer(b.peer_id, [f"{addr}/p2p/{a.peer_id}"])


def test_user_callbacks_that_raise_are_counted() -> None:
    seen: list[str] = []

    def on_connected(peer_id: str, addr: str) -> None:
        seen.append(peer_id)
        raise RuntimeError("callback bug")

    with (
        ucsdk.Node.development(on_connection_established=on_connected, enable_mdns=False) as a,
        ucsdk.Node.development(enable_mdns=False) as b,
    ):
        a.connect(b.addrs[0])
        assert a.ping(b.peer_id, count=1)
        assert seen == [b.peer_id]
        assert a.metrics().callback_errors == 1
        assert "callback_error" in set(a.events()["kind"])


def test_blocking_call_from_loop_thread_is_refused() -> None:
    errors_seen: list[BaseException] = []
    holder: dict[str, ucsdk.Node] = {}

    def on_discovered(peer: ucsdk.DiscoveredPeer) -> None:
        if "b" not in holder or peer.peer_id != holder["b"].peer_id:
            return  # a peer found before the test is set up (another test's node)
        try:
            holder["node"].metrics()  # a snapshot getter is fine on the loop thread
            holder["node"].ping(peer.peer_id)
        except BaseException as exc:
            errors_seen.append(exc)

    with (
        ucsdk.Node.development(on_peer_discovered=on_discovered, enable_mdns=False) as a,
        ucsdk.Node.development(enable_mdns=False) as b,
    ):
        holder["node"], holder["b"] = a, b
        a.connect(b.addrs[0])
    assert len(errors_seen) == 1
    assert isinstance(errors_seen[0], errors.WrongThread)


def test_aio_under_asyncio(connected_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = connected_pair

    async def main() -> tuple[list[float], pd.DataFrame, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        rtts = await a.aio.ping(b.peer_id, count=20)
        peers = await a.aio.peers()
        task.cancel()
        return rtts, peers, ticks

    rtts, peers, ticks = asyncio.run(main())
    assert len(rtts) == 20
    assert peers.iloc[0]["peer_id"] == b.peer_id
    assert ticks > 0  # the asyncio loop kept running while the ping was in flight


def test_stop_is_idempotent_and_later_calls_fail_clearly() -> None:
    node = ucsdk.Node.development()
    node.stop()
    node.stop()
    assert not node.running
    assert "stopped" in repr(node)
    with pytest.raises(errors.NodeStopped, match="ping"):
        node.ping(node.peer_id)
    with pytest.raises(errors.NodeStopped):
        node.peers()


def test_many_nodes_in_one_process() -> None:
    # No mDNS: the nodes would also find and dial each other by themselves.
    nodes = [ucsdk.Node.development(enable_mdns=False) for _ in range(5)]
    try:
        hub = nodes[0]
        for other in nodes[1:]:
            hub.connect(other.addrs[0])
        assert hub.metrics().active_connections == 4
        for other in nodes[1:]:
            assert other.ping(hub.peer_id, count=1)
    finally:
        for node in nodes:
            node.stop()


def test_listen_failure_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(errors.NodeStartError, match=str(port)):
            ucsdk.Node.development(listen_addrs=[f"/ip4/127.0.0.1/tcp/{port}"])


def test_repr_is_informative(connected_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = connected_pair
    assert a.peer_id in repr(a)
    assert "1 connections" in repr(a)
    assert a.peer_id in a._repr_html_()
    assert "active_connections" in a.metrics()._repr_html_()
    assert b.peer_id in a.get_discovered_peers()[0]._repr_html_()


def test_getters_never_hang_on_a_busy_loop(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, _ = node_pair
    # Block the event loop thread itself for 4 s (as a runaway callback would).
    blocker = a._portal.start_task_soon(time.sleep, 4.0)
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(errors.Timeout, match="read metrics"):
        a.metrics(timeout=0.3)
    with pytest.raises(errors.Timeout, match="ping"):
        a.ping(a.peer_id, timeout=0.3)
    assert time.monotonic() - started < 3.8  # both gave up while the loop was still stuck
    blocker.result(10)
    assert a.metrics(timeout=1).active_connections == 0
