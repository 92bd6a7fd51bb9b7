"""The address book: this node's addresses, and the one place that decides what is advertised.

Three kinds of address:

- *listen*: the sockets the host listens on (wildcards expanded to interface addresses);
- *observed*: how other peers see us, from identify's ``observedAddr``. One peer's word is
  not enough: an observed address counts (``confirmed``) only when ``min_observers``
  distinct peers from ``min_groups`` distinct IP groups (IPv4 /16, IPv6 /56) reported it,
  and each report expires after ``ttl`` seconds. (go-libp2p's observed-address manager
  asks for 4 observers, grouped the same way.) Only confirmed observations are advertised,
  offered to DCUtR and used for hole-punch predictions;
- *circuit*: addresses through relays this node holds a reservation on.

Scopes: a loopback address is advertised only to peers that reach us over loopback, a
private one only to peers on one of our own networks, unless ``advertise_all`` says to
advertise everything. Identify answers each peer with what suits it; broadcast channels
(``host.get_addrs()``, discovery announcements) use what suits every connected peer.

Example:
    >>> from ucsdk.connectivity.addressbook import ObservedAddrs
    >>> observed = ObservedAddrs(min_observers=2, min_groups=2, ttl=60)
    >>> observed.report("peer-a", "198.51.100.7", "/ip4/203.0.113.9/tcp/4001", now=0)
    >>> observed.confirmed(now=1)
    []
    >>> observed.report("peer-b", "192.0.2.1", "/ip4/203.0.113.9/tcp/4001", now=2)
    >>> observed.confirmed(now=3)
    ['/ip4/203.0.113.9/tcp/4001']
    >>> observed.confirmed(now=100)
    []
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from libp2p.abc import IHost

from ucsdk.addresses import (
    AddressInfo,
    interface_networks,
    ip_group,
    ip_of,
    rank_scopes,
    same_network,
    scope_of,
)
from ucsdk.config import transport_of
from ucsdk.host import expand_wildcard, set_addrs_source

MAX_OBSERVED_ADDRS = 64
"""Distinct observed addresses kept; the one reported longest ago goes first."""
MAX_OBSERVERS_PER_ADDR = 64
NETWORKS_CACHE_SECONDS = 5.0


@dataclass
class _Observation:
    observers: dict[str, tuple[str, float, str, int | None]] = field(default_factory=dict)
    """Observer peer id -> (its IP group, when it last reported in monotonic seconds, its
    IP, our local port on the connection it saw)."""

    def last(self) -> float:
        return max((o[1] for o in self.observers.values()), default=0.0)


class ObservedAddrs:
    """Observed addresses with their observers, bounded, expiring, confirmed by agreement."""

    def __init__(self, min_observers: int, min_groups: int, ttl: float) -> None:
        self.min_observers = min_observers
        self.min_groups = min_groups
        self.ttl = ttl
        self._by_addr: dict[str, _Observation] = {}
        self.rejected = 0
        """Reports dropped: no usable observer IP, relayed, or malformed."""

    def report(
        self,
        observer: str,
        observer_ip: str | None,
        addr: str,
        *,
        now: float,
        local_port: int | None = None,
    ) -> None:
        """``observer`` (seen at ``observer_ip``) says it sees us at ``addr``."""
        if observer_ip is None or ip_of(addr) is None or "/p2p-circuit" in addr:
            self.rejected += 1
            return
        try:
            group = ip_group(observer_ip)
        except ValueError:
            self.rejected += 1
            return
        addr = addr.split("/p2p/")[0]
        kind = transport_of(addr)
        # A peer vouches for one address per transport: its newest report replaces the
        # older ones, so one peer cannot confirm many addresses.
        for other, seen in list(self._by_addr.items()):
            if other != addr and transport_of(other) == kind and observer in seen.observers:
                del seen.observers[observer]
                if not seen.observers:
                    del self._by_addr[other]
        seen = self._by_addr.setdefault(addr, _Observation())
        if observer not in seen.observers and len(seen.observers) >= MAX_OBSERVERS_PER_ADDR:
            oldest = min(seen.observers, key=lambda p: seen.observers[p][1])
            del seen.observers[oldest]
        seen.observers[observer] = (group, now, observer_ip, local_port)
        while len(self._by_addr) > MAX_OBSERVED_ADDRS:
            stalest = min(self._by_addr, key=lambda a: self._by_addr[a].last())
            del self._by_addr[stalest]

    def _expire(self, now: float) -> None:
        for addr, seen in list(self._by_addr.items()):
            for observer, (_, at, _ip, _port) in list(seen.observers.items()):
                if now - at > self.ttl:
                    del seen.observers[observer]
            if not seen.observers:
                del self._by_addr[addr]

    def _is_confirmed(self, seen: _Observation) -> bool:
        groups = {o[0] for o in seen.observers.values()}
        return len(seen.observers) >= self.min_observers and len(groups) >= self.min_groups

    def confirmed(self, *, now: float) -> list[str]:
        self._expire(now)
        return [a for a, seen in self._by_addr.items() if self._is_confirmed(seen)]

    def observations(self, *, now: float) -> list[tuple[str, str, str, int | None]]:
        """``(addr, observer peer id, observer IP, our local port)`` for every report
        kept: which peer, from which IP, sees us where, and from which port we sent (what
        the NAT's behaviour is read from)."""
        self._expire(now)
        return [
            (a, observer, ip, port)
            for a, s in self._by_addr.items()
            for observer, (_, _at, ip, port) in s.observers.items()
        ]

    def rows(self, *, now: float) -> list[tuple[str, int, bool, float]]:
        """``(addr, observers, confirmed, last reported)`` for every observed address."""
        self._expire(now)
        return [
            (a, len(s.observers), self._is_confirmed(s), s.last()) for a, s in self._by_addr.items()
        ]


ADDRS_CACHE_SECONDS = 0.25
"""How long an answer of ``host.get_addrs()`` is reused (see :meth:`AddressBook.install`)."""


class AddressBook:
    """Listen, observed and circuit addresses of one host, and what each peer is told."""

    def __init__(
        self,
        host: IHost,
        *,
        min_observers: int = 4,
        min_groups: int = 2,
        ttl: float = 1800.0,
        advertise_all: bool = False,
    ) -> None:
        self.host = host
        self.observed = ObservedAddrs(min_observers, min_groups, ttl)
        self.advertise_all = advertise_all
        self.circuit_source: Callable[[], list[str]] | None = None
        """This node's circuit addresses (the relay client's reservations)."""
        self.audience: Callable[[], list[str]] | None = None
        """Remote addresses of the directly connected peers (who a broadcast reaches)."""
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._networks_at = -NETWORKS_CACHE_SECONDS
        self._addrs_cache: tuple[float, tuple[Any, ...], list[Any]] | None = None
        """(when, what it depended on then, ``get_addrs()`` then); see :meth:`install`."""
        self._verified: dict[str, float] = {}
        """Addresses AutoNAT v2 verified, by when (``time.monotonic()``), oldest first."""

    # ------------------------------------------------------------------ life cycle
    def install(self) -> None:
        """Make this book decide what ``host.get_addrs()`` advertises.

        ``get_addrs()`` is also remembered for :data:`ADDRS_CACHE_SECONDS`: py-libp2p
        asks for it on every pubsub message it publishes (to sign its peer record), and
        working it out (listener sockets, scopes, parsing) cost about 100 us a time. A new
        observation, a changed circuit address or a change in who is connected (what suits
        them) ends the reuse at once.
        """
        set_addrs_source(self.host, self.advertised)
        host: Any = self.host
        if "get_addrs" in vars(host):
            return
        compute = host.get_addrs

        def get_addrs() -> list[Any]:
            now = time.monotonic()
            depends = (
                tuple(self.circuit_addrs()),
                tuple(self.audience()) if self.audience is not None else (),
            )
            cached = self._addrs_cache
            if cached is None or now - cached[0] > ADDRS_CACHE_SECONDS or cached[1] != depends:
                cached = self._addrs_cache = (now, depends, compute())
            return list(cached[2])

        host.get_addrs = get_addrs

    def uninstall(self) -> None:
        set_addrs_source(self.host, None)
        vars(self.host).pop("get_addrs", None)

    # -------------------------------------------------------------------- sources
    def listen_addrs(self) -> list[str]:
        out: list[str] = []
        for addr in self.host.get_transport_addrs():
            out.extend(e for e in expand_wildcard(str(addr)) if e not in out)
        return out

    def circuit_addrs(self) -> list[str]:
        return list(self.circuit_source()) if self.circuit_source is not None else []

    def confirmed_observed(self) -> list[str]:
        return self.observed.confirmed(now=time.monotonic())

    def observed_addrs(self) -> list[str]:
        """Every observed address, confirmed or not (what AutoNAT is asked to test)."""
        return [row[0] for row in self.observed.rows(now=time.monotonic())]

    def observe(
        self,
        observer: str,
        observer_addr: str | None,
        observed: str,
        *,
        local_port: int | None = None,
    ) -> None:
        """Identify from ``observer`` (whose address on our side is ``observer_addr``)
        says it sees us at ``observed``; ``local_port`` is ours on that connection."""
        ip = ip_of(observer_addr) if observer_addr else None
        self.observed.report(observer, ip, observed, now=time.monotonic(), local_port=local_port)
        self._addrs_cache = None

    def public_ips(self) -> list[str]:
        """Public IPv4 addresses of this node: public listen addresses and confirmed
        observations (what DCUtR predicts its addresses from)."""
        out: list[str] = []
        for addr in [*self.confirmed_observed(), *self.listen_addrs()]:
            ip = ip_of(addr)
            if ip and addr.startswith("/ip4/") and scope_of(addr) == "public" and ip not in out:
                out.append(ip)
        return out

    def _direct(self) -> list[str]:
        """Listen addresses, the confirmed observed ones, then those AutoNAT v2 verified
        (each once)."""
        direct = self.listen_addrs()
        direct += [a for a in self.confirmed_observed() if a not in direct]
        return direct + [a for a in self.verified_addrs() if a not in direct]

    def set_verified(self, addr: str, reachable: bool) -> None:
        """AutoNAT v2 reached ``addr`` (``reachable``: a dial-back carried our nonce) or
        not. A verified address is advertised even when no peer observed it (a port
        forward to the listen port: peers see the NAT's port for our outgoing
        connections, not the forwarded one)."""
        if reachable:
            self._verified.pop(addr, None)
            self._verified[addr] = time.monotonic()
            while len(self._verified) > MAX_OBSERVED_ADDRS:
                del self._verified[next(iter(self._verified))]
        else:
            self._verified.pop(addr, None)
        self._addrs_cache = None

    def verified_addrs(self) -> list[str]:
        """Addresses AutoNAT v2 verified reachable within ``observed_addr_ttl``."""
        now = time.monotonic()
        for addr, at in list(self._verified.items()):
            if now - at > self.observed.ttl:
                del self._verified[addr]
        return list(self._verified)

    # ----------------------------------------------------------------- advertising
    def _our_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        now = time.monotonic()
        if now - self._networks_at > NETWORKS_CACHE_SECONDS:
            self._networks = interface_networks()
            self._networks_at = now
        return self._networks

    def _suits(self, addr: str, remotes: list[str]) -> bool:
        """Whether a peer at one of ``remotes`` could use ``addr``."""
        scope = scope_of(addr)
        if self.advertise_all or scope in ("public", "circuit"):
            return True
        for remote in remotes:
            ip = ip_of(remote)
            if ip is None or "/p2p-circuit" in remote:
                continue
            if scope == "loopback" and scope_of(remote) == "loopback":
                return True
            if scope == "private" and same_network(ip, self._our_networks()):
                return True
        return False

    def advertised(self, for_remote: str | None = None) -> list[str]:
        """Direct addresses to tell a peer at ``for_remote`` (every connected peer when
        ``None``; ``""`` for a peer whose address is unknown, e.g. over a relay), widest
        scope first; circuit addresses are :meth:`circuit_addrs`."""
        remotes = (
            [for_remote]
            if for_remote is not None
            else (list(self.audience()) if self.audience is not None else [])
        )
        return rank_scopes([a for a in self._direct() if self._suits(a, remotes)])

    def own_addrs(self) -> list[str]:
        """Every direct address of this node, public first (``Node.addrs``)."""
        return rank_scopes(self._direct())

    def rows(self) -> list[AddressInfo]:
        """Every address of this node: one row each (``node.addresses()``)."""
        broadcast = set(self.advertised())
        rows: list[AddressInfo] = []
        for addr in self.listen_addrs():
            rows.append(
                AddressInfo(addr, "listen", scope_of(addr), 0, True, addr in broadcast, None)
            )
        now_mono, now = time.monotonic(), time.time()
        for addr, observers, confirmed, last in self.observed.rows(now=now_mono):
            seen_at = datetime.fromtimestamp(now - (now_mono - last), timezone.utc)
            rows.append(
                AddressInfo(
                    addr,
                    "observed",
                    scope_of(addr),
                    observers,
                    confirmed,
                    confirmed and addr in broadcast,
                    seen_at,
                )
            )
        listed = {row.addr for row in rows}
        for addr in self.verified_addrs():
            if addr not in listed:
                rows.append(
                    AddressInfo(addr, "verified", scope_of(addr), 0, True, addr in broadcast, None)
                )
        for addr in self.circuit_addrs():
            relay_scope = scope_of(addr.split("/p2p/")[0])
            rows.append(AddressInfo(addr, "circuit", relay_scope, 0, True, True, None))
        return rows
