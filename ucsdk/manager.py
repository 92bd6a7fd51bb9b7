"""The universal connectivity manager: one object that owns a node's connectivity.

It tracks every connection through a network notifee, keeps the discovered-peer table,
dials with a strategy, records events and metrics, and (as they land) owns the discovery
and NAT-traversal services. It runs on the host's trio event loop; everything it hands out
is an immutable snapshot.

Example (inside trio, with a host you built and started yourself):
    >>> import trio, multiaddr
    >>> from ucsdk import ConnectivityConfig, setup_universal_connectivity
    >>> from ucsdk.host import expand_wildcard, build_host
    >>> from ucsdk.identity import new_key_pair
    >>> async def main():
    ...     config = ConnectivityConfig.preset("development")
    ...     host = build_host(config, new_key_pair())
    ...     listen = [multiaddr.Multiaddr(a) for a in config.resolved_listen_addrs()]
    ...     async with host.run(listen):
    ...         manager = await setup_universal_connectivity(host, config)
    ...         metrics = manager.get_metrics()
    ...         await manager.stop()
    ...     await host.close()
    ...     return metrics.active_connections, metrics.nat_status
    >>> trio.run(main)
    (0, 'unknown')
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import statistics
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as Libp2pPeerInfo

from ucsdk import errors
from ucsdk._service import Service
from ucsdk.config import ConnectivityConfig, transport_of
from ucsdk.discovery.bootstrap import DnsaddrError, dnsaddr_domain, resolve_dnsaddr
from ucsdk.discovery.dht import DHTDiscovery
from ucsdk.discovery.mdns import MDNSService
from ucsdk.discovery.pubsub import PubsubPeerDiscovery
from ucsdk.host import disable_auto_dial, expand_wildcard
from ucsdk.metrics import ConnectivityMetrics, Event, EventLog, MetricsHistory, utcnow
from ucsdk.nat.autonat import AUTONAT_PROTOCOL, AutoNAT, AutoNATReport
from ucsdk.nat.dcutr import DCUtR, HolePunchResult
from ucsdk.nat.relay import (
    HOP_PROTOCOL,
    CircuitRelayClient,
    CircuitRelayServer,
    Reservation,
    parse_circuit,
)
from ucsdk.peers import ConnectionInfo, DiscoveredPeer, PeerInfo, PeerRecord
from ucsdk.protocols import ping_rtts, query_identify

logger = logging.getLogger("UniversalConnectivity")

IDENTIFY_TIMEOUT = 5.0
AUTO_DIAL_MAX_BACKOFF = 60.0
BOOTSTRAP_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)


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
    if not peer_id.to_bytes():
        raise errors.InvalidPeerId(value)
    return peer_id


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


@dataclass
class _OpenConnection:
    peer_id: str
    remote_addr: str | None
    direction: str
    transport: str | None
    relayed: bool
    opened_at: datetime


class _ManagerNotifee(INotifee):
    """Forwards swarm events to the manager while it is running."""

    def __init__(self, manager: UniversalConnectivityManager) -> None:
        self._manager = manager

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._manager._on_connected(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._manager._on_disconnected(conn)

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


def describe_connection(conn: INetConn) -> tuple[str | None, str | None, bool]:
    """(remote address, transport, relayed) of a py-libp2p connection."""
    remote: str | None = None
    try:
        addrs = conn.get_transport_addresses()
        if addrs:
            remote = str(split_p2p(addrs[0])[0])
    except Exception as exc:
        logger.debug("no transport address for a connection: %s", exc)
    relayed = bool(remote and "/p2p-circuit" in remote)
    connection_type = getattr(conn, "get_connection_type", None)
    if callable(connection_type) and "RELAY" in str(connection_type()).upper():
        relayed = True
    transport = transport_of(remote) if remote else None
    # py-libp2p gives no address for a WebSocket connection (and may call it /tcp): look
    # at the raw connection object beneath the muxer and security layers.
    layer: Any = getattr(conn, "muxed_conn", None)
    for _ in range(6):
        if layer is None:
            break
        if "websocket" in type(layer).__name__.lower():
            transport = "websocket"
            ws_remote = getattr(layer, "_remote_addr", None)
            if ws_remote is not None and str(ws_remote).startswith("/"):
                remote = str(split_p2p(multiaddr.Multiaddr(str(ws_remote)))[0])
            break
        layer = next(
            (
                getattr(layer, a)
                for a in ("secured_conn", "conn", "stream")
                if getattr(layer, a, None) is not None
            ),
            None,
        )
    if relayed:
        transport = "relay"
    return remote, transport, relayed


def connection_direction(conn: INetConn) -> str:
    """``"inbound"`` or ``"outbound"``.

    py-libp2p leaves inbound connections' direction UNKNOWN, so fall back on which side
    initiated the secure session / muxer.
    """
    direction = str(getattr(conn, "direction", "") or "").split(".")[-1].lower()
    if direction in ("inbound", "outbound"):
        return direction
    muxed: Any = getattr(conn, "muxed_conn", None)
    for holder, attr in (
        (muxed, "is_initiator_value"),
        (muxed, "_is_initiator"),
        (getattr(muxed, "secured_conn", None), "is_initiator"),
    ):
        value = getattr(holder, attr, None)
        if isinstance(value, bool):
            return "outbound" if value else "inbound"
    return "unknown"


def _callback_name(callback: Callable[..., Any]) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)


def _dial_failure_reason(exc: BaseException) -> str:
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
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    for hint in ("refused", "timed out", "unreachable", "reset", "handshake", "protocol"):
        for text in reasons:
            if hint in text.lower():
                return text
    return reasons[-1] if reasons else type(exc).__name__


class UniversalConnectivityManager(Service):
    """Owns a host's connectivity: connections, peers, dial strategy, events, metrics.

    ``start()`` registers with the host's network and begins bootstrap dialling;
    ``stop()`` undoes that and waits for every task it started. The host itself stays
    yours (start it before, close it after).

    Discovery (pubsub, mDNS, DHT) and NAT traversal (AutoNAT, relay, DCUtR) attach to the
    attributes ``pubsub_discovery``, ``mdns``, ``dht``, ``autonat``, ``relay_client``,
    ``relay_server`` and ``dcutr``; they are ``None`` while not running.

    Example:
        see the module docstring (``ucsdk.manager``) for a complete, runnable example.
    """

    def __init__(self, host: IHost, config: ConnectivityConfig | None = None) -> None:
        super().__init__()
        self.host = host
        self.config = (config if config is not None else ConnectivityConfig()).validate()
        self.logger = logger
        if self.config.log_level:
            # The seed's advice for development: verbose logs from this logger.
            logger.setLevel(self.config.log_level.upper())
        self._peers: dict[str, PeerRecord] = {}
        self._connections: dict[int, _OpenConnection] = {}
        self._events = EventLog(self.config.max_events)
        self._history = MetricsHistory(self.config.metrics_history_size)
        self._notifee = _ManagerNotifee(self)
        self._nursery: trio.Nursery | None = None
        self._established = 0
        self._failed = 0
        self._callback_errors = 0
        self._invalid_messages = 0
        self._dcutr_attempts = 0
        self._dcutr_successes = 0
        self._evicted = 0
        self._invalid_kinds: Counter[str] = Counter()
        self._auto_dialling: set[str] = set()
        self._auto_dial_backoff: dict[str, tuple[int, float]] = {}
        self._dropped_by_services: Counter[str] = Counter()
        self._discovered_total = 0
        self._changed_at = utcnow()
        self.version = 0
        """Grows by one on every change; views poll it to know when to redraw."""
        self.local_peer_id = host.get_id().to_base58()
        # Services of later layers attach here.
        self.pubsub_discovery: Any = None
        self.mdns: Any = None
        self.dht: Any = None
        self.autonat: AutoNAT | None = None
        self._nat_status = "unknown"
        self._observed: dict[str, str] = {}
        self._relays_seen: dict[str, None] = {}
        self._hole_punches: deque[HolePunchResult] = deque(maxlen=1000)
        """Connected peers whose identify lists the relay hop protocol (oldest first)."""
        self._reserving = False
        """Our address as each peer saw it (identify's observedAddr), by peer id."""
        self.relay_client: CircuitRelayClient | None = None
        self.relay_server: CircuitRelayServer | None = None
        self.dcutr: DCUtR | None = None

    # ----------------------------------------------------------------- life cycle
    async def _on_start(self) -> None:
        await disable_auto_dial(self.host)
        self._advertise_concrete_addrs()
        network = self.host.get_network()
        network.register_notifee(self._notifee)
        for connections in list(network.connections.values()):
            for conn in connections:
                self._on_connected(conn)
        self._record("started", None, f"manager started on {self.local_peer_id}")

    def _advertise_concrete_addrs(self) -> None:
        """py-libp2p advertises a wildcard listener as ``/ip4/0.0.0.0/...`` (in identify too),
        which nobody can dial: advertise the interface addresses it stands for instead."""
        original = self.host.get_addrs
        if getattr(original, "_ucsdk_expands", False):
            return

        def get_addrs() -> list[multiaddr.Multiaddr]:
            out: list[multiaddr.Multiaddr] = []
            seen: set[str] = set()
            for addr in original():
                for text in expand_wildcard(str(addr)):
                    if text not in seen:
                        seen.add(text)
                        out.append(multiaddr.Multiaddr(text))
            return out

        get_addrs._ucsdk_expands = True  # type: ignore[attr-defined]
        self.host.get_addrs = get_addrs  # type: ignore[method-assign]

    async def _run(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._sample_metrics)
        if self.config.connect_to_bootstrap:
            for addr in self.config.bootstrap_peers:
                nursery.start_soon(self._keep_bootstrap_connection, str(addr))
        if self.config.enable_pubsub_discovery:
            discovery = PubsubPeerDiscovery(
                self.host,
                topics=self.config.pubsub_discovery_topics,
                interval=self.config.pubsub_announce_interval,
                **self._discovery_wiring("pubsub"),
            )
            await discovery.start()
            self.pubsub_discovery = discovery
        if self.config.enable_dht_discovery:
            dht = DHTDiscovery(
                self.host,
                mode=self.config.dht_mode,
                random_walk=self.config.dht_random_walk,
                **self._discovery_wiring("dht"),
            )
            await dht.start()
            self.dht = dht
        if self.config.enable_relay_server:
            server = CircuitRelayServer(
                self.host,
                max_circuits=self.config.max_relay_circuits,
                limit_duration=self.config.relay_limit_duration,
                limit_data=self.config.relay_limit_data,
                on_event=self._relay_event,
            )
            await server.start()
            self.relay_server = server
        if self.config.enable_relay_client:
            client = CircuitRelayClient(
                self.host,
                max_reservations=self.config.max_relay_reservations,
                on_event=self._relay_event,
            )
            await client.start()
            self.relay_client = client
        if self.config.enable_dcutr:
            dcutr = DCUtR(
                self.host,
                public_ips=self._public_ips,
                dial_timeout=min(5.0, self.config.connection_timeout),
                on_result=self._on_hole_punch,
                transports=[t for t in self.config.transports if t in ("tcp", "quic")],
            )
            await dcutr.start()
            self.dcutr = dcutr
        if self.config.enable_autonat:
            autonat = AutoNAT(
                self.host,
                query_interval=self.config.autonat_query_interval,
                serve=self.config.autonat_server,
                min_agreement=self.config.autonat_min_agreement,
                boot_delay=self.config.autonat_boot_delay,
                dial_timeout=self.config.connection_timeout,
                candidate_addrs=self.autonat_candidates,
                on_status_change=self._on_nat_status,
            )
            await autonat.start()
            self.autonat = autonat
        if self.config.enable_mdns:
            mdns = MDNSService(
                self.host,
                service_name=self.config.mdns_service_name,
                query_interval=self.config.mdns_query_interval,
                interfaces=self.config.mdns_interfaces,
                **self._discovery_wiring("mdns"),
            )
            try:
                await mdns.start()
            except Exception as exc:  # no multicast-capable interface, port in use, ...
                self._record("mdns_unavailable", None, repr(exc))
            else:
                self.mdns = mdns

    def _discovery_wiring(self, source: str) -> dict[str, Any]:
        """What every discovery service gets: our table as its listener, and its bound."""
        return {
            "on_peer_discovered": lambda peer: self.report_peer(
                peer.peer_id, peer.multiaddrs, source
            ),
            "max_peers": self.config.max_discovered_peers,
        }

    async def _on_stop(self) -> None:
        self._nursery = None
        for name, prefix in (
            ("pubsub_discovery", "pubsub"),
            ("mdns", "mdns"),
            ("dht", "dht"),
            ("autonat", "autonat"),
            ("relay_server", "relay"),
            ("relay_client", "relay_client"),
            ("dcutr", "dcutr"),
        ):
            service = getattr(self, name)
            if service is not None:
                await service.stop()
                self._dropped_by_services.update(
                    {f"{prefix}_{k}": v for k, v in service.dropped.items()}
                )
                setattr(self, name, None)
        network = self.host.get_network()
        remove = getattr(network, "remove_notifee", None)
        if callable(remove):
            remove(self._notifee)
        self._record("stopped", None, "manager stopped")
        self._history.add(self.get_metrics())

    # ---------------------------------------------------------------- snapshots
    def get_metrics(self) -> ConnectivityMetrics:
        """A snapshot of the counters (see :class:`ConnectivityMetrics`)."""
        relayed = sum(1 for c in self._connections.values() if c.relayed)
        active = len(self._connections)
        nat_status = self._nat_status
        dropped = Counter(self._invalid_kinds)
        dropped.update(self._dropped_by_services)
        services = (
            (self.pubsub_discovery, "pubsub"),
            (self.mdns, "mdns"),
            (self.dht, "dht"),
            (self.autonat, "autonat"),
            (self.relay_server, "relay"),
            (self.relay_client, "relay_client"),
            (self.dcutr, "dcutr"),
        )
        for service, prefix in services:
            if service is not None:
                dropped.update({f"{prefix}_{k}": v for k, v in service.dropped.items()})
        return ConnectivityMetrics(
            total_peers_discovered=self._discovered_total,
            total_connections_established=self._established,
            total_connections_failed=self._failed,
            active_connections=active,
            relay_connections=relayed,
            direct_connections=active - relayed,
            nat_status=nat_status,
            nat_confidence=self.autonat.confidence if self.autonat is not None else 0,
            dcutr_success_rate=(
                self._dcutr_successes / self._dcutr_attempts if self._dcutr_attempts else 0.0
            ),
            last_updated=self._changed_at,
            callback_errors=self._callback_errors,
            dcutr_attempts=self._dcutr_attempts,
            dcutr_successes=self._dcutr_successes,
            invalid_messages=self._invalid_messages + sum(dropped.values()),
            invalid_message_kinds=dict(dropped),
            peers_evicted=self._evicted,
        )

    def get_discovered_peers(self) -> list[DiscoveredPeer]:
        """Every peer heard of, by any mechanism, oldest first."""
        return [record.snapshot() for record in self._peers.values()]

    def get_peer(self, peer_id: str) -> DiscoveredPeer | None:
        record = self._peers.get(str(peer_id))
        return record.snapshot() if record else None

    def get_connections(self) -> list[ConnectionInfo]:
        """Every open connection, with its negotiated security and muxer."""
        network = self.host.get_network()
        rows: list[ConnectionInfo] = []
        for connections in list(network.connections.values()):
            for conn in connections:
                known = self._connections.get(id(conn))
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

    def get_events(self) -> list[Event]:
        return self._events.snapshot()

    def get_metrics_history(self) -> list[ConnectivityMetrics]:
        return self._history.snapshot()

    def is_connected(self, peer_id: str) -> bool:
        record = self._peers.get(str(peer_id))
        return bool(record and record.connected)

    def get_nat_status(self) -> str:
        """``"public"``, ``"private"`` or ``"unknown"`` (``"unknown"`` until AutoNAT runs)."""
        return self.get_metrics().nat_status

    # ------------------------------------------------------------ peers & events
    def report_peer(self, peer_id: str, addrs: Sequence[str], source: str) -> DiscoveredPeer:
        """Merge what a discovery mechanism learnt about a peer into the table."""
        record, is_new = self._record_for(peer_id)
        changed = record.add_addrs([str(a) for a in addrs], source)
        if is_new:
            self._record("peer_discovered", peer_id, f"via {source}")
            self._call_user(self.config.on_peer_discovered, record.snapshot())
        elif changed:
            self._touch()
        if self._nursery is not None and self._should_auto_dial(record):
            self._auto_dialling.add(peer_id)
            self._nursery.start_soon(self._auto_dial, peer_id, source)
        return record.snapshot()

    def _should_auto_dial(self, record: PeerRecord) -> bool:
        return (
            self.config.auto_dial
            and not record.connected
            and bool(record.multiaddrs)
            and record.peer_id not in self._auto_dialling
            and self._auto_dial_backoff.get(record.peer_id, (0, 0.0))[1] <= trio.current_time()
            and record.peer_id != self.local_peer_id
            and len(self._connections) < self.config.max_connections
        )

    async def _auto_dial(self, peer_id: str, source: str) -> None:
        try:
            await self.connect_peer(peer_id, source=source)
            self._auto_dial_backoff.pop(peer_id, None)
        except errors.UcsdkError as exc:
            failures = self._auto_dial_backoff.get(peer_id, (0, 0.0))[0] + 1
            delay = min(AUTO_DIAL_MAX_BACKOFF, 2.0**failures)
            self._auto_dial_backoff[peer_id] = (failures, trio.current_time() + delay)
            logger.debug("auto-dial of %s failed (%s); next in %g s", peer_id, exc, delay)
        finally:
            self._auto_dialling.discard(peer_id)

    def count_invalid_message(self, what: str, peer_id: str | None = None) -> None:
        """Count (and log at debug) a malformed message from the network."""
        self._invalid_messages += 1
        self._invalid_kinds[what] += 1
        logger.debug("dropped invalid input from %s: %s", peer_id or "network", what)
        self._touch()

    def _record_for(self, peer_id: str, *, pending: bool = False) -> tuple[PeerRecord, bool]:
        record = self._peers.get(peer_id)
        if record is not None:
            if record.pending and not pending:
                self._confirm(record, "discovery")
            return record, False
        if len(self._peers) >= self.config.max_discovered_peers:
            self._evict_stalest()
        record = PeerRecord(peer_id)
        record.pending = pending
        self._peers[peer_id] = record
        if not pending:
            self._discovered_total += 1
        return record, True

    def _confirm(self, record: PeerRecord, how: str) -> None:
        """A peer known only from an inbound connection turned out to be a real peer."""
        record.pending = False
        self._discovered_total += 1
        self._record("peer_discovered", record.peer_id, f"via inbound connection ({how})")
        self._call_user(self.config.on_peer_discovered, record.snapshot())

    def _evict_stalest(self) -> None:
        """Make room in the bounded table: drop the peer heard of longest ago (not connected)."""
        idle = [r for r in self._peers.values() if not r.connected]
        if not idle:
            return
        stalest = min(idle, key=lambda r: r.last_seen)
        del self._peers[stalest.peer_id]
        self._evicted += 1

    def _touch(self) -> None:
        self.version += 1
        self._changed_at = utcnow()

    def _record(self, kind: str, peer_id: str | None, detail: str) -> Event:
        event = self._events.add(kind, peer_id, detail)
        logger.debug("%s %s %s", kind, peer_id or "", detail)
        self._touch()
        return event

    def _call_user(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(*args)
        except Exception as exc:
            self._callback_failed(callback, exc)
            return
        if inspect.isawaitable(result):
            if self._nursery is None:
                # Not running: close the coroutine rather than leave it un-awaited.
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                return
            self._nursery.start_soon(self._await_callback, callback, result)

    async def _await_callback(self, callback: Callable[..., Any], awaitable: Any) -> None:
        try:
            await awaitable
        except Exception as exc:
            self._callback_failed(callback, exc)

    def _callback_failed(self, callback: Callable[..., Any], exc: Exception) -> None:
        self._callback_errors += 1
        logger.warning("callback %s raised %r", _callback_name(callback), exc, exc_info=exc)
        self._record("callback_error", None, f"{_callback_name(callback)} raised {exc!r}")

    # ----------------------------------------------------------- connection events
    def _on_connected(self, conn: INetConn) -> None:
        if id(conn) in self._connections:
            return
        try:
            peer_id = conn.muxed_conn.peer_id.to_base58()
        except Exception as exc:
            logger.debug("connection without a peer id: %s", exc)
            return
        remote, transport, relayed = describe_connection(conn)
        direction = connection_direction(conn)
        self._connections[id(conn)] = _OpenConnection(
            peer_id, remote, direction, transport, relayed, utcnow()
        )
        if relayed and direction == "inbound" and self.dcutr is not None and self._nursery:
            relay_id = None
            if remote and "/p2p-circuit" in remote:
                with contextlib.suppress(Exception):
                    relay_id = parse_circuit(remote)[1]
            self._nursery.start_soon(self._upgrade_relayed, conn.muxed_conn.peer_id, relay_id)
        record, is_new = self._record_for(peer_id, pending=direction == "inbound")
        record.connections += 1
        record.relayed_connections += int(relayed)
        record.transport = transport
        if remote and direction == "outbound":
            record.add_addrs([remote], None)
        elif direction == "inbound" and not record.sources:
            record.add_addrs([], "inbound")
        self._established += 1
        if is_new and not record.pending:
            self._record("peer_discovered", peer_id, f"via {direction} connection")
            self._call_user(self.config.on_peer_discovered, record.snapshot())
        self._record("connected", peer_id, f"{direction} {transport} {remote}")
        self._call_user(self.config.on_connection_established, peer_id, remote)
        if self._nursery is not None:
            self._nursery.start_soon(self._identify, conn.muxed_conn.peer_id)
            duplicate = self._duplicate_to_close(conn)
            if duplicate is not None:
                self._nursery.start_soon(self._close_duplicate, duplicate)

    def _duplicate_to_close(self, conn: INetConn) -> INetConn | None:
        """When two peers dial each other at once, both end with two direct connections.

        Both sides keep the same one, the connection dialled by the smaller peer id, and
        close the other; relayed connections are left alone (DCUtR needs them).
        """
        known = self._connections[id(conn)]
        if known.relayed:
            return None
        pid = conn.muxed_conn.peer_id
        siblings = [
            c
            for c in self.host.get_network().connections.get(pid, [])
            if id(c) in self._connections and not self._connections[id(c)].relayed
        ]
        if len(siblings) < 2:
            return None

        def dialler(c: INetConn) -> str:
            outbound = self._connections[id(c)].direction == "outbound"
            return self.local_peer_id if outbound else known.peer_id

        keep = min(siblings, key=lambda c: (dialler(c), self._connections[id(c)].opened_at))
        return next((c for c in siblings if c is not keep), None)

    async def _close_duplicate(self, conn: INetConn) -> None:
        known = self._connections.get(id(conn))
        if known is not None:
            self._record(
                "duplicate_closed", known.peer_id, f"{known.direction} {known.remote_addr}"
            )
        try:
            await conn.close()
        except Exception as exc:
            logger.debug("closing a duplicate connection failed: %s", exc)

    def _on_disconnected(self, conn: INetConn) -> None:
        known = self._connections.pop(id(conn), None)
        if known is None:
            return
        record = self._peers.get(known.peer_id)
        if record is not None:
            record.connections = max(0, record.connections - 1)
            record.relayed_connections = max(0, record.relayed_connections - int(known.relayed))
            record.last_seen = utcnow()
        self._record("disconnected", known.peer_id, f"{known.transport} {known.remote_addr}")
        if record is not None and record.pending and record.connections == 0:
            # Never said who it was (e.g. an AutoNAT server's dial-back host): forget it.
            del self._peers[known.peer_id]
        self._call_user(self.config.on_connection_closed, known.peer_id, known.remote_addr)

    async def _wait_for_host_identify(self, peer_id: ID) -> None:
        """Wait until py-libp2p's own identify of ``peer_id`` is over.

        Other implementations allow one inbound identify stream per connection at a time
        (js-libp2p resets the second one), so ucsdk's query goes after the host's.
        """
        await trio.sleep(0.05)  # the host schedules its identify in its own notifee
        inflight = getattr(self.host, "_identify_inflight", None)
        if not isinstance(inflight, set):
            return
        with trio.move_on_after(IDENTIFY_TIMEOUT):
            while peer_id in inflight:
                await trio.sleep(0.02)

    async def _identify(self, peer_id: ID) -> None:
        await self._wait_for_host_identify(peer_id)
        message = None
        for attempt in range(2):
            try:
                with trio.fail_after(IDENTIFY_TIMEOUT):
                    message = await query_identify(self.host, peer_id)
                break
            except Exception as exc:
                logger.debug("identify of %s failed (attempt %d): %s", peer_id, attempt, exc)
                await trio.sleep(0.3)
                # Opening a stream dials a peer that is gone: retry only while connected.
                if not self.is_connected(peer_id.to_base58()) or not (
                    self.host.get_network().connections.get(peer_id)
                ):
                    return
        if message is None:
            return
        record = self._peers.get(peer_id.to_base58())
        if record is None:
            return
        if record.pending:
            self._confirm(record, "identified")
        record.agent_version = message.agent_version or None
        record.protocols = tuple(sorted(str(p) for p in message.protocols))[:256]
        listen: list[str] = []
        for raw in list(message.listen_addrs)[:64]:
            try:
                listen.append(str(multiaddr.Multiaddr(raw)))
            except Exception:
                self.count_invalid_message("identify_bad_address", str(peer_id))
        record.add_addrs(listen, None)
        if message.HasField("observed_addr") and message.observed_addr:
            try:
                observed = str(multiaddr.Multiaddr(message.observed_addr))
            except Exception:
                self.count_invalid_message("identify_bad_observed_addr", str(peer_id))
            else:
                conns = self.host.get_network().connections.get(peer_id, [])
                # Over a relay, the peer sees the relay's end of the pipe, not us.
                if "/p2p-circuit" not in observed and any(
                    not describe_connection(c)[2] for c in conns
                ):
                    self._observed[record.peer_id] = observed
                    while len(self._observed) > 256:
                        self._observed.pop(next(iter(self._observed)))
        self._record("identified", record.peer_id, record.agent_version or "")
        if self.autonat is not None and str(AUTONAT_PROTOCOL) in record.protocols:
            self.autonat.poke()
        if str(HOP_PROTOCOL) in record.protocols:
            self._relays_seen[record.peer_id] = None
            self._schedule_reservations()
        if self.dht is not None and any("/kad/" in p for p in record.protocols):
            await self.dht.add_peer(peer_id)

    # ------------------------------------------------------------------- dialling
    async def connect(self, addr: str | multiaddr.Multiaddr) -> PeerInfo:
        """Connect to a full multiaddr (ending in ``/p2p/<peer id>``); raise on failure."""
        maddr = parse_multiaddr(addr)
        transport_addr, peer_id = split_p2p(maddr)
        if peer_id is None:
            raise errors.InvalidMultiaddr(str(addr), "it must end in /p2p/<peer id>")
        await self.connect_peer(peer_id, [str(transport_addr)], source="manual")
        return self.peer_info(peer_id)

    def peer_info(self, peer_id: str) -> PeerInfo:
        record = self._peers[peer_id]
        return PeerInfo(
            peer_id=peer_id,
            addrs=tuple(record.multiaddrs),
            transport=record.transport if record.connected else None,
            connection_type=record.connection_type,
            agent_version=record.agent_version,
            protocols=record.protocols,
        )

    async def connect_peer(
        self,
        peer_id: str | ID,
        addrs: Sequence[str] | None = None,
        *,
        use_relay: bool = True,
        source: str = "manual",
    ) -> DiscoveredPeer:
        """The dial strategy; returns the peer on success, raises :class:`DialError`.

        1. direct dial to ``addrs`` and every address already known for the peer;
        2. with ``use_relay``, through a relay the peer has a reservation on (when the
           relay client runs); once relayed, DCUtR upgrades the connection.
        """
        pid = parse_peer_id(peer_id)
        pid_text = pid.to_base58()
        if pid_text == self.local_peer_id:
            raise errors.DialError(pid_text, [], "that is this node's own peer id")
        targets: list[multiaddr.Multiaddr] = []
        for raw in addrs or ():
            maddr, embedded = split_p2p(parse_multiaddr(raw))
            if embedded is not None and embedded != pid_text:
                raise errors.InvalidMultiaddr(str(raw), f"it names peer {embedded}, not {pid_text}")
            targets.append(maddr)
        if targets:
            record, is_new = self._record_for(pid_text)
            record.add_addrs([str(t) for t in targets], source)
            if is_new:
                self._record("peer_discovered", pid_text, f"via {source}")
                self._call_user(self.config.on_peer_discovered, record.snapshot())
        table_entry = self._peers.get(pid_text)
        if not targets and table_entry is not None:
            # Addresses discovery put in our table (py-libp2p's peerstore may not have them).
            targets = [split_p2p(parse_multiaddr(a))[0] for a in table_entry.multiaddrs]
        known = _known_addrs(self.host, pid)
        if not targets and not known and self.dht is not None and not self.is_connected(pid_text):
            # Only a peer id: ask the DHT where the peer is.
            found = await self.dht.find_peer(pid)
            if found is not None:
                targets = [parse_multiaddr(a) for a in found.multiaddrs]
                self._record("dht_found", pid_text, ", ".join(found.multiaddrs))
        all_addrs = [str(a) for a in [*targets, *known]]
        if not all_addrs and not self.is_connected(pid_text):
            self._failed += 1
            self._record("dial_failed", pid_text, "no known address")
            raise errors.PeerNotFound(pid_text)
        # py-libp2p refuses to dial a peer for 60 s after one failed dial. An explicit dial
        # (the user's, or a bootstrap retry on its own back-off) must really be tried.
        unblock = getattr(self.host.get_network(), "unblock_peer", None)
        if callable(unblock):
            unblock(pid)
        direct = [t for t in targets if "/p2p-circuit" not in str(t)]
        relayed = [str(t) for t in targets if "/p2p-circuit" in str(t)]
        direct_known = [k for k in known if "/p2p-circuit" not in str(k)]
        failures: list[str] = []
        if direct or direct_known or not relayed:
            started = trio.current_time()
            try:
                with trio.fail_after(self.config.connection_timeout):
                    await self.host.connect(Libp2pPeerInfo(pid, direct))
            except trio.TooSlowError:
                failures.append(f"direct: timed out after {self.config.connection_timeout:g} s")
            except Exception as exc:
                failures.append(f"direct: {_dial_failure_reason(exc)}")
            else:
                elapsed_ms = (trio.current_time() - started) * 1000
                self._adopt_connections(pid, direct)
                self._record("dial_succeeded", pid_text, f"direct in {elapsed_ms:.1f} ms")
                return self._peers[pid_text].snapshot()
        if use_relay and relayed and self.relay_client is not None:
            for addr in relayed[:4]:
                started = trio.current_time()
                try:
                    relay_addr, relay_id, _ = parse_circuit(addr)
                    with trio.fail_after(self.config.connection_timeout):
                        await self.relay_client.dial(pid, relay_id, relay_addr)
                except trio.TooSlowError:
                    failures.append(f"via {addr}: timed out")
                    continue
                except Exception as exc:
                    failures.append(f"via {addr}: {_dial_failure_reason(exc)}")
                    continue
                elapsed_ms = (trio.current_time() - started) * 1000
                self._adopt_connections(pid, [])
                self._record(
                    "dial_succeeded", pid_text, f"relayed in {elapsed_ms:.1f} ms via {addr}"
                )
                # The peer we reached (the inbound side) drives the DCUtR upgrade.
                return self._peers[pid_text].snapshot()
        elif relayed and not use_relay:
            failures.append("relayed addresses skipped (use_relay=False)")
        elif relayed:
            failures.append("relayed addresses known but the relay client is off")
        reason = "; ".join(failures) or "no way to reach the peer"
        self._dial_failed(pid_text, all_addrs, reason)
        raise errors.DialError(pid_text, all_addrs, reason)

    def _adopt_connections(self, pid: ID, dialled_targets: Sequence[multiaddr.Multiaddr]) -> None:
        # The notifee may run just after connect() returns: make sure the table knows.
        for conn in self.host.get_network().connections.get(pid, []):
            self._on_connected(conn)
            known_conn = self._connections.get(id(conn))
            if known_conn is not None and known_conn.remote_addr is None:
                # e.g. WebSocket: py-libp2p keeps no address; we know which one we dialled.
                dialled = [
                    str(t) for t in dialled_targets if transport_of(str(t)) == known_conn.transport
                ]
                known_conn.remote_addr = dialled[0] if dialled else None

    async def _upgrade_relayed(self, pid: ID, relay_id: str | None) -> None:
        """An inbound relayed connection: we are DCUtR's ``B`` and drive the upgrade, once
        identify has told both sides their addresses."""
        if self.dcutr is None:
            return
        pid_text = pid.to_base58()
        with trio.move_on_after(3):
            while not (self._peers.get(pid_text) and self._peers[pid_text].protocols):
                await trio.sleep(0.05)
        try:
            await self.dcutr.attempt_hole_punch(pid, relay_id)
        except Exception as exc:
            logger.debug("DCUtR upgrade of %s failed: %s", pid, exc)

    def _observed_ips(self) -> list[tuple[str, str]]:
        """``(ip4 | ip6, IP)`` other peers observed this node at (identify, direct
        connections only), each once."""
        out: list[tuple[str, str]] = []
        for addr in self._observed.values():
            parts = addr.split("/")
            if len(parts) > 2 and parts[1] in ("ip4", "ip6") and (parts[1], parts[2]) not in out:
                out.append((parts[1], parts[2]))
        return out

    def _public_ips(self) -> list[str]:
        """IPv4 addresses other peers observed this node at (what DCUtR predicts from)."""
        return [ip for proto, ip in self._observed_ips() if proto == "ip4"]

    def _on_hole_punch(self, result: HolePunchResult) -> None:
        self._dcutr_attempts += 1
        self._dcutr_successes += int(result.success)
        self._hole_punches.append(result)
        took = f" in {result.time_to_direct_ms:.0f} ms" if result.time_to_direct_ms else ""
        self._record(
            "hole_punch",
            result.peer_id,
            f"{result.outcome}{took} as {result.role}, {result.attempts} attempt(s): "
            f"{result.reason}",
        )

    def get_hole_punches(self) -> list[HolePunchResult]:
        """Every hole-punch outcome this node took part in."""
        return list(self._hole_punches)

    def _dial_failed(self, peer_id: str, addrs: list[str], reason: str) -> None:
        self._failed += 1
        self._record("dial_failed", peer_id, f"{reason} ({', '.join(addrs)})")

    async def dial_peer(
        self, peer_id: str, addrs: Sequence[str] | None = None, use_relay: bool = True
    ) -> bool:
        """The seed's dial call: ``True`` when connected, ``False`` when every way failed.

        Malformed input (a bad peer id or multiaddr) still raises
        :class:`ucsdk.errors.InvalidInput`: that is a bug in the caller, not a failed dial.
        """
        try:
            await self.connect_peer(peer_id, addrs, use_relay=use_relay)
        except errors.InvalidInput:
            raise
        except errors.DialError as exc:
            logger.info("dial_peer failed: %s", exc)
            return False
        return True

    async def find_peer(self, peer_id: str | ID) -> DiscoveredPeer:
        """Where is ``peer_id``? The table, then the DHT; :class:`PeerNotFound` if nowhere."""
        pid = parse_peer_id(peer_id)
        record = self._peers.get(pid.to_base58())
        if record is not None and record.multiaddrs:
            return record.snapshot()
        if self.dht is not None:
            found = await self.dht.find_peer(pid)
            if found is not None:
                return self.report_peer(found.peer_id, found.multiaddrs, "dht")
        raise errors.PeerNotFound(pid.to_base58())

    # ------------------------------------------------------------------- AutoNAT
    def autonat_candidates(self) -> list[str]:
        """Addresses to ask AutoNAT servers to dial: our listen addresses, and each IP other
        peers saw us come from combined with our listen ports (a NAT that keeps ports maps
        them there, and a port forward makes them reachable)."""
        own = [str(a).split("/p2p/")[0] for a in self.host.get_addrs()]
        out = list(own)
        for proto, ip in self._observed_ips():
            for addr in own:
                parts = addr.split("/")
                # Same address family only: an IPv4 observation says nothing about IPv6.
                if len(parts) > 3 and parts[1] == proto and parts[2] != ip:
                    guess = "/".join([*parts[:2], ip, *parts[3:]])
                    if guess not in out:
                        out.append(guess)
        return out

    def _on_nat_status(self, before: str, after: str, confidence: int) -> None:
        self._nat_status = after
        if after == "private":
            self._schedule_reservations()
        latest = list(self.autonat.reports)[-6:] if self.autonat is not None else []
        said = "; ".join(f"{r.server[-6:]} {r.status_name}" for r in latest if r.counts)
        self._record("nat_status", None, f"{before} -> {after} (confidence {confidence}): {said}")

    # ------------------------------------------------------------------- relaying
    def _relay_event(self, kind: str, peer: str | None, detail: str) -> None:
        self._record(f"relay_{kind}", peer, detail)

    def _schedule_reservations(self) -> None:
        """When private (AutoNAT), hold reservations on up to ``max_relay_reservations``
        connected relays, so that others can reach us through them."""
        if (
            self.relay_client is None
            or not self.config.relay_auto_reserve
            or self._nat_status != "private"
            or self._reserving
            or self._nursery is None
        ):
            return
        self._reserving = True
        self._nursery.start_soon(self._reserve_on_relays)

    async def _reserve_on_relays(self) -> None:
        try:
            client = self.relay_client
            if client is None:
                return
            for relay in list(self._relays_seen):
                if len(client.reservations) >= client.max_reservations:
                    break
                if relay in client.reservations or not self.is_connected(relay):
                    continue
                try:
                    await client.make_reservation(relay)
                except Exception as exc:
                    logger.debug("reservation on %s failed: %s", relay, exc)
        finally:
            self._reserving = False

    async def reserve(self, relay: str) -> Reservation:
        """Reserve a slot on a relay given by a full multiaddr (``.../p2p/<relay id>``) or a
        connected relay's peer id."""
        if self.relay_client is None:
            raise errors.ConfigError(
                "enable_relay_client", self.config.enable_relay_client, "True to use relays"
            )
        if isinstance(relay, str) and relay.startswith("/"):
            transport, relay_id = split_p2p(parse_multiaddr(relay))
            if relay_id is None:
                raise errors.InvalidMultiaddr(relay, "it must end in /p2p/<relay id>")
            await self.connect_peer(relay_id, [str(transport)], source="manual")
            pid = parse_peer_id(relay_id)
        else:
            pid = parse_peer_id(relay)
        try:
            return await self.relay_client.make_reservation(pid)
        except errors.UcsdkError:
            raise
        except Exception as exc:
            raise errors.DialError(pid.to_base58(), [], f"reservation failed: {exc}") from exc

    def get_reservations(self) -> list[Reservation]:
        """Reservations this node holds on relays."""
        return list(self.relay_client.reservations.values()) if self.relay_client else []

    def autonat_reports(self) -> list[AutoNATReport]:
        """Every AutoNAT answer this node got: which server said what, and the verdict after."""
        return list(self.autonat.reports) if self.autonat is not None else []

    async def probe_nat(self) -> list[AutoNATReport]:
        """Ask the connected AutoNAT servers now; their answers."""
        if self.autonat is None:
            raise errors.ConfigError(
                "enable_autonat", self.config.enable_autonat, "True to ask AutoNAT servers"
            )
        return await self.autonat.probe()

    def _require_dht(self, what: str) -> DHTDiscovery:
        if self.dht is None:
            raise errors.ConfigError(
                "enable_dht_discovery", self.config.enable_dht_discovery, f"True to {what}"
            )
        return self.dht

    @staticmethod
    def _content_key(key: str) -> str:
        if not isinstance(key, str) or not key or len(key) > 1024:
            raise errors.InvalidInput("content key", key, "a non-empty string of <= 1024 chars")
        return key

    async def provide(self, key: str) -> bool:
        """Announce on the DHT that this node provides ``key``; True when stored somewhere."""
        return await self._require_dht("provide content").provide(self._content_key(key))

    async def find_providers(self, key: str, count: int = 20) -> list[DiscoveredPeer]:
        """Peers that provide ``key`` according to the DHT, each listed once."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise errors.InvalidInput("provider count", count, "a whole number >= 1")
        found = await self._require_dht("find providers").find_providers(
            self._content_key(key), count
        )
        return [self.report_peer(p.peer_id, p.multiaddrs, "dht") for p in found]

    async def ping(self, peer_id: str | ID, count: int = 5) -> list[float]:
        """Round-trip times in ms to ``peer_id`` (dialled first when not connected)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise errors.InvalidInput("ping count", count, "a whole number >= 1")
        pid = parse_peer_id(peer_id)
        pid_text = pid.to_base58()
        if not self.is_connected(pid_text):
            await self.connect_peer(pid)
        try:
            rtts = await ping_rtts(self.host, pid, count)
        except Exception as exc:
            self._record("ping_failed", pid_text, repr(exc))
            raise errors.PingError(pid_text, _dial_failure_reason(exc)) from exc
        record, _ = self._record_for(pid_text)
        record.rtt_ms = statistics.median(rtts)
        record.last_seen = utcnow()
        self._record("ping", pid_text, f"median {record.rtt_ms:.3f} ms over {count}")
        return rtts

    async def disconnect(self, peer_id: str | ID) -> None:
        """Close every connection to ``peer_id``."""
        pid = parse_peer_id(peer_id)
        await self.host.disconnect(pid)

    # ------------------------------------------------------------ background work
    async def _sample_metrics(self) -> None:
        while True:
            self._history.add(self.get_metrics())
            await trio.sleep(self.config.metrics_history_interval)

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
            if not self.is_connected(peer_id):
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
                    self._record(kind, peer_id, f"{exc}; next try in {delay:g} s")
                    await trio.sleep(delay)
                    continue
            await trio.sleep(BOOTSTRAP_BACKOFF[0])


def _call_str(obj: Any, method: str) -> str | None:
    fn = getattr(obj, method, None)
    if not callable(fn):
        return None
    try:
        value = fn()
    except Exception:
        return None
    return str(value) if value else None


def _known_addrs(host: IHost, peer_id: ID) -> list[multiaddr.Multiaddr]:
    try:
        return list(host.get_peerstore().addrs(peer_id))
    except Exception:  # py-libp2p raises PeerStoreError for a peer it never saw
        return []


async def setup_universal_connectivity(
    host: IHost, config: ConnectivityConfig | None = None
) -> UniversalConnectivityManager:
    """Create a :class:`UniversalConnectivityManager` for ``host`` and start it."""
    manager = UniversalConnectivityManager(host, config)
    await manager.start()
    return manager
