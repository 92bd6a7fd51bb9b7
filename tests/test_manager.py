"""The async seed API on trio: UniversalConnectivityManager with real hosts on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr
import trio
from libp2p.abc import IHost

from ucsdk import (
    ConnectivityConfig,
    DiscoveredPeer,
    UniversalConnectivityManager,
    setup_universal_connectivity,
)
from ucsdk.host import build_host
from ucsdk.identity import new_key_pair, peer_id_of


@asynccontextmanager
async def running_host(config: ConnectivityConfig, key_pair=None) -> AsyncIterator[IHost]:  # type: ignore[no-untyped-def]
    host = build_host(config, key_pair or new_key_pair())
    listen = [multiaddr.Multiaddr(a) for a in config.resolved_listen_addrs()]
    try:
        async with host.run(listen):
            yield host
    finally:
        await host.close()


def full_addr(host: IHost) -> str:
    return f"{host.get_transport_addrs()[0]}/p2p/{host.get_id().to_base58()}"


def test_seed_manager_flow_with_callbacks() -> None:
    discovered: list[str] = []
    established: list[tuple[str, str | None]] = []
    closed: list[str] = []
    awaited: list[str] = []

    async def async_callback(peer: DiscoveredPeer) -> None:
        await trio.sleep(0)
        awaited.append(peer.peer_id)

    async def main() -> None:
        # auto_dial off: b must not dial a back after the disconnect this test makes.
        base = ConnectivityConfig.preset("development", auto_dial=False)
        async with running_host(base) as host_a, running_host(base) as host_b:
            config = base.replace(
                on_peer_discovered=lambda peer: discovered.append(peer.peer_id),
                on_connection_established=lambda pid, addr: established.append((pid, addr)),
                on_connection_closed=lambda pid, addr: closed.append(pid),
            )
            manager = await setup_universal_connectivity(host_a, config)
            other = UniversalConnectivityManager(
                host_b, base.replace(on_peer_discovered=async_callback)
            )
            await other.start()
            b_id = host_b.get_id().to_base58()
            addr = str(host_b.get_transport_addrs()[0])

            success = await manager.dial_peer(peer_id=b_id, addrs=[addr], use_relay=True)
            assert success is True
            metrics = manager.get_metrics()
            assert metrics.active_connections == 1
            assert metrics.direct_connections == 1
            assert metrics.total_peers_discovered == 1
            peers = manager.get_discovered_peers()
            assert [(p.peer_id, p.multiaddrs[0]) for p in peers] == [(b_id, addr)]
            assert manager.is_connected(b_id)
            assert manager.get_nat_status() == "unknown"
            assert discovered == [b_id]
            assert set(established) == {(b_id, addr)}

            with trio.fail_after(5):
                while not awaited:
                    await trio.sleep(0.01)
            assert awaited == [host_a.get_id().to_base58()]

            await manager.disconnect(b_id)
            with trio.fail_after(5):
                while manager.get_metrics().active_connections:
                    await trio.sleep(0.01)
            # (py-libp2p may open a second connection while the first is set up; the
            # manager closes such duplicates, and each close is reported too.)
            assert set(closed) == {b_id}
            await other.stop()
            await manager.stop()

    trio.run(main)


def test_failed_dial_counts_and_returns_false() -> None:
    async def main() -> None:
        config = ConnectivityConfig.preset("development", connection_timeout=3)
        async with running_host(config) as host:
            manager = await setup_universal_connectivity(host, config)
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            stranger = peer_id_of(new_key_pair())
            ok = await manager.dial_peer(stranger, [f"/ip4/127.0.0.1/tcp/{port}"])
            assert ok is False
            assert manager.get_metrics().total_connections_failed == 1
            kinds = [e.kind for e in manager.get_events()]
            assert "dial_failed" in kinds
            failure = next(e for e in manager.get_events() if e.kind == "dial_failed")
            assert "refused" in failure.detail.lower() or str(port) in failure.detail
            await manager.stop()

    trio.run(main)


def test_bootstrap_retries_until_the_peer_appears() -> None:
    async def main() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        bootstrap_key = new_key_pair()
        bootstrap_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(bootstrap_key)}"
        config = ConnectivityConfig.preset(
            "development",
            connect_to_bootstrap=True,
            bootstrap_peers=[bootstrap_addr],
        )
        async with running_host(config) as host:
            manager = await setup_universal_connectivity(host, config)
            with trio.fail_after(5):  # first attempts fail: nobody listens yet
                while manager.get_metrics().total_connections_failed < 2:
                    await trio.sleep(0.05)
            kinds = [e.kind for e in manager.get_events()]
            assert "bootstrap_retry" in kinds

            late = ConnectivityConfig.preset(
                "development", listen_addrs=[bootstrap_addr.split("/p2p/")[0]]
            )
            async with running_host(late, bootstrap_key):
                with trio.fail_after(10):
                    while not manager.is_connected(peer_id_of(bootstrap_key)):
                        await trio.sleep(0.05)
                peer = manager.get_peer(peer_id_of(bootstrap_key))
                assert peer is not None and peer.sources == ("bootstrap",)
            await manager.stop()

    trio.run(main)
