"""What services ask of a py-libp2p connection (the NAT services, the connectivity parts
and the /webrtc transport): which one a stream runs on, where its far end is, and
whether it goes through a relay, and the socket under it."""

from __future__ import annotations

import contextlib
from typing import Any

import multiaddr
from libp2p.abc import IHost, INetConn, INetStream

from ucsdk._wire import close_quietly

__all__ = [
    "close_quietly",
    "connection_of",
    "ip_of",
    "is_relayed",
    "local_port",
    "remote_address",
    "socket_ip",
]


def connection_of(host: IHost, stream: INetStream) -> INetConn | None:
    """The swarm connection a stream runs on."""
    peer = stream.muxed_conn.peer_id
    for conn in host.get_network().connections.get(peer, []):
        if conn.muxed_conn is stream.muxed_conn:
            return conn
    return None


def remote_address(conn: INetConn | None) -> multiaddr.Multiaddr | None:
    """The far end's transport address (a ``/p2p-circuit`` one for a relayed connection)."""
    if conn is None:
        return None
    try:
        addrs = conn.get_transport_addresses()
    except Exception:
        return None
    return addrs[0] if addrs else None


def ip_of(addr: multiaddr.Multiaddr | None) -> str | None:
    """The IP in an address, if it has one.

    Example:
        >>> ip_of(multiaddr.Multiaddr("/ip4/198.51.100.7/tcp/4001"))
        '198.51.100.7'
    """
    if addr is None:
        return None
    for proto in ("ip4", "ip6"):
        try:
            return str(addr.value_for_protocol(proto))
        except Exception:
            continue
    return None


def is_relayed(conn: INetConn | None) -> bool:
    """Whether a swarm connection runs through a relay."""
    if conn is None:
        return False
    remote = remote_address(conn)
    if remote is not None and "/p2p-circuit" in str(remote):
        return True
    kind = getattr(conn, "get_connection_type", None)
    return bool(callable(kind) and "RELAY" in str(kind()).upper())


_SOCKET_PATH = (
    "muxed_conn",
    "secured_conn",
    "conn",
    "stream",
    "_ws",
    "_stream",
    "socket",
    "_socket",
)


def _socket_answer(conn: Any, method: str) -> tuple[Any, ...] | None:
    """``getpeername()``/``getsockname()`` of the socket under a connection (walking
    py-libp2p's wrappers: muxer, security, raw connection, stream, WebSocket, QUIC)."""
    frontier = [conn] if conn is not None else []
    for _ in range(10):
        found = []
        for obj in frontier:
            ask = getattr(obj, method, None)
            if callable(ask):
                with contextlib.suppress(Exception):
                    address = ask()
                    if isinstance(address, tuple) and address and address[0]:
                        return address
            for name in _SOCKET_PATH:
                with contextlib.suppress(Exception):
                    child = getattr(obj, name, None)
                    if child is not None:
                        found.append(child)
        if not found:
            return None
        frontier = found[:8]
    return None


def socket_ip(conn: Any) -> str | None:
    """The peer's IP from the socket under a connection, where py-libp2p reports none.

    py-libp2p gives WebSocket connections no transport address; the TCP socket under the
    trio-websocket connection knows its peer. ``None`` if there is no such socket.
    """
    address = _socket_answer(conn, "getpeername")
    return str(address[0]) if address else None


def local_port(conn: Any) -> int | None:
    """The local port of the socket under a connection (``None`` if none is found): what
    a NAT in front of us translated into the port our peer observed."""
    address = _socket_answer(conn, "getsockname")
    if address and len(address) > 1 and isinstance(address[1], int):
        return address[1]
    return None
