"""The dialer: the seed's strategy, "direct, then relay fallback, then DCUtR upgrade",
done the way go-libp2p's dial ranker does it.

Every address the caller gave, the peer table knows and py-libp2p's peerstore holds is
merged and ranked, then dialled in parallel on a schedule:

- direct addresses start at once, public before private, QUIC first; TCP (and WebSocket) in
  the same scope start ``tcp_delay`` later (30 ms for loopback and private addresses),
  unless no QUIC address is there to wait for;
- relayed (``/p2p-circuit``) addresses start ``relay_delay`` after the direct ones when the
  peer has a public direct address, at once otherwise: a NATed peer's private addresses
  are no reason to wait. With no circuit address known, relays we are connected to are
  tried (the relay answers NO_RESERVATION when the peer holds no slot there);
- when every attempt under way has failed, the next one starts without waiting.

The first connection wins and the others are cancelled. Every attempt is kept
(``node.dial_attempts()``), with when it started, how it ended and how long it took. The
relayed connection is upgraded by DCUtR (driven by the peer, see :mod:`.natcoord`).

The dialer also keeps bootstrap peers connected (exponential back-off) and auto-dials
discovered peers while ``auto_dial`` is on.

Example (ranking only; no traffic):
    >>> from ucsdk.connectivity.dialer import rank_addrs
    >>> plan = rank_addrs(["/ip4/203.0.113.5/tcp/4001", "/ip4/203.0.113.5/udp/4001/quic-v1",
    ...     "/ip4/198.51.100.1/tcp/1/p2p/QmRelay/p2p-circuit"], tcp_delay=0.25, relay_delay=0.5)
    >>> [(a.split("/")[-1], d) for a, d in plan]
    [('quic-v1', 0.0), ('4001', 0.25), ('p2p-circuit', 0.5)]
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from ucsdk import errors
from ucsdk._service import Service
from ucsdk.addresses import ip_of, parse_multiaddr, parse_peer_id, scope_of, split_p2p
from ucsdk.config import ConnectivityConfig, transport_of
from ucsdk.connectivity.connections import ConnectionTracker
from ucsdk.connectivity.peertable import PeerTable
from ucsdk.connectivity.recorder import Recorder
from ucsdk.discovery.bootstrap import DnsaddrError, dnsaddr_domain, resolve_dnsaddr
from ucsdk.host import interface_ipv4_addresses
from ucsdk.nat.relay import parse_circuit
from ucsdk.peers import DialAttempt, DiscoveredPeer, PeerRecord

logger = logging.getLogger("UniversalConnectivity")

PRIVATE_TCP_DELAY = 0.03
"""go-libp2p's PrivateTCPDelay: TCP after QUIC on a LAN or loopback."""
SAME_RELAY_FALLBACK = 2.0
"""When a second circuit through the same relay starts if the first has not failed yet."""
AUTO_DIAL_MAX_BACKOFF = 60.0
BOOTSTRAP_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
MAX_ATTEMPTS_KEPT = 1000
MAX_ADDRS_PER_DIAL = 32
MAX_RELAYS_PER_DIAL = 4
DIALABLE = ("tcp", "quic", "websocket", "webtransport", "webrtc-direct", "relay")
AUTO_DIAL_MAX_ADDRS = 8
"""Addresses of one discovered record an auto-dial tries (a record may list 32)."""
AUTO_DIAL_ENDPOINT_WINDOW = 600.0
"""Seconds an endpoint (IP:port) remembers which identities made us auto-dial it."""
MAX_ENDPOINTS_TRACKED = 4096


