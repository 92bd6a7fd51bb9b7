"""What services ask of a py-libp2p connection (the NAT services, the connectivity parts
and the /webrtc transport): which one a stream runs on, where its far end is, and
whether it goes through a relay."""

from __future__ import annotations

import multiaddr
from libp2p.abc import IHost, INetConn, INetStream

from ucsdk._wire import close_quietly

__all__ = ["close_quietly", "connection_of", "ip_of", "is_relayed", "remote_address"]


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
