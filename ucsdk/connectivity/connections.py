"""Connections: every open connection of the node, described once and kept in step.

The tracker listens to the swarm (a py-libp2p notifee), describes each new connection
(remote address, transport, direction, relayed), keeps the peer table's connection counts,
closes the duplicate when two peers dialled each other at once, and tells its listeners
(identify, NAT coordination) about each new connection.

Example (a tracker on a host with no connections yet):
    >>> import trio
    >>> from ucsdk import ConnectivityConfig
    >>> from ucsdk.host import build_host
    >>> from ucsdk.identity import new_key_pair
    >>> from ucsdk.connectivity.recorder import Recorder
    >>> from ucsdk.connectivity.peertable import PeerTable
    >>> from ucsdk.connectivity.connections import ConnectionTracker
    >>> host = build_host(ConnectivityConfig.preset("development"), new_key_pair())
    >>> recorder = Recorder(10, 5)
    >>> tracker = ConnectionTracker(host, PeerTable(recorder, "me", 10), recorder)
    >>> tracker.rows(), tracker.active(), tracker.relayed()
    ([], 0, 0)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee

from ucsdk.config import transport_of
from ucsdk.connectivity.peertable import PeerTable
from ucsdk.connectivity.recorder import Recorder
from ucsdk.host import connection_direction, describe_connection
from ucsdk.metrics import utcnow
from ucsdk.peers import ConnectionInfo

logger = logging.getLogger("UniversalConnectivity")

DUPLICATE_SETTLE = 0.5
"""Seconds a duplicate connection is left before it is closed (see ``_close_duplicate``)."""
REDIAL_AFTER = 2.0
"""Seconds; a peer that dials again this long after its first connection opened has
given up on that one, and the new connection is the one both sides keep."""


@dataclass
class OpenConnection:
    """What the tracker knows of one open connection."""

    peer_id: str
    remote_addr: str | None
    direction: str
    transport: str | None
    relayed: bool
    opened_at: datetime


class _Notifee(INotifee):
    """Forwards swarm events to the tracker."""

    def __init__(self, tracker: ConnectionTracker) -> None:
        self._tracker = tracker

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._tracker.on_connected(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._tracker.on_disconnected(conn)

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


def _call_str(obj: Any, method: str) -> str | None:
    fn = getattr(obj, method, None)
    if not callable(fn):
        return None
    try:
        value = fn()
    except Exception:
        return None
    return str(value) if value else None


class ConnectionTracker:
    """Open connections by identity of the py-libp2p connection object."""

    def __init__(
        self,
        host: IHost,
        peers: PeerTable,
        recorder: Recorder,
        *,
        on_established: Callable[..., Any] | None = None,
        on_closed: Callable[..., Any] | None = None,
    ) -> None:
        self.host = host
        self._peers = peers
        self._recorder = recorder
        self.on_established = on_established
        self.on_closed = on_closed
        self._open: dict[int, OpenConnection] = {}
        self._notifee = _Notifee(self)
        self.spawn: Callable[..., bool] | None = None
        """Starts a task on the node's loop, ``False`` when it cannot (not running)."""
        self.listeners: list[Callable[[INetConn, OpenConnection], None]] = []
        """Called for every new connection while running (identify, DCUtR upgrades)."""

    # ------------------------------------------------------------------ life cycle
    def attach(self) -> None:
        """Listen to the swarm, and take in the connections already open."""
        network = self.host.get_network()
        network.register_notifee(self._notifee)
        for connections in list(network.connections.values()):
            for conn in connections:
                self.on_connected(conn)

    def detach(self) -> None:
        remove = getattr(self.host.get_network(), "remove_notifee", None)
        if callable(remove):
            remove(self._notifee)

    # -------------------------------------------------------------------- queries
    def get(self, conn: INetConn) -> OpenConnection | None:
        return self._open.get(id(conn))

    def active(self) -> int:
        return len(self._open)

    def relayed(self) -> int:
        return sum(1 for c in self._open.values() if c.relayed)

    def direct_remotes(self) -> list[str]:
        """Remote addresses of the open direct connections (who a broadcast reaches)."""
        return [c.remote_addr for c in self._open.values() if c.remote_addr and not c.relayed]

    def of_peer(self, peer_id: str) -> list[OpenConnection]:
        return [c for c in self._open.values() if c.peer_id == peer_id]

    def rows(self) -> list[ConnectionInfo]:
        """Every open connection, with its negotiated security and muxer."""
        rows: list[ConnectionInfo] = []
        for connections in list(self.host.get_network().connections.values()):
            for conn in connections:
                known = self._open.get(id(conn))
                if known is None:
                    continue
                security = _call_str(conn, "get_negotiated_security_protocol")
                muxer = _call_str(conn, "get_negotiated_muxer_protocol")
                if known.transport == "quic":
                    # QUIC brings its own TLS 1.3 handshake and native streams.
                    security = security or "tls1.3 (quic)"
                    muxer = muxer or "quic"
                try:
                    streams = len(conn.get_streams())
                except Exception:
                    streams = 0
                rows.append(
                    ConnectionInfo(
                        peer_id=known.peer_id,
                        remote_addr=known.remote_addr,
                        direction=known.direction,
                        transport=known.transport,
                        security=security,
                        muxer=muxer,
                        relayed=known.relayed,
                        opened_at=known.opened_at,
                        streams=streams,
                    )
                )
        return rows

    # --------------------------------------------------------------------- events
    def on_connected(self, conn: INetConn) -> None:
        if id(conn) in self._open:
            return
        try:
            peer_id = conn.muxed_conn.peer_id.to_base58()
        except Exception as exc:
            logger.debug("connection without a peer id: %s", exc)
            return
        remote, transport, relayed = describe_connection(conn)
        direction = connection_direction(conn)
        known = OpenConnection(peer_id, remote, direction, transport, relayed, utcnow())
        self._open[id(conn)] = known
        record, is_new = self._peers.record_for(peer_id, pending=direction == "inbound")
        record.connections += 1
        record.relayed_connections += int(relayed)
        record.transport = transport
        if remote and direction == "outbound" and transport != "webrtc":
            # (A /webrtc connection's address is the ICE pair's, not one to dial again.)
            record.add_addrs([remote], None)
        elif direction == "inbound" and not record.sources:
            record.add_addrs([], "inbound")
        self._recorder.established += 1
        if is_new and not record.pending:
            self._peers.announce_new(record, f"{direction} connection")
        self._recorder.record("connected", peer_id, f"{direction} {transport} {remote}")
        self._recorder.call_user(self.on_established, peer_id, remote)
        if self.spawn is not None:
            for listener in self.listeners:
                listener(conn, known)
            if self._duplicate_to_close(conn) is not None:
                self.spawn(self._close_duplicate, conn)

    def on_disconnected(self, conn: INetConn) -> None:
        known = self._open.pop(id(conn), None)
        if known is None:
            return
        record = self._peers.get(known.peer_id)
        if record is not None:
            record.connections = max(0, record.connections - 1)
            record.relayed_connections = max(0, record.relayed_connections - int(known.relayed))
            record.last_seen = utcnow()
        self._recorder.record(
            "disconnected", known.peer_id, f"{known.transport} {known.remote_addr}"
        )
        if record is not None and record.pending and record.connections == 0:
            # Never said who it was (e.g. an AutoNAT server's dial-back host): forget it.
            self._peers.forget(known.peer_id)
        self._recorder.call_user(self.on_closed, known.peer_id, known.remote_addr)

    def adopt(self, peer: Any, dialled_targets: Sequence[multiaddr.Multiaddr]) -> None:
        """After a dial: make sure the table knows the new connections (the notifee may
        run just after ``connect()`` returns), and fill in the address py-libp2p keeps for
        none (WebSocket) from the one we dialled."""
        for conn in self.host.get_network().connections.get(peer, []):
            self.on_connected(conn)
            known = self._open.get(id(conn))
            if known is not None and known.remote_addr is None:
                dialled = [
                    str(t) for t in dialled_targets if transport_of(str(t)) == known.transport
                ]
                known.remote_addr = dialled[0] if dialled else None

    # ----------------------------------------------------------------- duplicates
    def _duplicate_to_close(self, conn: INetConn) -> INetConn | None:
        """When two peers dial each other at once, both end with two direct connections.

        Both sides keep the same one, the connection dialled by the smaller peer id, and
        close the other; relayed connections are left alone (DCUtR needs them). Of two
        connections the same side dialled, the newer stays: a peer that dials again while
        we still hold a connection has most often lost that one (its NAT mapping changed,
        its link went down) and we have not noticed yet; keeping the old one would close
        every new connection it makes until ours times out. Two connections dialled within
        ``REDIAL_AFTER`` seconds of each other are a race, and the older one stays.
        """
        known = self._open[id(conn)]
        if known.relayed:
            return None
        pid = conn.muxed_conn.peer_id
        siblings = [
            c
            for c in self.host.get_network().connections.get(pid, [])
            if id(c) in self._open and not self._open[id(c)].relayed
        ]
        if len(siblings) < 2:
            return None

        def dialler(c: INetConn) -> str:
            outbound = self._open[id(c)].direction == "outbound"
            return self._peers.local_peer_id if outbound else known.peer_id

        first = min(dialler(c) for c in siblings)
        mine = sorted(
            (c for c in siblings if dialler(c) == first), key=lambda c: self._open[id(c)].opened_at
        )
        oldest, newest = mine[0], mine[-1]
        age = self._open[id(newest)].opened_at - self._open[id(oldest)].opened_at
        # Two dials racing each other finish within moments; a dial seconds later means
        # the dialler gave up on the older connection.
        keep = newest if age.total_seconds() > REDIAL_AFTER else oldest
        return next((c for c in siblings if c is not keep), None)

    async def _close_duplicate(self, new: INetConn) -> None:
        """Close the duplicate ``new`` made, if it still is one ``DUPLICATE_SETTLE`` s on:
        a peer that closes one connection and opens the next (an AutoNAT dial-back host
        checking one address after another) has made no duplicate, but its close may
        reach us after its next connection does."""
        await trio.sleep(DUPLICATE_SETTLE)
        if id(new) not in self._open:
            return
        conn = self._duplicate_to_close(new)
        if conn is None:
            return
        known = self._open.get(id(conn))
        if known is not None:
            self._recorder.record(
                "duplicate_closed", known.peer_id, f"{known.direction} {known.remote_addr}"
            )
        try:
            await conn.close()
        except Exception as exc:
            logger.debug("closing a duplicate connection failed: %s", exc)
