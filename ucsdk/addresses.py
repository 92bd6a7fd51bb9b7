"""Multiaddr facts every layer needs: parsing user input, scopes, IP groups, interfaces.

Pure functions over strings (and the kernel's interface table); no network traffic.

Example:
    >>> from ucsdk.addresses import scope_of, ip_group, split_p2p, parse_multiaddr
    >>> scope_of("/ip4/10.1.0.2/tcp/4001"), scope_of("/ip4/203.0.113.5/udp/1/quic-v1")
    ('private', 'public')
    >>> ip_group("198.51.100.7"), ip_group("2001:db8:aa:bb01::1")
    ('198.51.0.0/16', '2001:db8:aa:bb00::/56')
    >>> peer = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    >>> split_p2p(parse_multiaddr(f"/ip4/127.0.0.1/tcp/1/p2p/{peer}"))[1] == peer
    True
"""

from __future__ import annotations

import array
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import multiaddr
from libp2p.peer.id import ID

from ucsdk import errors

SCOPES = ("public", "private", "loopback")
"""Address scopes, widest first: the order ``node.addrs`` lists them in."""

ADDRESS_KINDS = ("listen", "observed", "circuit")


@dataclass(frozen=True)
class AddressInfo:
    """One row of ``node.addresses()``: an address of this node and what is done with it.

    ``kind`` is ``listen`` (a socket we listen on), ``observed`` (how other peers see us,
    from identify), ``verified`` (reached by an AutoNAT v2 dial-back, e.g. through a port
    forward) or ``circuit`` (through a relay we hold a reservation on); ``scope`` is
    ``loopback``, ``private`` or ``public``. An observed address is ``confirmed`` once
    enough distinct peers from enough IP groups reported it (``observers`` counts them);
    ``advertised`` says whether identify and discovery announce it to peers at large.

    Example:
        >>> AddressInfo("/ip4/127.0.0.1/tcp/1", "listen", "loopback", 0, True, False, None).kind
        'listen'
    """

    addr: str
    kind: str
    scope: str
    observers: int
    confirmed: bool
    advertised: bool
    last_seen: datetime | None


def parse_peer_id(value: Any) -> ID:
    """A libp2p ``ID`` from a base58 string (or an ``ID``); :class:`InvalidPeerId` if not."""
    if isinstance(value, ID):
        return value
    if not isinstance(value, str) or not value:
        raise errors.InvalidPeerId(value)
    try:
        peer_id = ID.from_base58(value)
    except Exception:
        raise errors.InvalidPeerId(value) from None
    if not _is_peer_multihash(peer_id.to_bytes()):
        raise errors.InvalidPeerId(value)
    return peer_id


def _is_peer_multihash(raw: bytes) -> bool:
    """Whether ``raw`` is a peer id's multihash: sha2-256 of a key (0x12 0x20 + 32 bytes)
    or an inlined key (identity, 0x00 + length + at most 42 bytes), as the peer-id spec
    says."""
    if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
        return True
    return len(raw) >= 3 and raw[0] == 0x00 and raw[1] <= 42 and len(raw) == 2 + raw[1]


def parse_multiaddr(value: Any) -> multiaddr.Multiaddr:
    """A ``Multiaddr`` from a string; :class:`InvalidMultiaddr` naming the value if not."""
    if isinstance(value, multiaddr.Multiaddr):
        return value
    if not isinstance(value, str):
        raise errors.InvalidMultiaddr(value, "not a string")
    try:
        return multiaddr.Multiaddr(value)
    except Exception as exc:
        raise errors.InvalidMultiaddr(value, str(exc)) from None


def split_p2p(addr: multiaddr.Multiaddr) -> tuple[multiaddr.Multiaddr, str | None]:
    """Split ``/ip4/.../tcp/1/p2p/<id>`` into the transport part and the peer id."""
    text = str(addr)
    marker = text.rfind("/p2p/")
    if marker < 0 or "/p2p-circuit" in text[marker:]:
        return addr, None
    return multiaddr.Multiaddr(text[:marker] or "/"), text[marker + len("/p2p/") :]