def rank_addrs(
    addrs: Sequence[str], *, tcp_delay: float, relay_delay: float
) -> list[tuple[str, float]]:
    """``(address, delay in s)`` for each address, in the order they start."""
    plan: list[tuple[str, float]] = []
    direct = [a for a in addrs if "/p2p-circuit" not in a]
    for scopes in (("public",), ("loopback", "private")):
        group = [a for a in direct if scope_of(a) in scopes]
        quic = [a for a in group if transport_of(a) == "quic"]
        later = tcp_delay if scopes == ("public",) else PRIVATE_TCP_DELAY
        plan += [(a, 0.0) for a in quic]
        plan += [(a, later if quic else 0.0) for a in group if transport_of(a) != "quic"]
    has_public = any(scope_of(a) == "public" for a in direct)
    # Circuits as go-libp2p ranks them: through a relay over QUIC first, over TCP after
    # ``tcp_delay``. Two circuits dialled at once both get made, and the second only adds a
    # connection the peer has to tear down (and may pick for its DCUtR stream). Through
    # one relay, a second circuit is a fallback only: it starts when the first failed (or
    # after SAME_RELAY_FALLBACK); the one cancelled mid-handshake costs the peer a failed
    # upgrade on its connection to the relay.
    base = relay_delay if has_public else 0.0
    circuits = [a for a in addrs if "/p2p-circuit" in a]
    quic_circuits = [a for a in circuits if transport_of(a.split("/p2p-circuit")[0]) == "quic"]
    later = base + (tcp_delay if quic_circuits else 0.0)
    seen_relays: set[str] = set()
    for addr in [*quic_circuits, *(a for a in circuits if a not in quic_circuits)]:
        relay = addr.split("/p2p-circuit")[0].rsplit("/p2p/", 1)[-1]
        delay = base if addr in quic_circuits else later
        if relay in seen_relays:
            delay = base + SAME_RELAY_FALLBACK
        seen_relays.add(relay)
        plan.append((addr, delay))
    return sorted(plan, key=lambda item: item[1])


def dial_failure_reason(exc: BaseException) -> str:
    """The most specific reason in an exception chain (py-libp2p wraps the OS error)."""
    reasons: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        text = str(current).strip()
        if text:
            reasons.append(text)
        nested = getattr(current, "exceptions", None) or getattr(current, "errors", None)
        if isinstance(nested, (list, tuple)):
            stack.extend(e for e in nested if isinstance(e, BaseException))
        context = None if current.__suppress_context__ else current.__context__
        for linked in (current.__cause__, context):
            if linked is not None:
                stack.append(linked)
    for hint in ("refused", "timed out", "unreachable", "reset", "handshake", "protocol"):
        for text in reasons:
            if hint in text.lower():
                return text
    return reasons[-1] if reasons else type(exc).__name__


def _endpoints(addr: str) -> list[str]:
    """What one auto-dial of ``addr`` reaches, as the keys the per-endpoint and per-IP caps
    count: ``["ip:port", "ip"]`` of a direct address; none for a circuit address (the
    relay, a libp2p node that applies its own limits, is what gets dialled).

    Example:
        >>> _endpoints("/ip4/127.0.0.1/udp/4001/quic-v1")
        ['127.0.0.1:4001', '127.0.0.1']
    """
    if "/p2p-circuit" in str(addr):
        return []
    parts = str(addr).split("/")
    if len(parts) >= 5 and parts[1] in ("ip4", "ip6", "dns", "dns4", "dns6"):
        return [f"{parts[2]}:{parts[4]}", parts[2]]
    return [str(addr)]


def _known_addrs(host: IHost, peer_id: ID) -> list[str]:
    try:
        return [str(a) for a in host.get_peerstore().addrs(peer_id)]
    except Exception:  # py-libp2p raises PeerStoreError for a peer it never saw
        return []


