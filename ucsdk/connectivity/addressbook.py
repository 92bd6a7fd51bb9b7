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
    observers: dict[str, tuple[str, float, str]] = field(default_factory=dict)
    """Observer peer id -> (its IP group, when it last reported in monotonic seconds, its
    IP)."""

    def last(self) -> float:
        return max((t for _, t, _ip in self.observers.values()), default=0.0)


class ObservedAddrs:
    """Observed addresses with their observers, bounded, expiring, confirmed by agreement."""

    def __init__(self, min_observers: int, min_groups: int, ttl: float) -> None:
        self.min_observers = min_observers
        self.min_groups = min_groups
        self.ttl = ttl
        self._by_addr: dict[str, _Observation] = {}
        self.rejected = 0
        """Reports dropped: no usable observer IP, relayed, or malformed."""

    def report(self, observer: str, observer_ip: str | None, addr: str, *, now: float) -> None:
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
        seen.observers[observer] = (group, now, observer_ip)
        while len(self._by_addr) > MAX_OBSERVED_ADDRS:
            stalest = min(self._by_addr, key=lambda a: self._by_addr[a].last())
            del self._by_addr[stalest]

    def _expire(self, now: float) -> None:
        for addr, seen in list(self._by_addr.items()):
            for observer, (_, at, _ip) in list(seen.observers.items()):
                if now - at > self.ttl:
                    del seen.observers[observer]
            if not seen.observers:
                del self._by_addr[addr]

    def _is_confirmed(self, seen: _Observation) -> bool:
        groups = {group for group, _, _ip in seen.observers.values()}
        return len(seen.observers) >= self.min_observers and len(groups) >= self.min_groups

    def confirmed(self, *, now: float) -> list[str]:
        self._expire(now)
        return [a for a, seen in self._by_addr.items() if self._is_confirmed(seen)]

    def observations(self, *, now: float) -> list[tuple[str, str, str, float]]:
        """``(addr, observer peer id, observer IP, last reported)`` for every report kept:
        which peer, from which IP, sees us where (what the NAT's behaviour is read from)."""
        self._expire(now)
        return [
            (a, observer, ip, at)
            for a, s in self._by_addr.items()
            for observer, (_, at, ip) in s.observers.items()
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

    def observe(self, observer: str, observer_addr: str | None, observed: str) -> None:
        """Identify from ``observer`` (whose address on our side is ``observer_addr``)
        says it sees us at ``observed``."""
        ip = ip_of(observer_addr) if observer_addr else None
        self.observed.report(observer, ip, observed, now=time.monotonic())
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
        """Listen addresses, then the confirmed observed ones (each once)."""
        direct = self.listen_addrs()
        return direct + [a for a in self.confirmed_observed() if a not in direct]

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
        for addr in self.circuit_addrs():
            relay_scope = scope_of(addr.split("/p2p/")[0])
            rows.append(AddressInfo(addr, "circuit", relay_scope, 0, True, True, None))
        return rows