def ip_of(addr: str) -> str | None:
    """The IP an address starts with, if it has one.

    Example:
        >>> ip_of("/ip4/198.51.100.7/tcp/4001"), ip_of("/dns4/example.org/tcp/1")
        ('198.51.100.7', None)
    """
    parts = str(addr).split("/")
    if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
        return parts[2]
    return None


def scope_of(addr: str) -> str:
    """``circuit`` for a relayed address, else the scope of its IP: ``loopback``,
    ``private`` (RFC 1918, link-local, unique-local, carrier-grade NAT) or ``public``
    (a name, e.g. ``/dns4/``, counts as public)."""
    if "/p2p-circuit" in str(addr):
        return "circuit"
    ip = ip_of(addr)
    if ip is None:
        return "public"
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return "public"
    if parsed.is_loopback:
        return "loopback"
    if parsed in ipaddress.ip_network("100.64.0.0/10") or not parsed.is_global:
        # Documentation ranges (the NAT lab's "internet") are not global either, but they
        # stand for public addresses there.
        if any(parsed in net for net in _DOCUMENTATION_NETS):
            return "public"
        return "private"
    return "public"


def punch_target_allowed(addr: str, allow_private: bool) -> bool:
    """Whether a hole punch (DCUtR's dial, WebRTC's connectivity checks) may go to an
    address a peer named: a public one, or loopback/private with ``allow_private``."""
    scope = scope_of(addr)
    return scope == "public" or (allow_private and scope in ("loopback", "private"))


_DOCUMENTATION_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def ip_group(ip: str) -> str:
    """The network an observer is grouped by: its IPv4 /16 or IPv6 /56 (as go-libp2p
    groups observers, so that one network cannot pose as many)."""
    parsed = ipaddress.ip_address(ip)
    prefix = 16 if parsed.version == 4 else 56
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def interface_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The IPv4 networks of this machine's (this namespace's) interfaces."""
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                addr = fcntl.ioctl(sock.fileno(), 0x8915, request)  # SIOCGIFADDR
                mask = fcntl.ioctl(sock.fileno(), 0x891B, request)  # SIOCGIFNETMASK
            except OSError:
                continue
            ip = socket.inet_ntoa(array.array("B", addr[20:24]).tobytes())
            netmask = socket.inet_ntoa(array.array("B", mask[20:24]).tobytes())
            found.append(ipaddress.ip_network(f"{ip}/{netmask}", strict=False))
    return found


def same_network(ip: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether ``ip`` lies in one of ``networks`` (a peer on our own LAN)."""
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(parsed in net for net in networks if net.version == parsed.version)


def rank_scopes(addrs: list[str]) -> list[str]:
    """``addrs`` ordered public, then private, then loopback (stable within a scope).

    Example:
        >>> rank_scopes(["/ip4/127.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/1", "/ip4/203.0.113.9/tcp/1"])
        ['/ip4/203.0.113.9/tcp/1', '/ip4/10.0.0.2/tcp/1', '/ip4/127.0.0.1/tcp/1']
    """
    order = {"public": 0, "circuit": 1, "private": 2, "loopback": 3}
    return sorted(addrs, key=lambda a: order[scope_of(a)])


def parse_circuit(addr: str) -> tuple[str, str, str | None]:
    """``(relay transport address, relay id, target id or None)`` of a circuit address.

    Example:
        >>> parse_circuit("/ip4/1.2.3.4/tcp/1/p2p/R/p2p-circuit/p2p/T")
        ('/ip4/1.2.3.4/tcp/1', 'R', 'T')
    """
    if "/p2p-circuit" not in addr:
        raise errors.InvalidMultiaddr(addr, "not a /p2p-circuit address")
    before, _, after = addr.partition("/p2p-circuit")
    if "/p2p/" not in before:
        raise errors.InvalidMultiaddr(addr, "the relay's /p2p/<id> is missing")
    relay_addr, _, relay_id = before.rpartition("/p2p/")
    target = after.split("/p2p/", 1)[1] if "/p2p/" in after else None
    return relay_addr, relay_id, target or None
