"""Real py-libp2p hosts on loopback, built the way ucsdk builds them, for service tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.peerinfo import PeerInfo

from ucsdk.config import ConnectivityConfig
from ucsdk.host import build_host, disable_auto_dial
from ucsdk.identity import new_key_pair

LOOPBACK = ConnectivityConfig.preset("development", enable_mdns=False)


@asynccontextmanager
async def hosts(n: int) -> AsyncIterator[list[IHost]]:
    made = [build_host(LOOPBACK, new_key_pair()) for _ in range(n)]
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with trio.open_nursery() as nursery:
        ready = []
        for host in made:
            ready.append(trio.Event())

            async def run(h: IHost = host, done: trio.Event = ready[-1]) -> None:
                async with h.run(listen):
                    await disable_auto_dial(h)
                    done.set()
                    await trio.sleep_forever()

            nursery.start_soon(run)
        for event in ready:
            await event.wait()
        try:
            yield made
        finally:
            nursery.cancel_scope.cancel()
            for host in made:
                with trio.CancelScope(shield=True):
                    await host.close()


async def connect(a: IHost, b: IHost) -> None:
    await a.connect(PeerInfo(b.get_id(), b.get_addrs()))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
