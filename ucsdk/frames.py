"""pandas DataFrames built from ucsdk snapshots (pure functions, no network access).

Columns are fixed: an empty frame still has them. Times are UTC ``datetime64``; small
enumerations are ``category``; round-trip times are float milliseconds (``rtt_ms``).

Example:
    >>> from ucsdk.frames import peers_frame, PEER_COLUMNS
    >>> frame = peers_frame([])
    >>> list(frame.columns) == list(PEER_COLUMNS), len(frame)
    (True, 0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ucsdk.metrics import ConnectivityMetrics, Event
from ucsdk.peers import ConnectionInfo, DiscoveredPeer

PEER_COLUMNS = (
    "peer_id",
    "multiaddrs",
    "sources",
    "connected",
    "connection_type",
    "transport",
    "rtt_ms",
    "agent_version",
    "protocols",
    "first_seen",
    "last_seen",
)
CONNECTION_COLUMNS = (
    "peer_id",
    "remote_addr",
    "direction",
    "transport",
    "security",
    "muxer",
    "relayed",
    "opened_at",
    "streams",
)
EVENT_COLUMNS = ("time", "kind", "peer_id", "detail")
METRIC_COLUMNS = tuple(f.name for f in dataclasses.fields(ConnectivityMetrics))

_TIME = "datetime64[ns, UTC]"


def _fields(items: Iterable[Any], columns: Sequence[str]) -> Iterable[dict[str, Any]]:
    """Rows from snapshot dataclasses whose attributes are named like the columns."""
    return ({column: getattr(item, column) for column in columns} for item in items)


def _frame(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
    dtypes: dict[str, str],
) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(columns))
    for column, dtype in dtypes.items():
        if dtype == _TIME:
            frame[column] = pd.to_datetime(frame[column], utc=True)
        else:
            frame[column] = frame[column].astype(dtype)  # type: ignore[call-overload]
    return frame


def peers_frame(peers: Iterable[DiscoveredPeer]) -> pd.DataFrame:
    """One row per peer; ``multiaddrs``, ``sources`` and ``protocols`` are lists."""
    rows = (
        {
            "peer_id": p.peer_id,
            "multiaddrs": list(p.multiaddrs),
            "sources": list(p.sources),
            "connected": p.connected,
            "connection_type": p.connection_type,
            "transport": p.transport,
            "rtt_ms": p.rtt_ms,
            "agent_version": p.agent_version,
            "protocols": list(p.protocols),
            "first_seen": p.first_seen,
            "last_seen": p.last_seen,
        }
        for p in peers
    )
    return _frame(
        rows,
        PEER_COLUMNS,
        {
            "connected": "bool",
            "connection_type": "category",
            "transport": "category",
            "rtt_ms": "float64",
            "first_seen": _TIME,
            "last_seen": _TIME,
        },
    )


def connections_frame(connections: Iterable[ConnectionInfo]) -> pd.DataFrame:
    """One row per open connection."""
    rows = (dataclasses.asdict(c) for c in connections)
    return _frame(
        rows,
        CONNECTION_COLUMNS,
        {
            "direction": "category",
            "transport": "category",
            "security": "category",
            "muxer": "category",
            "relayed": "bool",
            "opened_at": _TIME,
            "streams": "int64",
        },
    )


def events_frame(events: Iterable[Event]) -> pd.DataFrame:
    """The event log, oldest first."""
    rows = (
        {"time": e.time, "kind": e.kind, "peer_id": e.peer_id, "detail": e.detail} for e in events
    )
    return _frame(rows, EVENT_COLUMNS, {"time": _TIME, "kind": "category"})


def metrics_frame(samples: Iterable[ConnectivityMetrics]) -> pd.DataFrame:
    """One row per metrics sample; ``last_updated`` is when the state last changed."""
    rows = (s.to_dict() for s in samples)
    return _frame(rows, METRIC_COLUMNS, {"last_updated": _TIME, "nat_status": "category"})


AUTONAT_COLUMNS = (
    "time",
    "server",
    "status",
    "status_text",
    "dialed_addr",
    "asked_addrs",
    "ms",
    "nat_status_after",
    "confidence_after",
    "server_ip",
    "server_group",
    "vote",
)


def autonat_frame(reports: Iterable[Any]) -> pd.DataFrame:
    """One row per AutoNAT answer (``ucsdk.nat.autonat.AutoNATReport``): which server said
    what about which addresses, and the node's verdict after it."""
    rows = (
        {
            "time": r.time,
            "server": r.server,
            "status": r.status_name,
            "status_text": r.status_text,
            "dialed_addr": r.dialed_addr,
            "asked_addrs": list(r.asked_addrs),
            "ms": r.ms,
            "nat_status_after": r.nat_status_after,
            "confidence_after": r.confidence_after,
            "server_ip": r.server_ip,
            "server_group": r.server_group,
            "vote": r.vote,
        }
        for r in reports
    )
    return _frame(rows, AUTONAT_COLUMNS, {"time": _TIME})


