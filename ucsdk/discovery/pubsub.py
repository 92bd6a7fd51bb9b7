"""Pubsub peer discovery: peers announce themselves on GossipSub topics.

Wire format (js-libp2p ``@libp2p/pubsub-peer-discovery``): each node publishes, every
``interval`` seconds, a signed GossipSub message on each topic whose data is the protobuf
``Peer { bytes publicKey = 1; repeated bytes addrs = 2; }`` — its libp2p public key and its
listen multiaddrs (binary, without ``/p2p``). A receiver accepts it only when the public
key belongs to the message's signed ``from`` peer; anything else is dropped and counted.

Example (inside trio, with a running host)::

    discovery = PubsubPeerDiscovery(host, topics=["_peer-discovery._p2p._pubsub"], interval=10.0)
    await discovery.start()
    peers = discovery.get_discovered_peers()
    await discovery.stop()
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub

from ucsdk import errors
from ucsdk.config import DEFAULT_DISCOVERY_TOPIC
from ucsdk.discovery._base import DiscoveryService, check_seconds
from ucsdk.gossip import build_gossipsub, build_pubsub, run_pubsub
from ucsdk.host import expand_wildcard
from ucsdk.peers import MAX_ADDRS_PER_PEER, DiscoveredPeer
from ucsdk.proto import Peer

logger = logging.getLogger("UniversalConnectivity")

MAX_ANNOUNCEMENT_SIZE = 4096
"""Bytes; a larger announcement is dropped (ours are a few hundred bytes)."""
MAX_ADDR_SIZE = 256

DROP_REASONS = (
    "malformed",
    "oversized",
    "key_mismatch",
    "bad_address",
    "unsigned",
    "bad_signature",
)


def encode_announcement(host: IHost, addrs: Sequence[str]) -> bytes:
    """The ``Peer`` protobuf announcing ``host`` at ``addrs``."""
    return Peer(
        publicKey=host.get_public_key().serialize(),
        addrs=[multiaddr.Multiaddr(a).to_bytes() for a in addrs],
    ).SerializeToString()


def decode_announcement(data: bytes, signer: bytes) -> tuple[str, list[str]]:
    """Check and decode an announcement signed by ``signer`` (raw peer id bytes).

    Returns ``(peer_id, addrs)``; raises :class:`AnnouncementRejected` with a reason from
    :data:`DROP_REASONS`.
    """
    if len(data) > MAX_ANNOUNCEMENT_SIZE:
        raise AnnouncementRejected("oversized")
    try:
        peer = Peer.FromString(data)
        public_key = deserialize_public_key(peer.publicKey)
        peer_id = ID.from_pubkey(public_key)
    except Exception:
        raise AnnouncementRejected("malformed") from None
    if not signer:
        raise AnnouncementRejected("unsigned")
    if peer_id.to_bytes() != signer:
        raise AnnouncementRejected("key_mismatch")
    addrs: list[str] = []
    for raw in list(peer.addrs)[:MAX_ADDRS_PER_PEER]:
        if len(raw) > MAX_ADDR_SIZE:
            raise AnnouncementRejected("bad_address")
        try:
            text = str(multiaddr.Multiaddr(raw))
        except Exception:
            raise AnnouncementRejected("bad_address") from None
        # Drop a trailing /p2p/<id> only: a circuit address keeps its relay's id.
        marker = text.rfind("/p2p/")
        if marker > 0 and "/" not in text[marker + len("/p2p/") :]:
            text = text[:marker]
        addrs.append(text)
    return peer_id.to_base58(), addrs


class AnnouncementRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PubsubPeerDiscovery(DiscoveryService):
    """Announce this node and learn others over GossipSub (see the module docstring).

    ``pubsub``: share an existing ``libp2p.pubsub.pubsub.Pubsub`` (already running);
    by default the service creates and runs its own GossipSub router. ``listen_only``
    receives without announcing. Announcements older than ``peer_ttl`` seconds are
    forgotten by :meth:`clear_stale_peers` (run every interval).

    Example (what a receiver does with a forged announcement):
        >>> from libp2p.crypto.ed25519 import create_new_key_pair
        >>> claimed, signer = create_new_key_pair(), create_new_key_pair()
        >>> data = Peer(publicKey=claimed.public_key.serialize()).SerializeToString()
        >>> try:
        ...     decode_announcement(data, ID.from_pubkey(signer.public_key).to_bytes())
        ... except AnnouncementRejected as rejected:
        ...     print(rejected.reason)
        key_mismatch
    """

    def __init__(
        self,
        host: IHost,
        topics: Sequence[str] | None = None,
        interval: float = 10.0,
        listen_only: bool = False,
        peer_ttl: float = 300.0,
        on_peer_discovered: Callable[[DiscoveredPeer], Any] | None = None,
        pubsub: Pubsub | None = None,
        max_peers: int = 1000,
        addrs: Callable[[], list[str]] | None = None,
        pubsub_source: Callable[[], Pubsub | None] | None = None,
    ) -> None:
        super().__init__(peer_ttl, on_peer_discovered, max_peers)
        self.addrs = addrs
        """Where announced addresses come from (the manager's address book); by default
        the listeners, wildcards expanded, and circuit addresses from ``get_addrs()``."""
        topics = [DEFAULT_DISCOVERY_TOPIC] if topics is None else list(topics)
        if not topics or not all(isinstance(t, str) and t for t in topics):
            raise errors.InvalidInput("topics", topics, "a list of non-empty topic names")
        self.host = host
        self.topics = topics
        self.interval = check_seconds("interval", interval)
        self.listen_only = listen_only
        self.pubsub = pubsub
        self._pubsub_source = pubsub_source
        """Where a shared pubsub comes from at each (re)start: the node's messaging
        service; when that pubsub stops, this service ends too and is restarted on the
        new one."""
        self._owns_pubsub = pubsub is None and pubsub_source is None
        self.announcements_sent = 0
        self.announcements_received = 0
        self.local_peer_id = host.get_id().to_base58()

    # ---------------------------------------------------------------- life cycle
    async def _run(self, nursery: trio.Nursery) -> None:
        if self._owns_pubsub:
            router = build_gossipsub()
            self.pubsub = build_pubsub(self.host, router, on_reject=self._count_rejected)
            async with run_pubsub(self.host, self.pubsub, router):
                await self._serve()
        elif self._pubsub_source is not None:
            shared = self._pubsub_source()
            if shared is None:
                raise RuntimeError("the node's pubsub is not running")
            self.pubsub = shared
            await shared.wait_until_ready()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve)
                await shared.manager.wait_finished()
                raise RuntimeError("the node's pubsub stopped")
        else:
            await self._serve()

    async def _serve(self) -> None:
        pubsub = self.pubsub
        assert pubsub is not None
        await pubsub.wait_until_ready()
        try:
            async with trio.open_nursery() as nursery:
                for topic in self.topics:
                    pubsub.set_topic_validator(topic, self._validate, False)
                    subscription = await pubsub.subscribe(topic)
                    nursery.start_soon(self._receive, subscription)
                if not self.listen_only:
                    nursery.start_soon(self._announce_forever)
                nursery.start_soon(self._expire_forever)
        finally:
            with trio.CancelScope(shield=True):
                for topic in self.topics:
                    pubsub.remove_topic_validator(topic)
                    if not self._owns_pubsub:
                        await _quiet(pubsub.unsubscribe(topic))

    def _count_rejected(self, reason: str) -> None:
        self.dropped[reason] += 1

    def _validate(self, forwarder: ID, message: Any) -> bool:
        """Check, and take in, an announcement before pubsub delivers or forwards it.

        Taking it in here rather than from the subscription matters: py-libp2p's
        subscription queue holds 32 messages and drops the rest silently.
        """
        try:
            peer_id, addrs = decode_announcement(message.data, message.from_id)
        except AnnouncementRejected as rejected:
            self.dropped[rejected.reason] += 1
            logger.debug("dropped a %s announcement via %s", rejected.reason, forwarder)
            return False
        if peer_id != self.local_peer_id:
            self.announcements_received += 1
            self._remember(peer_id, addrs)
        return True

    async def _receive(self, subscription: Any) -> None:
        """Drain the subscription; announcements were handled by the validator."""
        while True:
            await subscription.get()

    def own_addrs(self) -> list[str]:
        """The addresses this node announces: its listeners, wildcards expanded, and its
        relay circuit addresses once it holds reservations."""
        if self.addrs is not None:
            return list(self.addrs())
        out: list[str] = []
        for addr in self.host.get_transport_addrs():
            for expanded in expand_wildcard(str(addr)):
                if expanded not in out:
                    out.append(expanded)
        for addr in self.host.get_addrs():
            text = str(addr)
            if "/p2p-circuit" in text:
                marker = text.rfind("/p2p/")
                circuit = text[:marker] if marker > text.find("/p2p-circuit") else text
                if circuit not in out:
                    out.append(circuit)
        return out

    async def announce(self) -> None:
        """Publish one announcement on every topic now."""
        assert self.pubsub is not None
        data = encode_announcement(self.host, self.own_addrs())
        for topic in self.topics:
            await self.pubsub.publish(topic, data)
        self.announcements_sent += 1

    async def _announce_forever(self) -> None:
        while True:
            try:
                await self.announce()
            except Exception as exc:
                logger.debug("announcement failed: %s", exc)
            await trio.sleep(self.interval)

    source = "pubsub"

    async def _expire_forever(self) -> None:
        while True:
            await trio.sleep(self.interval)
            self.clear_stale_peers()


async def _quiet(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as exc:
        logger.debug("pubsub clean-up step failed: %s", exc)