class Dialer(Service):
    """Dials peers with the ranked plan; keeps bootstrap peers and auto-dials."""

    def __init__(
        self,
        host: IHost,
        config: ConnectivityConfig,
        peers: PeerTable,
        connections: ConnectionTracker,
        recorder: Recorder,
    ) -> None:
        super().__init__()
        self.host = host
        self.config = config
        self._peers = peers
        self._connections = connections
        self._recorder = recorder
        self.relay_client: Any = None
        """The relay client (set by the manager while it runs); relayed dials need it."""
        self.webrtc: Any = None
        """Private-to-private WebRTC (set by the manager while it runs): ``/webrtc`` after
        a circuit address means "then upgrade to WebRTC over it"."""
        self.dht: Any = None
        """The DHT (set by the manager while it runs): where a bare peer id is looked up."""
        self.known_relays: Callable[[], list[str]] = list
        """Peer ids of connected relays (NAT coordination knows them)."""
        self._attempts: deque[DialAttempt] = deque(maxlen=MAX_ATTEMPTS_KEPT)
        self._dial_ids = itertools.count(1)
        self._auto_dialling: set[str] = set()
        self._dialling: collections.Counter[str] = collections.Counter()
        self._auto_dial_backoff: dict[str, tuple[int, float]] = {}
        # Endpoint (ip:port, or the address for those without one) -> {peer id: when it
        # last made us auto-dial there}: a cap on the identities that may use one endpoint.
        self._endpoint_dialers: dict[str, dict[str, float]] = {}
        self._next_expiry = 0.0
        self.dropped: collections.Counter[str] = collections.Counter()
        """Auto-dials refused, by reason (``get_metrics().dropped`` has them as
        ``dialer_<reason>``)."""

    # ----------------------------------------------------------------- life cycle
    async def _run(self, nursery: trio.Nursery) -> None:
        if self.config.connect_to_bootstrap:
            for addr in self.config.bootstrap_peers:
                nursery.start_soon(self._keep_bootstrap_connection, str(addr))

    def attempts(self) -> list[DialAttempt]:
        """Every address tried (the newest 1000), oldest first."""
        return list(self._attempts)

    # -------------------------------------------------------------- the strategy
    def _merge_targets(
        self, pid: ID, addrs: Sequence[str] | None, source: str, exact: bool
    ) -> list[str]:
        """Addresses to try: the caller's, then (unless ``exact``) the peer table's and the
        peerstore's."""
        pid_text = pid.to_base58()
        given: list[str] = []
        for raw in addrs or ():
            maddr, embedded = split_p2p(parse_multiaddr(raw))
            if embedded is not None and embedded != pid_text:
                raise errors.InvalidMultiaddr(str(raw), f"it names peer {embedded}, not {pid_text}")
            given.append(str(maddr))
        if given:
            record, is_new = self._peers.record_for(pid_text)
            record.add_addrs(given, source)
            if is_new:
                self._peers.announce_new(record, source)
        merged = list(given)
        if exact and given:
            return merged[:MAX_ADDRS_PER_DIAL]
        known = self._peers.get(pid_text)
        table = [str(split_p2p(parse_multiaddr(a))[0]) for a in known.multiaddrs] if known else []
        for addr in [*table, *_known_addrs(self.host, pid)]:
            if addr not in merged:
                merged.append(addr)
        return merged[:MAX_ADDRS_PER_DIAL]

    def _relay_candidates(self, pid_text: str) -> list[str]:
        """Circuit addresses through relays we are connected to (no circuit known)."""
        out: list[str] = []
        for relay in self.known_relays()[:MAX_RELAYS_PER_DIAL]:
            if relay == pid_text:
                continue
            conns = [c for c in self._connections.of_peer(relay) if not c.relayed]
            if conns and conns[0].remote_addr:
                out.append(f"{conns[0].remote_addr}/p2p/{relay}/p2p-circuit")
        return out

    async def connect_peer(
        self,
        peer_id: str | ID,
        addrs: Sequence[str] | None = None,
        *,
        use_relay: bool = True,
        source: str = "manual",
        exact: bool = False,
    ) -> DiscoveredPeer:
        """Connect with the ranked plan; the peer on success, :class:`DialError` if not.

        ``exact``: dial only ``addrs`` (``connect(multiaddr)``: that address, as asked),
        not what the table knows, and no relay the caller did not name.
        """
        pid = parse_peer_id(peer_id)
        pid_text = pid.to_base58()
        if pid_text == self._peers.local_peer_id:
            raise errors.DialError(pid_text, [], "that is this node's own peer id")
        # While this dial runs, the addresses it teaches the peer table start no auto-dial
        # of the same peer (two relayed connections, two WebRTC sessions, for one call).
        self._dialling[pid_text] += 1
        try:
            return await self._connect_peer(pid, addrs, use_relay, source, exact)
        finally:
            self._dialling[pid_text] -= 1
            if not self._dialling[pid_text]:
                del self._dialling[pid_text]

    async def _connect_peer(
        self, pid: ID, addrs: Sequence[str] | None, use_relay: bool, source: str, exact: bool
    ) -> DiscoveredPeer:
        pid_text = pid.to_base58()
        targets = self._merge_targets(pid, addrs, source, exact)
        network = self.host.get_network()
        if network.connections.get(pid):
            self._connections.adopt(pid, [])
            record, _ = self._peers.record_for(pid_text)
            return record.snapshot()
        if not targets and self.dht is not None:
            found = await self.dht.find_peer(pid)
            if found is not None:
                targets = [str(split_p2p(parse_multiaddr(a))[0]) for a in found.multiaddrs]
                self._recorder.record("dht_found", pid_text, ", ".join(found.multiaddrs))
        if not targets and not (use_relay and self.relay_client is not None):
            raise self._not_found(pid_text)
        # py-libp2p refuses to dial a peer for 60 s after one failed dial; a dial we
        # decided on must really be tried.
        unblock = getattr(network, "unblock_peer", None)
        if callable(unblock):
            unblock(pid)
        dial_id = next(self._dial_ids)
        plan_addrs, skipped = self._usable(dial_id, pid_text, targets, use_relay, exact)
        relayed_known = any("/p2p-circuit" in a for a in plan_addrs)
        if use_relay and self.relay_client is not None and not relayed_known and not exact:
            plan_addrs += self._relay_candidates(pid_text)
        if not plan_addrs:
            reason = "; ".join(skipped) or "no known address"
            if not targets:
                raise self._not_found(pid_text)
            self._dial_failed(pid_text, targets, reason)
            raise errors.DialError(pid_text, targets, reason)
        plan = rank_addrs(
            plan_addrs,
            tcp_delay=self.config.dial_tcp_delay,
            relay_delay=self.config.dial_relay_delay,
        )
        winner, failures = await self._run_plan(dial_id, pid, plan)
        if winner is None:
            reason = "; ".join([*failures, *skipped]) or "no way to reach the peer"
            self._dial_failed(pid_text, [a for a, _ in plan], reason)
            raise errors.DialError(pid_text, [a for a, _ in plan], reason)
        addr, elapsed_ms = winner
        how = (
            f"relayed in {elapsed_ms:.1f} ms via {addr}"
            if "/p2p-circuit" in addr
            else (f"direct in {elapsed_ms:.1f} ms")
        )
        self._recorder.record("dial_succeeded", pid_text, how)
        record, _ = self._peers.record_for(pid_text)
        return record.snapshot()

    def _usable(
        self, dial_id: int, pid_text: str, targets: list[str], use_relay: bool, exact: bool
    ) -> tuple[list[str], list[str]]:
        """The addresses worth dialling; the others are recorded as skipped."""
        usable: list[str] = []
        reasons: list[str] = []
        enabled = set(self.config.transports) | {"relay"}
        # A peer on this very machine is reached over loopback: its addresses on our own
        # interfaces would reach the same sockets the long way.
        own_ips = set(interface_ipv4_addresses()) - {"127.0.0.1"}
        has_loopback = any(scope_of(a) == "loopback" for a in targets)
        for addr in targets:
            transport = transport_of(addr)
            why = None
            if transport not in DIALABLE or transport not in enabled:
                why = f"transport {transport or 'unknown'} is not enabled here"
            elif has_loopback and ip_of(addr) in own_ips:
                why = "an address of this machine: dialled over loopback instead"
            elif transport == "relay" and not use_relay:
                why = "relayed addresses skipped (use_relay=False)"
            elif transport == "relay" and self.relay_client is None:
                why = "relayed address known but the relay client is off"
            elif transport == "relay" and addr.endswith("/webrtc") and not exact:
                # Its plain circuit address is in the plan too; WebRTC is what a caller
                # asks for by dialling this address itself (node.connect).
                why = "a /webrtc address: dialled only when asked for by itself"
            if why is None:
                usable.append(addr)
                continue
            reasons.append(f"{addr}: {why}")
            self._attempts.append(
                DialAttempt(
                    dial_id,
                    pid_text,
                    addr,
                    transport,
                    transport == "relay",
                    0.0,
                    "skipped",
                    why,
                    None,
                )
            )
        return usable, reasons

    async def _run_plan(
        self, dial_id: int, pid: ID, plan: list[tuple[str, float]]
    ) -> tuple[tuple[str, float] | None, list[str]]:
        """Dial the plan; ``((winning address, ms after the start), failure reasons)``."""
        pid_text = pid.to_base58()
        began = trio.current_time()
        winner: list[tuple[str, float]] = []
        failures: list[str] = []
        launched = in_flight = 0
        changed = trio.Event()
        limiter = trio.CapacityLimiter(self.config.max_parallel_dials)

        def notify() -> None:
            nonlocal changed
            changed.set()
            changed = trio.Event()

        async def attempt(index: int, addr: str, delay: float, group: trio.Nursery) -> None:
            nonlocal launched, in_flight
            deadline = began + delay
            # Start at the planned time, or sooner once every earlier attempt has failed.
            while trio.current_time() < deadline and not (in_flight == 0 and launched >= index):
                with trio.move_on_at(deadline):
                    await changed.wait()
            # Counted in flight from launch, not from the limiter: an attempt waiting for
            # its slot must hold back the later ones just as a running one does.
            launched += 1
            in_flight += 1
            async with limiter:
                t0 = trio.current_time()
                outcome: str = "cancelled"
                error: str | None = "another address connected first"
                limit = self.config.connection_timeout
                if addr.endswith("/webrtc") and self.webrtc is not None:
                    limit += self.webrtc.timeout  # the relayed leg, then signalling and ICE
                try:
                    with trio.fail_after(limit):
                        await self._dial_one(pid, addr)
                    outcome, error = "connected", None
                except trio.TooSlowError:
                    outcome = "timeout"
                    error = f"no connection within {limit:g} s"
                except Exception as exc:
                    outcome, error = "failed", dial_failure_reason(exc)
                finally:
                    in_flight -= 1
                    self._attempts.append(
                        DialAttempt(
                            dial_id,
                            pid_text,
                            addr,
                            transport_of(addr),
                            "/p2p-circuit" in addr,
                            (t0 - began) * 1000,
                            outcome,
                            error,
                            (trio.current_time() - t0) * 1000,
                        )
                    )
                    notify()
                if outcome == "connected":
                    winner.append((addr, (trio.current_time() - began) * 1000))
                    group.cancel_scope.cancel()
                elif outcome != "cancelled":
                    failures.append(f"{addr}: {error}")

        async with trio.open_nursery() as nursery:
            for index, (addr, delay) in enumerate(plan):
                nursery.start_soon(attempt, index, addr, delay, nursery)
        if winner:
            self._connections.adopt(pid, [parse_multiaddr(a) for a, _ in plan])
        return (winner[0] if winner else None), failures

    async def _dial_one(self, pid: ID, addr: str) -> None:
        if "/p2p-circuit" in addr:
            webrtc = addr.endswith("/webrtc")
            circuit = addr[: -len("/webrtc")] if webrtc else addr
            relay_addr, relay_id, _ = parse_circuit(circuit)
            if webrtc and self.webrtc is None:
                raise errors.DialError(pid.to_base58(), [addr], "WebRTC is off (enable_webrtc)")
            relayed = [c for c in self._connections.of_peer(pid.to_base58()) if c.relayed]
            if not (webrtc and relayed):
                await self.relay_client.dial(pid, relay_id, relay_addr or None)
            if webrtc:
                # Signal over the relayed connection, then the direct WebRTC one is added.
                await self.webrtc.dial(pid)
            return
        maddr = multiaddr.Multiaddr(addr)
        network: Any = self.host.get_network()
        self.host.get_peerstore().add_addrs(pid, [maddr], 120)
        conn = await network.dial_addr(maddr, pid)
        started = getattr(conn, "event_started", None)
        if started is not None:
            await started.wait()

    def _not_found(self, peer_id: str) -> errors.PeerNotFound:
        self._recorder.failed += 1
        self._recorder.record("dial_failed", peer_id, "no known address")
        return errors.PeerNotFound(peer_id)

    def _dial_failed(self, peer_id: str, addrs: list[str], reason: str) -> None:
        self._recorder.failed += 1
        self._recorder.record("dial_failed", peer_id, f"{reason} ({', '.join(addrs)})")

    # ----------------------------------------------------------------- auto-dial
    def consider(self, record: PeerRecord, source: str) -> None:
        """A peer table listener: auto-dial a newly reachable peer when allowed.

        A discovered peer's word is all we have, and identities are free to make: an
        auto-dial tries at most :data:`AUTO_DIAL_MAX_ADDRS` of its addresses, an endpoint
        (IP and port) is auto-dialled for at most ``auto_dial_max_per_endpoint`` distinct
        identities per :data:`AUTO_DIAL_ENDPOINT_WINDOW` (an IP for at most
        ``auto_dial_max_per_ip`` identity-endpoint pairs), and at most
        ``auto_dial_max_in_flight`` auto-dials run at once. Each refusal is counted.
        """
        if not self._should_auto_dial(record):
            return
        if len(self._auto_dialling) >= self.config.auto_dial_max_in_flight:
            self.dropped["auto_dial_busy"] += 1
            return
        addrs = self._auto_dial_addrs(record)
        if not addrs:
            return
        if self.spawn(self._auto_dial, record.peer_id, source, addrs):
            self._auto_dialling.add(record.peer_id)

    def _auto_dial_addrs(self, record: PeerRecord) -> list[str]:
        """The addresses an auto-dial of ``record`` may try (and claims on their endpoints)."""
        now = trio.current_time()
        self._expire(now)
        limits = (self.config.auto_dial_max_per_endpoint, self.config.auto_dial_max_per_ip)
        reasons = ("auto_dial_endpoint_cap", "auto_dial_ip_cap")
        out: list[str] = []
        for addr in record.multiaddrs:
            if len(out) >= AUTO_DIAL_MAX_ADDRS:
                self.dropped["auto_dial_addr_cap"] += 1
                continue
            # An endpoint counts identities; an IP counts (identity, endpoint) pairs, so
            # one record listing many ports of one host is capped too.
            keys = _endpoints(addr)
            claims = [record.peer_id, f"{record.peer_id} {keys[0]}" if keys else ""]
            refused = None
            for key, claim, limit, reason in zip(keys, claims, limits, reasons, strict=False):
                users = self._endpoint_dialers.get(key, {})
                if claim not in users and len(users) >= limit:
                    refused = reason
                    break
            if refused is not None:
                self.dropped[refused] += 1
                continue
            out.append(addr)
            for key, claim in zip(keys, claims, strict=False):
                self._endpoint_dialers.setdefault(key, {})[claim] = now
        while len(self._endpoint_dialers) > MAX_ENDPOINTS_TRACKED:
            self._endpoint_dialers.pop(next(iter(self._endpoint_dialers)))
        return out

    def _expire(self, now: float) -> None:
        """Forget endpoint claims older than the window and back-offs long past (at most
        once a second: announcements may arrive by the hundred)."""
        if now < self._next_expiry:
            return
        self._next_expiry = now + 1.0
        for key in list(self._endpoint_dialers):
            users = self._endpoint_dialers[key]
            for peer, when in list(users.items()):
                if now - when > AUTO_DIAL_ENDPOINT_WINDOW:
                    del users[peer]
            if not users:
                del self._endpoint_dialers[key]
        for peer, (_, retry_at) in list(self._auto_dial_backoff.items()):
            if now - retry_at > AUTO_DIAL_MAX_BACKOFF:
                del self._auto_dial_backoff[peer]

    def _should_auto_dial(self, record: PeerRecord) -> bool:
        return (
            self.config.auto_dial
            and not record.connected
            and bool(record.multiaddrs)
            and record.peer_id not in self._auto_dialling
            and record.peer_id not in self._dialling
            and self._auto_dial_backoff.get(record.peer_id, (0, 0.0))[1] <= trio.current_time()
            and record.peer_id != self._peers.local_peer_id
            and self._connections.active() < self.config.max_connections
        )

    async def _auto_dial(self, peer_id: str, source: str, addrs: list[str] | None = None) -> None:
        try:
            await self.connect_peer(peer_id, addrs, source=source, exact=addrs is not None)
            self._auto_dial_backoff.pop(peer_id, None)
        except errors.UcsdkError as exc:
            failures = self._auto_dial_backoff.get(peer_id, (0, 0.0))[0] + 1
            delay = min(AUTO_DIAL_MAX_BACKOFF, 2.0**failures)
            self._auto_dial_backoff[peer_id] = (failures, trio.current_time() + delay)
            while len(self._auto_dial_backoff) > self.config.max_discovered_peers:
                self._auto_dial_backoff.pop(next(iter(self._auto_dial_backoff)))
            logger.debug("auto-dial of %s failed (%s); next in %g s", peer_id, exc, delay)
        finally:
            self._auto_dialling.discard(peer_id)

    async def _keep_bootstrap_connection(self, addr: str) -> None:
        """Stay connected to one bootstrap peer, retrying with exponential back-off.

        A ``/dnsaddr/`` address is resolved (TXT records) before every attempt; when that
        fails the reason is recorded as a ``bootstrap_unresolved`` event.
        """
        transport_addr, peer_id = split_p2p(parse_multiaddr(addr))
        if peer_id is None:
            return
        attempt = 0
        while True:
            if not self._peers.is_connected(peer_id):
                try:
                    if dnsaddr_domain(addr) is not None:
                        targets = await resolve_dnsaddr(
                            addr, nameservers=self.config.dns_nameservers
                        )
                    else:
                        targets = [str(transport_addr)]
                    await self.connect_peer(peer_id, targets, source="bootstrap")
                    attempt = 0
                except (errors.UcsdkError, DnsaddrError) as exc:
                    delay = BOOTSTRAP_BACKOFF[min(attempt, len(BOOTSTRAP_BACKOFF) - 1)]
                    attempt += 1
                    kind = (
                        "bootstrap_unresolved"
                        if isinstance(exc, DnsaddrError)
                        else "bootstrap_retry"
                    )
                    self._recorder.record(kind, peer_id, f"{exc}; next try in {delay:g} s")
                    await trio.sleep(delay)
                    continue
            await trio.sleep(BOOTSTRAP_BACKOFF[0])