REACHABILITY_COLUMNS = ("addr", "status", "confidence", "servers", "last_checked", "protocol")


def reachability_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row for the node (AutoNAT v1, ``addr`` empty), then one per address AutoNAT v2
    checked: ``public``, ``private`` or ``unknown``, and how many servers agree."""
    return _frame(
        rows,
        REACHABILITY_COLUMNS,
        {"last_checked": _TIME, "confidence": "int64", "servers": "int64"},
    )


AUTONAT_V2_COLUMNS = (
    "time",
    "server",
    "asked",
    "addr",
    "response",
    "dial",
    "reachable",
    "dial_data",
)


def autonat_v2_frame(checks: Iterable[Any]) -> pd.DataFrame:
    """One row per AutoNAT v2 check (``ucsdk.nat.autonat_v2.Check``)."""
    rows = (
        {
            "time": c.time,
            "server": c.server,
            "asked": c.asked,
            "addr": c.addr,
            "response": c.response,
            "dial": c.dial,
            "reachable": c.reachable,
            "dial_data": c.dial_data,
        }
        for c in checks
    )
    return _frame(rows, AUTONAT_V2_COLUMNS, {"time": _TIME, "dial_data": "int64"})


RESERVATION_COLUMNS = (
    "relay_peer_id",
    "circuit_addrs",
    "expires_at",
    "expires_in_s",
    "limit_duration",
    "limit_data",
    "voucher_valid",
    "granted_at",
    "refreshed",
)


def reservations_frame(reservations: Iterable[Any]) -> pd.DataFrame:
    """One row per relay reservation this node holds (``ucsdk.nat.relay.Reservation``)."""
    rows = (
        {
            "relay_peer_id": r.relay_peer_id,
            "circuit_addrs": list(r.circuit_addrs),
            "expires_at": pd.Timestamp(r.expire, unit="s", tz="UTC"),
            "expires_in_s": round(r.expires_in, 1),
            "limit_duration": r.limit_duration,
            "limit_data": r.limit_data,
            "voucher_valid": r.voucher_valid,
            "granted_at": r.granted_at,
            "refreshed": r.refreshed,
        }
        for r in reservations
    )
    return _frame(rows, RESERVATION_COLUMNS, {"expires_at": _TIME, "granted_at": _TIME})


HOLE_PUNCH_COLUMNS = (
    "time",
    "peer_id",
    "relay_peer_id",
    "role",
    "transport",
    "attempts",
    "rtt_ms",
    "time_to_direct_ms",
    "outcome",
    "reason",
    "remote_addrs",
    "local_addrs",
)


def hole_punches_frame(results: Iterable[Any]) -> pd.DataFrame:
    """One row per DCUtR upgrade this node took part in (``ucsdk.nat.dcutr.HolePunchResult``):
    ``role`` is ``initiator`` (drove it) or ``responder``; ``outcome`` is ``success``,
    ``direct_dial`` (no punch needed), ``failed``, ``no_addresses`` or ``error``."""
    rows = (
        {
            "time": r.time,
            "peer_id": r.peer_id,
            "relay_peer_id": r.relay_peer_id,
            "role": r.role,
            "transport": r.transport,
            "attempts": r.attempts,
            "rtt_ms": r.rtt_ms,
            "time_to_direct_ms": r.time_to_direct_ms,
            "outcome": r.outcome,
            "reason": r.reason,
            "remote_addrs": list(r.remote_addrs),
            "local_addrs": list(r.local_addrs),
        }
        for r in results
    )
    return _frame(rows, HOLE_PUNCH_COLUMNS, {"time": _TIME})


SERVICE_COLUMNS = ("name", "state", "started_at", "restarts", "last_error", "last_error_at")


def services_frame(services: Iterable[Any]) -> pd.DataFrame:
    """One row per background service (``ucsdk._service.ServiceHealth``), the manager
    first: ``state`` is ``running``, ``restarting``, ``failed`` or ``stopped``;
    ``restarts`` counts restarts after a crash; ``last_error`` is the latest crash's
    ``repr``.

    Example:
        >>> from ucsdk._service import ServiceHealth
        >>> frame = services_frame([ServiceHealth("mdns", "failed", None, 0, "OSError(19)", None)])
        >>> frame.loc[0, "state"], frame["restarts"].dtype.name, str(frame["state"].dtype)
        ('failed', 'int64', 'category')
    """
    return _frame(
        _fields(services, SERVICE_COLUMNS),
        SERVICE_COLUMNS,
        {
            "state": "category",
            "started_at": _TIME,
            "restarts": "int64",
            "last_error_at": _TIME,
        },
    )


ADDRESS_COLUMNS = ("addr", "kind", "scope", "observers", "confirmed", "advertised", "last_seen")


def addresses_frame(addresses: Iterable[Any]) -> pd.DataFrame:
    """One row per address of this node (``ucsdk.addresses.AddressInfo``): ``kind`` is
    ``listen``, ``observed`` or ``circuit``; ``scope`` is ``loopback``, ``private`` or
    ``public``; ``observers`` counts the peers that reported an observed address,
    ``confirmed`` says whether enough did; ``advertised`` whether peers at large are told.

    Example:
        >>> from ucsdk.addresses import AddressInfo
        >>> row = AddressInfo("/ip4/127.0.0.1/tcp/1", "listen", "loopback", 0, True, False, None)
        >>> frame = addresses_frame([row])
        >>> frame.loc[0, "scope"], bool(frame.loc[0, "confirmed"]), str(frame["last_seen"].dt.tz)
        ('loopback', True, 'UTC')
    """
    return _frame(
        _fields(addresses, ADDRESS_COLUMNS),
        ADDRESS_COLUMNS,
        {
            "kind": "category",
            "scope": "category",
            "observers": "int64",
            "confirmed": "bool",
            "advertised": "bool",
            "last_seen": _TIME,
        },
    )


DIAL_ATTEMPT_COLUMNS = (
    "peer_id",
    "addr",
    "transport",
    "relayed",
    "started_ms",
    "outcome",
    "error",
    "ms",
    "dial_id",
    "at",
)


def dial_attempts_frame(attempts: Iterable[Any]) -> pd.DataFrame:
    """One row per address a dial tried (``ucsdk.peers.DialAttempt``), oldest first; the
    rows of one dial share ``dial_id``. ``started_ms`` is when the attempt began after its
    dial started, ``ms`` how long it ran (float milliseconds; ``NaN`` when skipped);
    ``outcome`` is ``connected``, ``failed``, ``timeout``, ``cancelled`` (another address
    won) or ``skipped`` (never tried; ``error`` says why); ``at`` is when it ended.

    Example:
        >>> from ucsdk.peers import DialAttempt
        >>> row = DialAttempt(1, "12D3KooWExample", "/ip4/127.0.0.1/tcp/1", "tcp", False,
        ...     0.0, "failed", "Connection refused", 1.5)
        >>> frame = dial_attempts_frame([row])
        >>> frame.loc[0, "outcome"], float(frame.loc[0, "ms"]), str(frame["outcome"].dtype)
        ('failed', 1.5, 'category')
    """
    return _frame(
        _fields(attempts, DIAL_ATTEMPT_COLUMNS),
        DIAL_ATTEMPT_COLUMNS,
        {
            "transport": "category",
            "relayed": "bool",
            "started_ms": "float64",
            "outcome": "category",
            "ms": "float64",
            "dial_id": "int64",
            "at": _TIME,
        },
    )


TOPIC_COLUMNS = (
    "topic",
    "subscribed",
    "mesh_peers",
    "known_peers",
    "received",
    "published",
    "rejected",
    "ignored",
    "dropped",
)
MESSAGE_COLUMNS = (
    "time",
    "topic",
    "from_peer",
    "received_from",
    "seqno",
    "msg_id",
    "size",
    "text",
    "data",
)


def topics_frame(topics: Iterable[Any]) -> pd.DataFrame:
    """One row per topic (``ucsdk.messaging.pubsub.TopicInfo``): whether this node is
    subscribed, its GossipSub mesh and known subscribers, and per-topic message counts
    (``rejected``/``ignored`` by validators, ``dropped`` because a callback lagged)."""
    counts = {c: "int64" for c in TOPIC_COLUMNS[2:]}
    return _frame(_fields(topics, TOPIC_COLUMNS), TOPIC_COLUMNS, {"subscribed": "bool", **counts})


def messages_frame(messages: Iterable[Any]) -> pd.DataFrame:
    """One row per pubsub message (``ucsdk.messaging.pubsub.Message``), oldest first;
    ``text`` is the UTF-8 text, or ``None`` when the data is not valid UTF-8; ``data``
    holds the bytes.

    Example:
        >>> from ucsdk.messaging.pubsub import Message
        >>> from ucsdk.metrics import utcnow
        >>> frame = messages_frame([Message(utcnow(), "chat", "A", "B", 1, "ab", b"hi", False)])
        >>> frame.loc[0, "text"], int(frame.loc[0, "size"])
        ('hi', 2)
    """
    return _frame(
        _fields(messages, MESSAGE_COLUMNS),
        MESSAGE_COLUMNS,
        {"time": _TIME, "seqno": "uint64", "size": "int64"},
    )
