"""Kademlia DHT discovery and peer routing (py-libp2p's ``KadDHT``, ``/ipfs/kad/1.0.0``).

Connected peers that speak the DHT go into the routing table; a random walk (optional)
fills it further; :meth:`DHTDiscovery.find_peer` finds a peer's addresses from its id
alone by asking ever closer peers. Every peer learnt this way is reported with source
``dht``. ``find_providers`` results are de-duplicated (py-libp2p may repeat a provider).

Example (inside trio, with a running host)::

    dht = DHTDiscovery(host, mode="server")
    await dht.start()
    await dht.add_peer(some_connected_peer_id)
    info = await dht.find_peer(target_peer_id)   # DiscoveredPeer | None
    await dht.stop()
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.kad_dht.common import MAX_DHT_MESSAGE_SIZE
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service

from ucsdk import errors
from ucsdk._wire import read_exactly
from ucsdk.discovery._base import DiscoveryService, check_seconds
from ucsdk.peers import MAX_ADDRS_PER_PEER, DiscoveredPeer

logger = logging.getLogger("UniversalConnectivity")

MODES = {"server": DHTMode.SERVER, "client": DHTMode.CLIENT}


class DHTDiscovery(DiscoveryService):
    """Kademlia discovery and peer routing (see the module docstring).

    Example:
        >>> sorted(MODES)
        ['client', 'server']
    """

    source = "dht"

    def __init__(
        self,
        host: IHost,
        mode: str = "server",
        random_walk: bool = True,
        scan_interval: float = 5.0,
        peer_ttl: float = 3600.0,
        on_peer_discovered: Callable[[DiscoveredPeer], Any] | None = None,
        max_peers: int = 1000,
    ) -> None:
        super().__init__(peer_ttl, on_peer_discovered, max_peers)
        if mode not in MODES:
            raise errors.InvalidInput("DHT mode", mode, "'server' or 'client'")
        self.host = host
        self.mode = mode
        self.random_walk = random_walk
        self.scan_interval = check_seconds("scan_interval", scan_interval)
        self.kad: KadDHT | None = None
        self._ready = trio.Event()

    async def _run(self, nursery: trio.Nursery) -> None:
        self.kad = KadDHT(self.host, MODES[self.mode], enable_random_walk=self.random_walk)
        if self.mode == "server":
            # py-libp2p's handler drops junk without a word: count it on the way in.
            self.host.set_stream_handler(KAD_PROTOCOL, self._handle_kad)
        async with background_trio_service(self.kad):
            for peer_id in self.host.get_connected_peers():
                await self.add_peer(peer_id)
            self._ready.set()
            while True:
                self._scan_routing_table()
                await trio.sleep(self.scan_interval)

    async def _on_stop(self) -> None:
        self.kad = None

    async def _handle_kad(self, stream: INetStream) -> None:
        kad = self.kad
        if kad is None:
            await stream.reset()
            return
        await kad.handle_stream(_CountingStream(stream, self.dropped))  # type: ignore[arg-type]

    def _scan_routing_table(self) -> None:
        """Report every peer the routing table holds (random walk adds to it)."""
        if self.kad is None:
            return
        for info in self.kad.routing_table.get_peer_infos():
            addrs = _transport_addrs(info.addrs)
            pid = info.peer_id.to_base58()
            if addrs and pid not in self._peers:
                self._remember(pid, addrs)

    async def add_peer(self, peer_id: ID) -> bool:
        """Offer a connected peer to the routing table (kept only if it serves the DHT)."""
        if self.kad is None:
            return False
        try:
            return await self.kad.add_peer(peer_id)
        except Exception as exc:
            logger.debug("DHT: %s not added to the routing table: %s", peer_id, exc)
            return False

    async def find_peer(self, peer_id: ID) -> DiscoveredPeer | None:
        """Look ``peer_id`` up in the DHT; its addresses, or ``None`` when not found."""
        await self._ready.wait()
        if self.kad is None:
            return None
        try:
            info = await self.kad.find_peer(peer_id)
        except Exception as exc:
            logger.debug("DHT: lookup of %s failed: %s", peer_id, exc)
            return None
        if info is None:
            return None
        addrs = _transport_addrs(info.addrs)
        if not addrs:
            return None
        self._remember(peer_id.to_base58(), addrs)
        return self._peers.get(peer_id.to_base58())

    async def find_providers(self, key: str, count: int = 20) -> list[DiscoveredPeer]:
        """Peers providing ``key``, each once."""
        if self.kad is None:
            return []
        found: dict[str, DiscoveredPeer] = {}
        for info in await self.kad.find_providers(key, count):
            pid = info.peer_id.to_base58()
            if pid in found:
                continue
            addrs = _transport_addrs(info.addrs)
            found[pid] = DiscoveredPeer(pid, tuple(addrs), (self.source,))
        return list(found.values())

    async def provide(self, key: str) -> bool:
        """Announce this node as a provider of ``key``."""
        if self.kad is None:
            return False
        return bool(await self.kad.provide(key))

    def routing_table_size(self) -> int:
        return self.kad.get_routing_table_size() if self.kad is not None else 0


class _CountingStream:
    """An inbound DHT stream that counts the junk py-libp2p's handler drops silently.

    Each frame is read here first and the same bytes handed on: a frame cut off
    (``truncated``), over py-libp2p's size limit (``oversized``) or not a DHT message
    (``malformed``) is counted in ``dropped``. py-libp2p resets the stream on a message it
    refuses after parsing (a PUT_VALUE without a record, an empty key...) or when it is
    busy: a reset after a well-formed request it never answered is ``refused``, one
    before any request ``busy``.
    """

    def __init__(self, stream: INetStream, dropped: Counter[str]) -> None:
        self._stream = stream
        self._dropped = dropped
        self._pending = b""
        self._frames = 0
        self._unanswered = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def write(self, data: bytes) -> None:
        self._unanswered = False
        await self._stream.write(data)

    async def reset(self) -> None:
        if self._unanswered:
            self._dropped["refused"] += 1
        elif not self._frames:
            self._dropped["busy"] += 1  # reset before reading anything: over its limit
        self._unanswered = False
        await self._stream.reset()

    async def read(self, n: int | None = None) -> bytes:
        if not self._pending:
            self._pending = await self._frame()
        size = len(self._pending) if n is None or n < 0 else n
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk

    async def _frame(self) -> bytes:
        self._frames += 1
        header = b""
        try:
            while len(header) < 10:
                byte = await self._stream.read(1)
                if not byte:
                    if header:
                        self._dropped["truncated"] += 1
                    return header
                header += byte
                if not byte[0] & 0x80:
                    break
            else:
                self._dropped["malformed"] += 1  # a length longer than 64 bits
                return header
            size = sum((b & 0x7F) << (7 * i) for i, b in enumerate(header))
            if size > MAX_DHT_MESSAGE_SIZE:
                self._dropped["oversized"] += 1
                return header
            payload = await read_exactly(self._stream, size)
        except Exception:
            if header:
                self._dropped["truncated"] += 1
            raise
        try:
            Message.FromString(payload)
        except DecodeError:
            self._dropped["malformed"] += 1
        else:
            self._unanswered = True
        return header + payload


def _transport_addrs(addrs: Any) -> list[str]:
    out: list[str] = []
    for addr in list(addrs)[:MAX_ADDRS_PER_PEER]:
        text = str(addr)
        marker = text.rfind("/p2p/")
        text = text[:marker] if marker > 0 else text
        if text not in out:
            out.append(text)
    return out
