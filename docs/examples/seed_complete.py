"""The seed's "Complete Example", runnable.

Differences from the seed text: imports come from ``ucsdk``; the host is created here (the
seed assumes one) plus a second local node that dials us, so the callbacks have something
to report; it runs for ``sys.argv[1]`` seconds (default 3) instead of an hour; bootstrap
stays on loopback.
"""

import sys

import anyio
import multiaddr
from libp2p.peer.peerinfo import info_from_p2p_addr

from ucsdk import ConnectivityConfig, setup_universal_connectivity
from ucsdk.host import build_host
from ucsdk.identity import new_key_pair

RUN_SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0


async def main() -> None:
    # Assume you have a libp2p host
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = build_host(ConnectivityConfig.preset("development"), new_key_pair())
    visitor = build_host(ConnectivityConfig.preset("development"), new_key_pair())

    # Setup universal connectivity with defaults
    config = ConnectivityConfig(
        # Enable all discovery mechanisms
        enable_mdns=True,
        enable_pubsub_discovery=True,
        enable_dht_discovery=True,
        # Enable NAT traversal
        enable_autonat=True,
        enable_relay_client=True,
        enable_dcutr=True,
        # Callbacks
        on_peer_discovered=lambda peer: print(f"Discovered: {peer.peer_id}"),
        on_connection_established=lambda peer_id, addr: print(f"Connected: {peer_id}"),
        # Stay on this machine
        connect_to_bootstrap=False,
    )

    async with host.run(listen), visitor.run(listen):
        # Start connectivity manager
        manager = await setup_universal_connectivity(host, config)

        # Your application logic here: a local peer dials us
        our_addr = f"{host.get_transport_addrs()[0]}/p2p/{host.get_id().to_base58()}"
        await visitor.connect(info_from_p2p_addr(multiaddr.Multiaddr(our_addr)))
        await anyio.sleep(RUN_SECONDS)
        print(f"Active connections: {manager.get_metrics().active_connections}")

        # Cleanup
        await manager.stop()
    await host.close()
    await visitor.close()


if __name__ == "__main__":
    anyio.run(main, backend="trio")
