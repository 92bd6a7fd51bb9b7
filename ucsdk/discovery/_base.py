"""What every discovery service shares: a bounded table of the peers it found."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from ucsdk import errors
from ucsdk._service import Service
from ucsdk.metrics import utcnow
from ucsdk.peers import DiscoveredPeer

logger = logging.getLogger("UniversalConnectivity")


def check_seconds(name: str, value: Any) -> float:
    """``value`` as a positive, finite number of seconds, or :class:`InvalidInput`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise errors.InvalidInput(name, value, "a positive number of seconds")
    return float(value)


class DiscoveryService(Service):
    """A service that finds peers by one mechanism (``source``) and keeps them, bounded."""

    source = "discovery"

    def __init__(
        self,
        peer_ttl: float,
        on_peer_discovered: Callable[[DiscoveredPeer], Any] | None,
        max_peers: int,
    ) -> None:
        super().__init__()
        self.peer_ttl = check_seconds("peer_ttl", peer_ttl)
        self.on_peer_discovered = on_peer_discovered
        self.max_peers = max_peers
        self._peers: dict[str, DiscoveredPeer] = {}
        self.dropped: Counter[str] = Counter()
        """Input dropped, by reason."""

    def get_discovered_peers(self) -> list[DiscoveredPeer]:
        return list(self._peers.values())

    def get_peer_by_id(self, peer_id: str) -> DiscoveredPeer | None:
        return self._peers.get(str(peer_id))

    def clear_stale_peers(self) -> int:
        """Forget peers not heard from for ``peer_ttl`` seconds; return how many."""
        now = utcnow()
        stale = [
            pid
            for pid, peer in self._peers.items()
            if (now - peer.last_seen).total_seconds() > self.peer_ttl
        ]
        for pid in stale:
            del self._peers[pid]
        return len(stale)

    def _remember(self, peer_id: str, addrs: list[str]) -> None:
        """Record a sighting (evicting the stalest peer when full) and tell the listener."""
        now = utcnow()
        known = self._peers.get(peer_id)
        if known is None and len(self._peers) >= self.max_peers:
            stalest = min(self._peers.values(), key=lambda p: p.last_seen)
            del self._peers[stalest.peer_id]
        peer = DiscoveredPeer(
            peer_id=peer_id,
            multiaddrs=tuple(addrs),
            sources=(self.source,),
            first_seen=known.first_seen if known else now,
            last_seen=now,
        )
        self._peers[peer_id] = peer
        if self.on_peer_discovered is not None:
            try:
                self.on_peer_discovered(peer)
            except Exception:
                logger.exception("on_peer_discovered raised")
