"""The universal connectivity manager: one object that owns a node's connectivity.

It composes the parts in :mod:`ucsdk.connectivity` (recorder, supervisor, peer table,
connections, address book, identify, dialer, NAT coordination) with the protocol services
(discovery in :mod:`ucsdk.discovery`, NAT traversal in :mod:`ucsdk.nat`), wires them to
each other, and keeps the seed's API and names. It runs on the host's trio event loop;
everything it hands out is an immutable snapshot.

It is longer than the other modules (~550 lines) because it is the seed's whole async API:
most methods are a few lines that hand a call to the part that owns the job.

Example (inside trio, with a host you built and started yourself):
    >>> import trio, multiaddr
    >>> from ucsdk import ConnectivityConfig, setup_universal_connectivity
    >>> from ucsdk.host import build_host
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
import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from ucsdk import errors
from ucsdk._service import Service, ServiceHealth
from ucsdk.addresses import AddressInfo, ip_of, parse_multiaddr, parse_peer_id, split_p2p
from ucsdk.config import ConnectivityConfig, transport_of
from ucsdk.connectivity.addressbook import AddressBook
from ucsdk.connectivity.connections import ConnectionTracker
from ucsdk.connectivity.diagnosis import Diagnosis, NatReport, classify_nat, diagnose_paths
from ucsdk.connectivity.dialer import Dialer, dial_failure_reason
from ucsdk.connectivity.identify import IdentifyService
from ucsdk.connectivity.natcoord import NatCoordinator
from ucsdk.connectivity.peertable import PeerTable
from ucsdk.connectivity.recorder import Recorder
from ucsdk.connectivity.supervisor import Supervisor
from ucsdk.diagnostics import (
    ResourceUsage,
    count_trio_tasks,
    process_resources,
    trio_task_names,
)
from ucsdk.discovery.dht import DHTDiscovery
from ucsdk.discovery.mdns import MDNSService
from ucsdk.discovery.pubsub import PubsubPeerDiscovery
from ucsdk.host import (
    GuardedStreams,
    disable_auto_dial,
    guard_stream_handlers,
    interface_ipv4_addresses,
    webrtc_direct_of,
    webtransport_of,
)
from ucsdk.messaging.pubsub import Message, PubsubService, TopicInfo
from ucsdk.messaging.streams import Stream, StreamService, check_protocol
from ucsdk.metrics import ConnectivityMetrics, Event, utcnow
from ucsdk.nat.autonat import AutoNAT, AutoNATReport
from ucsdk.nat.autonat_v2 import AutoNATv2, Check
from ucsdk.nat.dcutr import DCUtR, HolePunchResult
from ucsdk.nat.relay import CircuitRelayClient, CircuitRelayServer, Reservation
from ucsdk.peers import ConnectionInfo, DialAttempt, DiscoveredPeer, PeerInfo, PeerRecord
from ucsdk.protocols import ping_rtts
from ucsdk.transports.webrtc import WebRTCDirect, webrtc_certificate
from ucsdk.transports.webrtc_private import WebRTCPrivate
from ucsdk.transports.webtransport import WebTransportTransport

logger = logging.getLogger("UniversalConnectivity")

# The protocol services, by the attribute the seed names them with and the prefix their
# dropped-message counters carry in the metrics.
_SERVICES = (
    ("pubsub", "pubsub"),
    ("pubsub_discovery", "pubsub"),
    ("dht", "dht"),
    ("relay_server", "relay"),
    ("relay_client", "relay_client"),
    ("dcutr", "dcutr"),
    ("webrtc", "webrtc_signaling"),
    ("autonat", "autonat"),
    ("autonat_v2", "autonat_v2"),
    ("mdns", "mdns"),
)

__all__ = [
    "UniversalConnectivityManager",
    "parse_multiaddr",
    "parse_peer_id",
    "setup_universal_connectivity",
    "split_p2p",
]


class UniversalConnectivityManager(Service):
    """Owns a host's connectivity: connections, peers, dial strategy, events, metrics.

    ``start()`` registers with the host's network and starts every service under the
    supervisor; ``stop()`` stops them (last started first) and waits for every task. The
    host itself stays yours (start it before, close it after).

    Discovery (pubsub, mDNS, DHT) and NAT traversal (AutoNAT, relay, DCUtR) are the
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
        self.service_name = "manager"
        self.local_peer_id = host.get_id().to_base58()
        cfg = self.config
        self.recorder = Recorder(cfg.max_events, cfg.metrics_history_size)
        self.supervisor = Supervisor(
            self.recorder,
            restart_backoff=tuple(cfg.service_restart_backoff),  # type: ignore[arg-type]
            max_restarts=cfg.service_max_restarts,
        )
        # The manager's own background work (metrics sampling, awaited user callbacks,
        # closing duplicate connections) is supervised like its services.
        self.restart_backoff = self.supervisor.restart_backoff
        self.max_restarts = self.supervisor.max_restarts
        self.on_failure = self.supervisor.failed
        self.peers = PeerTable(
            self.recorder, self.local_peer_id, cfg.max_discovered_peers, cfg.on_peer_discovered
        )
        self.connections = ConnectionTracker(
            host,
            self.peers,
            self.recorder,
            on_established=cfg.on_connection_established,
            on_closed=cfg.on_connection_closed,
        )
        self.addresses = AddressBook(
            host,
            min_observers=cfg.observed_addr_min_observers,
            min_groups=cfg.observed_addr_min_groups,
            ttl=cfg.observed_addr_ttl,
            advertise_all=cfg.advertise_all_addrs,
        )
        self.identify = IdentifyService(
            host, self.peers, self.connections, self.addresses, self.recorder
        )
        self.dialer = Dialer(host, cfg, self.peers, self.connections, self.recorder)
        self.nat = NatCoordinator(self.recorder, auto_reserve=cfg.relay_auto_reserve)
        self.recorder.spawn = self.spawn
        self.connections.spawn = self.spawn
        self.streams = StreamService(
            host,
            max_streams=cfg.max_user_streams,
            max_streams_per_peer=cfg.max_user_streams_per_peer,
            max_blocking_handlers=cfg.max_blocking_handlers,
        )
        self._wire()
        # The protocol services (the seed's attribute names); set while running.
        self.pubsub: PubsubService | None = None
        """Users' topics and the GossipSub router pubsub discovery shares."""
        self.pubsub_discovery: PubsubPeerDiscovery | None = None
        self.mdns: MDNSService | None = None
        self.dht: DHTDiscovery | None = None
        self.autonat: AutoNAT | None = None
        self.autonat_v2: AutoNATv2 | None = None
        self.relay_client: CircuitRelayClient | None = None
        self.relay_server: CircuitRelayServer | None = None
        self.dcutr: DCUtR | None = None
        self.webrtc: WebRTCPrivate | None = None
        self._dropped_by_services: Counter[str] = Counter()
        self._stream_guard: GuardedStreams | None = None
        self.webtransport: WebTransportTransport | None = webtransport_of(host)
        self.webrtc_direct: WebRTCDirect | None = webrtc_direct_of(host)
        """ucsdk's WebTransport transport when it is enabled (``stats()``, ``rejections``)."""

    def _wire(self) -> None:
        """Connect the parts' listeners: the event flow of the node, in one place."""
        self.peers.listeners.append(self.dialer.consider)
        self.connections.listeners.append(self.nat.on_connection)
        self.identify.listeners.append(self.nat.on_identified)
        self.identify.listeners.append(self._add_to_dht)
        self.nat.is_connected = self.peers.is_connected
        self.nat.is_identified = lambda peer: bool(
            (record := self.peers.get(peer)) is not None and record.protocols
        )
        self.nat.has_direct = lambda peer: any(
            not c.relayed for c in self.connections.of_peer(peer)
        )
        self.dialer.known_relays = self.nat.connected_relays
        self.addresses.circuit_source = self._circuit_addrs
        self.addresses.audience = self.connections.direct_remotes

    def _circuit_addrs(self) -> list[str]:
        """Our circuit addresses on the relays we hold reservations on; with WebRTC on,
        each also with ``/webrtc`` (the spec's way of saying "signal WebRTC through me")."""
        if self.relay_client is None:
            return []
        circuits = list(self.relay_client.circuit_addrs())
        if self.webrtc is None:
            return circuits
        return [*circuits, *(f"{c}/webrtc" for c in circuits)]

    @property
    def version(self) -> int:
        """Grows by one on every change; views poll it to know when to redraw."""
        return self.recorder.version

    # ----------------------------------------------------------------- life cycle
    async def _on_start(self) -> None:
        await disable_auto_dial(self.host)
        self._stream_guard = guard_stream_handlers(self.host)
        self.addresses.install()
        self.connections.attach()
        self.recorder.record("started", None, f"manager started on {self.local_peer_id}")
        try:
            await self._start_services()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._stop_parts()
            raise

    async def _start_services(self) -> None:
        cfg, host, supervisor = self.config, self.host, self.supervisor
        await supervisor.start("identify", self.identify)
        await supervisor.start("dialer", self.dialer)
        await supervisor.start("nat", self.nat)
        await supervisor.start("streams", self.streams)
        if cfg.enable_pubsub:
            pubsub = PubsubService(
                host,
                message_id=cfg.pubsub_message_id,
                history=cfg.pubsub_history_size,
                max_message_size=cfg.pubsub_max_message_size,
                max_topics=cfg.pubsub_max_topics,
            )
            await supervisor.start("gossipsub", pubsub)
            self.pubsub = pubsub
        if cfg.enable_pubsub_discovery and self.pubsub is not None:
            messaging = self.pubsub
            discovery = PubsubPeerDiscovery(
                host,
                topics=cfg.pubsub_discovery_topics,
                interval=cfg.pubsub_announce_interval,
                addrs=self._announced_addrs,
                pubsub_source=lambda: messaging.pubsub,
                **self._discovery_wiring("pubsub"),
            )
            await supervisor.start("pubsub", discovery)
            self.pubsub_discovery = discovery
        if cfg.enable_dht_discovery:
            dht = DHTDiscovery(
                host,
                mode=cfg.dht_mode,
                random_walk=cfg.dht_random_walk,
                **self._discovery_wiring("dht"),
            )
            await supervisor.start("dht", dht)
            self.dht = self.dialer.dht = dht
        if cfg.enable_relay_server:
            server = CircuitRelayServer(
                host,
                max_circuits=cfg.max_relay_circuits,
                max_reservations=cfg.max_relay_reservations_served,
                limit_duration=cfg.relay_limit_duration,
                limit_data=cfg.relay_limit_data,
                allow_unknown_ip=cfg.relay_allow_unknown_ip,
                on_event=self.nat.relay_event,
            )
            await supervisor.start("relay_server", server)
            self.relay_server = server
        if cfg.enable_relay_client:
            client = CircuitRelayClient(
                host,
                max_reservations=cfg.max_relay_reservations,
                on_event=self.nat.relay_event,
                rejoin_window=cfg.relay_rejoin_window,
            )
            await supervisor.start("relay_client", client)
            self.relay_client = self.dialer.relay_client = self.nat.relay_client = client
        if cfg.enable_dcutr:
            dcutr = DCUtR(
                host,
                public_ips=self.addresses.public_ips,
                dial_timeout=min(5.0, cfg.connection_timeout),
                on_result=self.nat.on_hole_punch,
                transports=[t for t in cfg.transports if t in ("tcp", "quic")],
                allow_private=cfg.dcutr_allow_private,
            )
            await supervisor.start("dcutr", dcutr)
            self.dcutr = self.nat.dcutr = dcutr
        if cfg.enable_webrtc:
            webrtc = WebRTCPrivate(
                host,
                # The same key-derived certificate as WebRTC-Direct's (derived once).
                self.webrtc_direct.certificate
                if self.webrtc_direct is not None
                else webrtc_certificate(host.get_private_key().to_bytes()),
                stun_servers=cfg.stun_servers,
                allow_private=cfg.dcutr_allow_private,
                timeout=max(10.0, cfg.connection_timeout),
            )
            await supervisor.start("webrtc", webrtc)
            self.webrtc = self.dialer.webrtc = webrtc
        if cfg.enable_autonat:
            autonat = AutoNAT(
                host,
                query_interval=cfg.autonat_query_interval,
                serve=cfg.autonat_server,
                min_agreement=cfg.autonat_min_agreement,
                min_groups=cfg.autonat_min_groups,
                boot_delay=cfg.autonat_boot_delay,
                max_streams=cfg.autonat_server_max_streams,
                max_streams_per_peer=cfg.autonat_server_max_streams_per_peer,
                read_timeout=cfg.autonat_server_read_timeout,
                on_report=self.nat.on_autonat_report,
                dial_timeout=cfg.connection_timeout,
                candidate_addrs=self.autonat_candidates,
                on_status_change=self.nat.on_nat_status,
            )
            await supervisor.start("autonat", autonat)
            self.autonat = self.nat.autonat = autonat
        if cfg.enable_autonat and cfg.enable_autonat_v2:  # enable_autonat=False: none at all
            autonat_v2 = AutoNATv2(
                host,
                serve=cfg.autonat_server,
                allow_private=cfg.autonat_v2_allow_private,
                dial_timeout=cfg.connection_timeout,
                read_timeout=cfg.autonat_server_read_timeout,
                max_streams=cfg.autonat_server_max_streams,
                max_streams_per_peer=cfg.autonat_server_max_streams_per_peer,
                check_interval=cfg.autonat_query_interval,
                boot_delay=cfg.autonat_boot_delay,
                min_agreement=cfg.autonat_min_agreement,
                candidate_addrs=self.autonat_candidates,
                # One dial-back host for both versions (its own identity and ports).
                dial_back_host=self.autonat.dial_back_host if self.autonat else None,
                on_check=self._on_autonat_v2_check,
            )
            await supervisor.start("autonat_v2", autonat_v2)
            self.autonat_v2 = self.nat.autonat_v2 = autonat_v2
        if cfg.enable_mdns:
            mdns = MDNSService(
                host,
                service_name=cfg.mdns_service_name,
                query_interval=cfg.mdns_query_interval,
                interfaces=cfg.mdns_interfaces,
                **self._discovery_wiring("mdns"),
            )
            # No multicast-capable interface, a port in use, ...: the node works without.
            if await supervisor.start("mdns", mdns, required=False):
                self.mdns = mdns
            else:
                self.recorder.record("mdns_unavailable", None, mdns.health().last_error or "")

    def _discovery_wiring(self, source: str) -> dict[str, Any]:
        """What every discovery service gets: our table as its listener, and its bound."""
        return {
            "on_peer_discovered": lambda peer: self.report_peer(
                peer.peer_id, peer.multiaddrs, source
            ),
            "max_peers": self.config.max_discovered_peers,
        }

    def _announced_addrs(self) -> list[str]:
        """What discovery announces: the broadcast choice of direct and circuit addresses."""
        return [*self.addresses.advertised(), *self.addresses.circuit_addrs()]

    async def _run(self, nursery: trio.Nursery) -> None:
        while True:
            self.recorder.sample(self.get_metrics())
            await trio.sleep(self.config.metrics_history_interval)

    async def _stop_parts(self) -> None:
        await self.supervisor.stop_all()
        # What the services dropped outlives them in the metrics.
        self._dropped_by_services.update(self._services_dropped())
        for name, _prefix in _SERVICES:
            setattr(self, name, None)
        self.dialer.dht = None
        self.dialer.relay_client = None
        self.dialer.webrtc = None
        self.nat.autonat = self.nat.relay_client = self.nat.dcutr = None
        self.nat.autonat_v2 = None
        self.connections.detach()
        self.addresses.uninstall()

    async def _on_stop(self) -> None:
        await self._stop_parts()
        self.recorder.record("stopped", None, "manager stopped")
        self.recorder.sample(self.get_metrics())

    def _services_dropped(self) -> Counter[str]:
        """What the running protocol services dropped, by ``<prefix>_<reason>``."""
        out: Counter[str] = Counter()
        for name, prefix in _SERVICES:
            service = getattr(self, name)
            if service is not None:
                out.update({f"{prefix}_{k}": v for k, v in service.dropped.items()})
        return out

    # ---------------------------------------------------------------- snapshots
    def get_metrics(self) -> ConnectivityMetrics:
        """A snapshot of the counters (see :class:`ConnectivityMetrics`)."""
        recorder, nat = self.recorder, self.nat
        dropped = Counter(recorder.invalid_kinds)
        dropped.update(self._dropped_by_services)
        if self._stream_guard is not None:
            dropped.update({f"stream_handler_{k}": v for k, v in self._stream_guard.errors.items()})
        dropped.update(self._services_dropped())
        if self.webtransport is not None:
            refused = self.webtransport.rejections
            dropped.update({f"webtransport_{k}": v for k, v in refused.items()})
        if self.webrtc_direct is not None:
            refused = self.webrtc_direct.rejections
            dropped.update({f"webrtc_{k}": v for k, v in refused.items()})
        dropped.update({f"dialer_{k}": v for k, v in self.dialer.dropped.items()})
        dropped.update({f"streams_{k}": v for k, v in self.streams.dropped.items()})
        active, relayed = self.connections.active(), self.connections.relayed()
        return ConnectivityMetrics(
            total_peers_discovered=self.peers.discovered_total,
            total_connections_established=recorder.established,
            total_connections_failed=recorder.failed,
            active_connections=active,
            relay_connections=relayed,
            direct_connections=active - relayed,
            nat_status=nat.nat_status,
            nat_confidence=self.autonat.confidence if self.autonat is not None else 0,
            dcutr_success_rate=nat.success_rate(),
            last_updated=recorder.changed_at,
            callback_errors=recorder.callback_errors,
            dcutr_attempts=nat.dcutr_attempts,
            dcutr_successes=nat.dcutr_successes,
            invalid_messages=recorder.invalid_messages + sum(dropped.values()),
            invalid_message_kinds=dict(dropped),
            peers_evicted=self.peers.evicted,
        )

    def get_discovered_peers(self) -> list[DiscoveredPeer]:
        """Every peer heard of, by any mechanism, oldest first."""
        return self.peers.snapshots()

    def get_peer(self, peer_id: str) -> DiscoveredPeer | None:
        record = self.peers.get(peer_id)
        return record.snapshot() if record else None

    def get_connections(self) -> list[ConnectionInfo]:
        """Every open connection, with its negotiated security and muxer."""
        return self.connections.rows()

    def get_events(self) -> list[Event]:
        return self.recorder.events()

    def get_metrics_history(self) -> list[ConnectivityMetrics]:
        return self.recorder.history()

    def get_services(self) -> list[ServiceHealth]:
        """The manager and every background service: state, restarts, last error."""
        return [self.health(), *self.supervisor.health()]

    def get_addresses(self) -> list[AddressInfo]:
        """This node's listen, observed and circuit addresses, and which are advertised."""
        return self.addresses.rows()

    def get_own_addrs(self) -> list[str]:
        """This node's direct addresses, public first, then private, then loopback."""
        return self.addresses.own_addrs()

    def get_dial_attempts(self) -> list[DialAttempt]:
        """Every address the dialer tried (the newest 1000)."""
        return self.dialer.attempts()

    def get_hole_punches(self) -> list[HolePunchResult]:
        """Every hole-punch outcome this node took part in."""
        return self.nat.hole_punches()

    def resources(self, detail: bool = False) -> ResourceUsage:
        """The process's open fds, threads, trio tasks and resident memory, now (call it on
        the node's loop; see :mod:`ucsdk.diagnostics`); ``detail`` adds the tasks by name."""
        return process_resources(trio_task_names() if detail else count_trio_tasks())

    def is_connected(self, peer_id: str) -> bool:
        return self.peers.is_connected(peer_id)

    def get_nat_status(self) -> str:
        """``"public"``, ``"private"`` or ``"unknown"`` (``"unknown"`` until AutoNAT runs)."""
        return self.nat.nat_status

    # ------------------------------------------------------------ peers & events
    def report_peer(self, peer_id: str, addrs: Sequence[str], source: str) -> DiscoveredPeer:
        """Merge what a discovery mechanism learnt about a peer into the table."""
        return self.peers.report(peer_id, addrs, source)

    def count_invalid_message(self, what: str, peer_id: str | None = None) -> None:
        """Count (and log at debug) a malformed message from the network."""
        self.recorder.count_invalid(what, peer_id)

    async def _add_to_dht(self, peer_id: ID, record: PeerRecord) -> None:
        if self.dht is not None and any("/kad/" in p for p in record.protocols):
            await self.dht.add_peer(peer_id)

    # ------------------------------------------------------------------- dialling
    async def connect(self, addr: str | multiaddr.Multiaddr) -> PeerInfo:
        """Connect to a full multiaddr (ending in ``/p2p/<peer id>``), that address only;
        raise on failure. (``dial_peer`` is the call that tries every way it knows.)"""
        maddr = parse_multiaddr(addr)
        transport_addr, peer_id = split_p2p(maddr)
        if peer_id is None:
            raise errors.InvalidMultiaddr(str(addr), "it must end in /p2p/<peer id>")
        await self.dialer.connect_peer(peer_id, [str(transport_addr)], exact=True)
        return self.peer_info(peer_id)

    def peer_info(self, peer_id: str) -> PeerInfo:
        record = self.peers.get(peer_id)
        if record is None:
            raise errors.PeerNotFound(peer_id)
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
        """The dial strategy (see :mod:`ucsdk.connectivity.dialer`); returns the peer on
        success, raises :class:`DialError` when every way failed."""
        return await self.dialer.connect_peer(peer_id, addrs, use_relay=use_relay, source=source)

    async def dial_peer(
        self, peer_id: str, addrs: Sequence[str] | None = None, use_relay: bool = True
    ) -> bool:
        """The seed's dial call: ``True`` when connected, ``False`` when every way failed.

        ``addrs`` are tried together with every address already known for the peer.
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
        record = self.peers.get(pid.to_base58())
        if record is not None and record.multiaddrs:
            return record.snapshot()
        if self.dht is not None:
            with _failing_as(f"DHT lookup of {pid.to_base58()}"):
                found = await self.dht.find_peer(pid)
            if found is not None:
                return self.report_peer(found.peer_id, found.multiaddrs, "dht")
        raise errors.PeerNotFound(pid.to_base58())

    # ------------------------------------------------------------------- AutoNAT
    def autonat_candidates(self) -> list[str]:
        """Addresses to ask AutoNAT servers to dial: our listen addresses, and each IP
        other peers saw us come from combined with our listen ports (a NAT that keeps
        ports maps them there, and a port forward makes them reachable).

        Unconfirmed observations are asked about too: AutoNAT is how they are tested,
        and a server dials only the IP it sees us come from, so a lying observer cannot
        point it elsewhere.
        """
        own = self.addresses.listen_addrs()
        out = list(own)
        observed_ips: list[tuple[str, str]] = []
        for addr in self.addresses.observed_addrs():
            parts = addr.split("/")
            if len(parts) > 2 and (parts[1], parts[2]) not in observed_ips:
                observed_ips.append((parts[1], parts[2]))
        for proto, ip in observed_ips:
            for addr in own:
                parts = addr.split("/")
                # Same address family only: an IPv4 observation says nothing about IPv6.
                if len(parts) > 3 and parts[1] == proto and parts[2] != ip:
                    guess = "/".join([*parts[:2], ip, *parts[3:]])
                    if guess not in out:
                        out.append(guess)
        return out

    def autonat_reports(self) -> list[AutoNATReport]:
        """Every AutoNAT answer this node got: which server said what, and the verdict after."""
        return list(self.autonat.reports) if self.autonat is not None else []

    def autonat_v2_checks(self) -> list[Check]:
        """Every AutoNAT v2 check this node made (newest last)."""
        return list(self.autonat_v2.checks) if self.autonat_v2 is not None else []

    def reachability(self) -> list[dict[str, Any]]:
        """Is each address reachable? One row for the node from AutoNAT v1 (``addr``
        ``None``: v1 judges the node, not an address), then one per address AutoNAT v2
        checked. Columns: ``addr``, ``status``, ``confidence``, ``servers``,
        ``last_checked``, ``protocol``."""
        rows: list[dict[str, Any]] = []
        if self.autonat is not None:
            counted = [r for r in self.autonat.reports if r.counted]
            rows.append(
                {
                    "addr": None,
                    "status": self.autonat.nat_status,
                    "confidence": self.autonat.confidence,
                    "servers": len({r.server for r in counted}),
                    "last_checked": self.autonat.reports[-1].time if self.autonat.reports else None,
                    "protocol": "v1",
                }
            )
        if self.autonat_v2 is not None:
            rows.extend(self.autonat_v2.reachability())
        return rows

    def _on_autonat_v2_check(self, check: Check) -> None:
        """A v2 check: recorded, and a verified address advertised (one that failed, no
        longer)."""
        self.nat.on_autonat_v2_check(check)
        about = check.addr or check.asked
        if about is not None and check.reachable is not None:
            self.addresses.set_verified(about, check.reachable)

    def nat_type(self) -> NatReport:
        """The NAT this node is behind, read from what its peers see (identify's observed
        addresses over QUIC) and what AutoNAT says; see :mod:`ucsdk.connectivity.diagnosis`."""
        evidence = []
        for addr, observer, observer_ip, local in self.addresses.observed.observations(
            now=time.monotonic()
        ):
            kind, port, ip = transport_of(addr), _port_of(addr), ip_of(addr)
            if kind in ("tcp", "quic") and port is not None and ip is not None:
                evidence.append((kind, observer, observer_ip, ip, port, local))
        return classify_nat(
            evidence, own_ips=interface_ipv4_addresses(), reachable=self._reachable()
        )

    async def diagnose(
        self, peer_id: str | ID, probe: bool = False, timeout: float = 15.0
    ) -> Diagnosis:
        """Why can (or can't) this node reach ``peer_id``? Each path (direct per address,
        relayed per relay, DCUtR per transport, WebRTC), tried or not, how it ended and
        why; then a verdict and what would help. ``probe`` dials the peer first (the dial
        strategy, relay included) and waits, within ``timeout`` s, for the connection to
        go direct or a hole punch to end. :class:`ucsdk.errors.PeerNotFound` for a peer
        this node knows nothing of; :class:`ucsdk.errors.InvalidInput` for a malformed id.
        """
        pid = parse_peer_id(peer_id)
        text = pid.to_base58()
        if text == self.peers.local_peer_id:
            raise errors.InvalidInput("peer_id", text, "another peer's id, not this node's")
        if self.peers.get(text) is None and not self.connections.of_peer(text):
            raise errors.PeerNotFound(text)
        if probe:
            punches_before = len(self.nat.hole_punches())
            with trio.move_on_after(timeout):
                try:
                    await self.connect_peer(text, use_relay=True)
                except errors.DialError:
                    pass
                else:
                    while not any(
                        not c.relayed for c in self.connections.of_peer(text)
                    ) and not any(
                        p.peer_id == text for p in self.nat.hole_punches()[punches_before:]
                    ):
                        await trio.sleep(0.1)
        record = self.peers.get(text)
        return diagnose_paths(
            text,
            known_addrs=list(record.multiaddrs) if record is not None else [],
            attempts=self.dialer.attempts(),
            hole_punches=self.nat.hole_punches(),
            connections=self.connections.of_peer(text),
            nat=self.nat_type(),
        )

    def _reachable(self) -> bool | None:
        """AutoNAT's say: v2 reached an address (True) or none of them (False), else v1."""
        v2 = self.autonat_v2.reachability() if self.autonat_v2 is not None else []
        statuses = {row["status"] for row in v2}
        if "public" in statuses:
            return True
        if statuses == {"private"}:
            return False
        status = self.autonat.nat_status if self.autonat is not None else "unknown"
        return {"public": True, "private": False}.get(status)

    async def check_reachability(self) -> list[dict[str, Any]]:
        """Run an AutoNAT v2 round now (every candidate address with the connected
        servers), then :meth:`reachability`."""
        if self.autonat_v2 is None:
            name = "enable_autonat" if not self.config.enable_autonat else "enable_autonat_v2"
            raise errors.ConfigError(
                name,
                getattr(self.config, name),
                "True to check addresses with AutoNAT v2 (it needs enable_autonat too)",
            )
        await self.autonat_v2.check_all()
        return self.reachability()

    async def probe_nat(self) -> list[AutoNATReport]:
        """Ask the connected AutoNAT servers now; their answers."""
        if self.autonat is None:
            raise errors.ConfigError(
                "enable_autonat", self.config.enable_autonat, "True to ask AutoNAT servers"
            )
        return await self.autonat.probe()

    # ------------------------------------------------------------------- relaying
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

    # ---------------------------------------------------------------------- DHT
    def _require_dht(self, what: str) -> DHTDiscovery:
        if self.dht is None:
            raise errors.ConfigError(
                "enable_dht_discovery", self.config.enable_dht_discovery, f"True to {what}"
            )
        return self.dht

    @staticmethod
    def _content_key(key: str) -> str:
        expected = "a non-empty string of <= 1024 chars that encodes as UTF-8"
        if not isinstance(key, str) or not key or len(key) > 1024:
            raise errors.InvalidInput("content key", key, expected)
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.InvalidInput("content key", key, expected) from None
        return key

    async def provide(self, key: str) -> bool:
        """Announce on the DHT that this node provides ``key``; True when stored somewhere."""
        dht = self._require_dht("provide content")
        key = self._content_key(key)
        with _failing_as(f"providing {key!r} on the DHT"):
            return await dht.provide(key)

    async def find_providers(self, key: str, count: int = 20) -> list[DiscoveredPeer]:
        """Peers that provide ``key`` according to the DHT, each listed once."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise errors.InvalidInput("provider count", count, "a whole number >= 1")
        dht = self._require_dht("find providers")
        key = self._content_key(key)
        with _failing_as(f"finding providers of {key!r} on the DHT"):
            found = await dht.find_providers(key, count)
        return [self.report_peer(p.peer_id, p.multiaddrs, "dht") for p in found]

    # ------------------------------------------------------------------- actions
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
            self.recorder.record("ping_failed", pid_text, repr(exc))
            raise errors.PingError(pid_text, dial_failure_reason(exc)) from exc
        record, _ = self.peers.record_for(pid_text)
        record.rtt_ms = statistics.median(rtts)
        record.last_seen = utcnow()
        self.recorder.record("ping", pid_text, f"median {record.rtt_ms:.3f} ms over {count}")
        return rtts

    async def disconnect(self, peer_id: str | ID) -> None:
        """Close every connection to ``peer_id``."""
        pid = parse_peer_id(peer_id)
        with _failing_as(f"disconnecting {pid.to_base58()}"):
            await self.host.disconnect(pid)

    # ------------------------------------------------------------------ messaging
    def _require_pubsub(self, what: str) -> PubsubService:
        if self.pubsub is None:
            raise errors.ConfigError("enable_pubsub", self.config.enable_pubsub, f"True to {what}")
        return self.pubsub

    async def subscribe(
        self,
        topic: str,
        on_message: Callable[[Message], Any] | None = None,
        validator: Callable[[Message], Any] | None = None,
    ) -> None:
        """Subscribe to a GossipSub topic (see :meth:`PubsubService.subscribe`)."""
        await self._require_pubsub("subscribe").subscribe(topic, on_message, validator)

    async def unsubscribe(self, topic: str) -> None:
        await self._require_pubsub("unsubscribe").unsubscribe(topic)

    async def publish(self, topic: str, data: bytes | str) -> str:
        """Sign and publish ``data`` on ``topic``; the message id (hex)."""
        return await self._require_pubsub("publish").publish(topic, data)

    def publish_nowait(self, topic: str, data: bytes | str) -> str:
        """:meth:`publish` for callbacks on the event loop: sent in the background."""
        return self._require_pubsub("publish").publish_nowait(topic, data)

    def get_topics(self) -> list[TopicInfo]:
        return self.pubsub.topics() if self.pubsub is not None else []

    def get_messages(self, topic: str | None = None) -> list[Message]:
        return self.pubsub.messages(topic) if self.pubsub is not None else []

    def handle(self, protocol: str, handler: Callable[..., Any]) -> None:
        """Serve ``protocol`` with ``handler(stream)`` (see :class:`StreamService`)."""
        self.streams.handle(protocol, handler)

    def unhandle(self, protocol: str) -> None:
        self.streams.unhandle(protocol)

    async def open_stream(self, peer_id: str | ID, protocol: str) -> Stream:
        """A stream to ``peer_id`` speaking ``protocol`` (the peer dialled first when
        not connected, by the dial strategy)."""
        check_protocol(protocol)
        pid = parse_peer_id(peer_id)
        if not self.is_connected(pid.to_base58()):
            await self.connect_peer(pid)
        return await self.streams.open(pid.to_base58(), protocol)


@contextlib.contextmanager
def _failing_as(operation: str) -> Iterator[None]:
    """py-libp2p's exceptions leave the block as :class:`OperationFailed` naming
    ``operation`` (the cause chained); ucsdk's own errors pass as they are."""
    try:
        yield
    except errors.UcsdkError:
        raise
    except Exception as exc:
        raise errors.OperationFailed(operation, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    """An exception as a reason: its type and first line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _port_of(addr: str) -> int | None:
    """The TCP or UDP port of a multiaddr string (``None`` if it has none)."""
    parts = addr.split("/")
    for index, part in enumerate(parts[:-1]):
        if part in ("tcp", "udp") and parts[index + 1].isdigit():
            return int(parts[index + 1])
    return None


async def setup_universal_connectivity(
    host: IHost, config: ConnectivityConfig | None = None
) -> UniversalConnectivityManager:
    """Create a :class:`UniversalConnectivityManager` for ``host`` and start it."""
    manager = UniversalConnectivityManager(host, config)
    await manager.start()
    return manager
