"""What a node knows about other peers and its connections, as immutable snapshots.

The manager keeps one mutable :class:`PeerRecord` per peer on its event-loop thread and
hands out frozen :class:`DiscoveredPeer` / :class:`ConnectionInfo` copies to everyone else.

Example:
    >>> from ucsdk.peers import PeerRecord
    >>> record = PeerRecord("12D3KooWExample")
    >>> record.add_addrs(["/ip4/127.0.0.1/tcp/4001"], source="manual")
    True
    >>> peer = record.snapshot()
    >>> peer.multiaddrs, peer.sources, peer.connected
    (('/ip4/127.0.0.1/tcp/4001',), ('manual',), False)
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ucsdk.metrics import utcnow

MAX_ADDRS_PER_PEER = 32
"""Addresses kept per peer; the oldest go first (a peer cannot flood our table)."""


@dataclass(frozen=True)
class DiscoveredPeer:
    """A peer this node has heard of: how, when, and whether it is connected.

    ``sources`` names every mechanism that reported the peer (``manual``, ``inbound``,
    ``bootstrap``, and with discovery ``pubsub``, ``mdns``, ``dht``). ``connection_type``
    is ``"direct"``, ``"relay"`` or ``None`` when not connected.

    Example:
        >>> DiscoveredPeer("12D3KooWExample").connected
        False
    """

    peer_id: str
    multiaddrs: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    first_seen: datetime = field(default_factory=utcnow)
    last_seen: datetime = field(default_factory=utcnow)
    connected: bool = False
    connection_type: str | None = None
    transport: str | None = None
    rtt_ms: float | None = None
    agent_version: str | None = None
    protocols: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def discovered_at(self) -> datetime:
        """When the peer was first heard of (same as ``first_seen``)."""
        return self.first_seen

    def _repr_html_(self) -> str:
        state = (
            f"connected ({self.connection_type}, {self.transport})"
            if self.connected
            else "not connected"
        )
        addrs = "<br>".join(html.escape(a) for a in self.multiaddrs) or "—"
        rtt = f"{self.rtt_ms:.2f} ms" if self.rtt_ms is not None else "—"
        return (
            f"<div class='ucsdk-peer'><b>{html.escape(self.peer_id)}</b> — {state}<br>"
            f"sources: {', '.join(self.sources) or '—'}; rtt: {rtt}; "
            f"agent: {html.escape(self.agent_version or '—')}<br>{addrs}</div>"
        )


@dataclass(frozen=True)
class PeerInfo:
    """What :meth:`ucsdk.Node.connect` returns: the peer we are now connected to.

    Example:
        >>> PeerInfo("12D3KooWExample", ("/ip4/127.0.0.1/tcp/1",), "tcp", "direct").connection_type
        'direct'
    """

    peer_id: str
    addrs: tuple[str, ...]
    transport: str | None
    connection_type: str | None
    agent_version: str | None = None
    protocols: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectionInfo:
    """One open connection (a row of ``Node.connections()``)."""

    peer_id: str
    remote_addr: str | None
    direction: str
    transport: str | None
    security: str | None
    muxer: str | None
    relayed: bool
    opened_at: datetime
    streams: int


@dataclass(frozen=True)
class DialAttempt:
    """One address tried by a dial (a row of ``Node.dial_attempts()``).

    ``started_ms`` is when the attempt began after its dial started (the ranker's delay),
    ``ms`` how long it ran. ``outcome``: ``connected``, ``failed``, ``timeout``,
    ``cancelled`` (another address connected first) or ``skipped`` (never tried, and
    ``error`` says why).

    Example:
        >>> DialAttempt(1, "12D3KooWExample", "/ip4/127.0.0.1/tcp/1", "tcp", False,
        ...     0.0, "connected", None, 3.2).outcome
        'connected'
    """

    dial_id: int
    peer_id: str
    addr: str
    transport: str | None
    relayed: bool
    started_ms: float
    outcome: str
    error: str | None
    ms: float | None
    at: datetime = field(default_factory=utcnow)


class PeerRecord:
    """The mutable per-peer state the manager keeps (only touched on the event loop)."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.multiaddrs: list[str] = []
        self.sources: list[str] = []
        self.first_seen = utcnow()
        self.last_seen = self.first_seen
        self.connections = 0
        self.relayed_connections = 0
        self.transport: str | None = None
        self.rtt_ms: float | None = None
        self.agent_version: str | None = None
        self.protocols: tuple[str, ...] = ()
        self.metadata: dict[str, Any] = {}
        self.pending = False
        """Known only from an inbound connection, not yet identified: not counted as
        discovered until identify says who it is (an AutoNAT dial-back never is)."""

    def add_addrs(self, addrs: Iterable[str], source: str | None) -> bool:
        """Merge addresses and a source; return True when something new was learnt."""
        changed = False
        for addr in addrs:
            if addr not in self.multiaddrs:
                self.multiaddrs.append(addr)
                changed = True
        del self.multiaddrs[:-MAX_ADDRS_PER_PEER]
        if source and source not in self.sources:
            self.sources.append(source)
            changed = True
        self.last_seen = utcnow()
        return changed

    @property
    def connected(self) -> bool:
        return self.connections > 0

    @property
    def connection_type(self) -> str | None:
        if not self.connected:
            return None
        return "direct" if self.connections > self.relayed_connections else "relay"

    def snapshot(self) -> DiscoveredPeer:
        return DiscoveredPeer(
            peer_id=self.peer_id,
            multiaddrs=tuple(self.multiaddrs),
            sources=tuple(self.sources),
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            connected=self.connected,
            connection_type=self.connection_type,
            transport=self.transport if self.connected else None,
            rtt_ms=self.rtt_ms,
            agent_version=self.agent_version,
            protocols=self.protocols,
            metadata=dict(self.metadata),
        )
