"""The peer table: every peer heard of, by any mechanism, in one bounded table.

Discovery services, dials and inbound connections all report here. A peer known only from
an inbound connection is *pending* until identify says who it is (an AutoNAT dial-back host
never is, and is forgotten when it disconnects). When the table is full, the peer heard of
longest ago that is not connected makes room.

Example:
    >>> from ucsdk.connectivity.peertable import PeerTable
    >>> from ucsdk.connectivity.recorder import Recorder
    >>> table = PeerTable(Recorder(10, 5), local_peer_id="me", max_peers=2)
    >>> for name in ("a", "b", "c"):
    ...     _ = table.report(name, [f"/ip4/127.0.0.1/tcp/{len(name)}"], "manual")
    >>> [p.peer_id for p in table.snapshots()], table.evicted, table.discovered_total
    (['b', 'c'], 1, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ucsdk.connectivity.recorder import Recorder
from ucsdk.peers import DiscoveredPeer, PeerRecord


class PeerTable:
    """Mutable per-peer records (event loop only); snapshots for everyone else."""

    def __init__(
        self,
        recorder: Recorder,
        local_peer_id: str,
        max_peers: int,
        on_peer_discovered: Callable[..., Any] | None = None,
    ) -> None:
        self._recorder = recorder
        self.local_peer_id = local_peer_id
        self.max_peers = max_peers
        self.on_peer_discovered = on_peer_discovered
        self._peers: dict[str, PeerRecord] = {}
        self.discovered_total = 0
        self.evicted = 0
        self.listeners: list[Callable[[PeerRecord, str], None]] = []
        """Called with a record and its source whenever a report taught us something."""

    def get(self, peer_id: str) -> PeerRecord | None:
        return self._peers.get(str(peer_id))

    def __contains__(self, peer_id: str) -> bool:
        return str(peer_id) in self._peers

    def snapshots(self) -> list[DiscoveredPeer]:
        """Every peer, oldest first."""
        return [record.snapshot() for record in self._peers.values()]

    def is_connected(self, peer_id: str) -> bool:
        record = self._peers.get(str(peer_id))
        return bool(record and record.connected)

    def record_for(self, peer_id: str, *, pending: bool = False) -> tuple[PeerRecord, bool]:
        """The record of ``peer_id``, made if new; ``(record, is_new)``."""
        record = self._peers.get(peer_id)
        if record is not None:
            if record.pending and not pending:
                self.confirm(record, "discovery")
            return record, False
        if len(self._peers) >= self.max_peers:
            self._evict_stalest()
        record = PeerRecord(peer_id)
        record.pending = pending
        self._peers[peer_id] = record
        if not pending:
            self.discovered_total += 1
        return record, True

    def announce_new(self, record: PeerRecord, how: str) -> None:
        """Tell the log and the user about a newly discovered peer."""
        self._recorder.record("peer_discovered", record.peer_id, f"via {how}")
        self._recorder.call_user(self.on_peer_discovered, record.snapshot())

    def confirm(self, record: PeerRecord, how: str) -> None:
        """A peer known only from an inbound connection turned out to be a real peer."""
        record.pending = False
        self.discovered_total += 1
        self.announce_new(record, f"inbound connection ({how})")

    def forget(self, peer_id: str) -> None:
        self._peers.pop(peer_id, None)

    def report(self, peer_id: str, addrs: Sequence[str], source: str) -> DiscoveredPeer:
        """Merge what a mechanism learnt about a peer."""
        record, is_new = self.record_for(peer_id)
        changed = record.add_addrs([str(a) for a in addrs], source)
        if is_new:
            self.announce_new(record, source)
        elif changed:
            self._recorder.touch()
        for listener in self.listeners:
            listener(record, source)
        return record.snapshot()

    def _evict_stalest(self) -> None:
        """Make room: drop the peer heard of longest ago that is not connected."""
        idle = [r for r in self._peers.values() if not r.connected]
        if not idle:
            return
        stalest = min(idle, key=lambda r: r.last_seen)
        del self._peers[stalest.peer_id]
        self.evicted += 1
