"""Metrics, events and their history: immutable snapshots that cross threads safely.

Example:
    >>> from ucsdk.metrics import ConnectivityMetrics, EventLog
    >>> m = ConnectivityMetrics(active_connections=2, direct_connections=2)
    >>> m.active_connections, m.nat_status
    (2, 'unknown')
    >>> log = EventLog(maxlen=2)
    >>> for kind in ("started", "connected", "disconnected"):
    ...     _ = log.add(kind, peer_id=None, detail="")
    >>> [e.kind for e in log.snapshot()], log.dropped
    (['connected', 'disconnected'], 1)
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ConnectivityMetrics:
    """A snapshot of a node's connectivity counters (the seed's ``get_metrics()``).

    ``total_*`` fields only grow; ``active_connections``, ``relay_connections`` and
    ``direct_connections`` count the connections open when the snapshot was taken.
    ``dcutr_success_rate`` is hole-punch successes / attempts (0.0 before any attempt).
    ``nat_confidence`` (0-3) is how many recent AutoNAT answers agree with ``nat_status``.

    Example:
        >>> ConnectivityMetrics().dcutr_success_rate
        0.0
    """

    total_peers_discovered: int = 0
    total_connections_established: int = 0
    total_connections_failed: int = 0
    active_connections: int = 0
    relay_connections: int = 0
    direct_connections: int = 0
    nat_status: str = "unknown"
    dcutr_success_rate: float = 0.0
    last_updated: datetime = field(default_factory=utcnow)
    # Beyond the seed: what went wrong without being fatal.
    callback_errors: int = 0
    dcutr_attempts: int = 0
    dcutr_successes: int = 0
    invalid_messages: int = 0
    invalid_message_kinds: dict[str, int] = field(default_factory=dict)
    peers_evicted: int = 0
    nat_confidence: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict (for JSON, DataFrames, widgets)."""
        return dataclasses.asdict(self)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>"
            for k, v in self.to_dict().items()
        )
        return f"<table class='ucsdk-metrics'>{rows}</table>"


@dataclass(frozen=True)
class Event:
    """One thing that happened on a node: ``kind`` (e.g. ``connected``), when, about whom."""

    time: datetime
    kind: str
    peer_id: str | None
    detail: str
    seq: int = 0


class EventLog:
    """A bounded, ordered log of :class:`Event` (oldest dropped first, and counted)."""

    def __init__(self, maxlen: int) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self._seq = 0
        self.dropped = 0

    def add(self, kind: str, peer_id: str | None, detail: str) -> Event:
        self._seq += 1
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        event = Event(time=utcnow(), kind=kind, peer_id=peer_id, detail=detail, seq=self._seq)
        self._events.append(event)
        return event

    def snapshot(self) -> list[Event]:
        return list(self._events)

    def __len__(self) -> int:
        return len(self._events)


class MetricsHistory:
    """A ring buffer of :class:`ConnectivityMetrics` snapshots, oldest first."""

    def __init__(self, maxlen: int) -> None:
        self._samples: deque[ConnectivityMetrics] = deque(maxlen=maxlen)

    def add(self, sample: ConnectivityMetrics) -> None:
        self._samples.append(sample)

    def snapshot(self) -> list[ConnectivityMetrics]:
        return list(self._samples)
