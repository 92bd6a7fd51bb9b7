"""The seed's "Universal Connectivity Manager" example, runnable.

Differences from the seed text: imports come from ``ucsdk``; the program builds and runs
its own host and a second local node to dial (the seed's ``1.2.3.4`` is a placeholder, and
ucsdk's examples only talk to this machine); public bootstrap is off for the same reason.
"""

import multiaddr
import trio

from ucsdk import ConnectivityConfig, UniversalConnectivityManager
from ucsdk.host import build_host
from ucsdk.identity import new_key_pair


async def main() -> None:
    # Configure
    config = ConnectivityConfig(
        # Discovery
        enable_mdns=True,
        enable_pubsub_discovery=True,
        enable_dht_discovery=True,
        # NAT traversal
        enable_autonat=True,
        enable_relay_client=True,
        enable_relay_server=False,  # Set True to act as relay
        enable_dcutr=True,
        # Bootstrap peers: the seed connects to the IPFS bootstrap peers; this example
        # stays on loopback.
        connect_to_bootstrap=False,
        listen_host="127.0.0.1",
    )
    listen = [multiaddr.Multiaddr(a) for a in config.resolved_listen_addrs()]
    host = build_host(config, new_key_pair())
    other = build_host(config, new_key_pair())
    async with host.run(listen), other.run(listen):
        # Create manager
        manager = UniversalConnectivityManager(host, config)
        await manager.start()

        # Dial a peer with intelligent strategy
        success = await manager.dial_peer(
            peer_id=other.get_id().to_base58(),
            addrs=[str(other.get_transport_addrs()[0])],
            use_relay=True,  # Fallback to relay if direct fails
        )
        print(f"Dial success: {success}")

        # Get metrics
        metrics = manager.get_metrics()
        print(f"Active connections: {metrics.active_connections}")
        print(f"NAT status: {metrics.nat_status}")
        print(f"Peers discovered: {metrics.total_peers_discovered}")

        # Get discovered peers
        peers = manager.get_discovered_peers()
        for peer in peers:
            print(f"Peer: {peer.peer_id}, Addrs: {peer.multiaddrs}")

        await manager.stop()
    await host.close()
    await other.close()


if __name__ == "__main__":
    trio.run(main)
