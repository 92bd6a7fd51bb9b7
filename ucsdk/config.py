"""`ConnectivityConfig`: every knob of a ucsdk node, validated, with presets.

Example:
    >>> from ucsdk import ConnectivityConfig
    >>> cfg = ConnectivityConfig.preset("development", enable_dht_discovery=False)
    >>> cfg.listen_host, cfg.connect_to_bootstrap, cfg.pubsub_announce_interval
    ('127.0.0.1', False, 2.0)
    >>> cfg.resolved_listen_addrs()
    ['/ip4/127.0.0.1/tcp/0']
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import multiaddr

from ucsdk.errors import ConfigError

IPFS_BOOTSTRAP_PEERS: tuple[str, ...] = (
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
)
"""The public IPFS bootstrap peers, the default of ``ConnectivityConfig.bootstrap_peers``."""

DEFAULT_DISCOVERY_TOPIC = "_peer-discovery._p2p._pubsub"
UNIVERSAL_CONNECTIVITY_TOPIC = "universal-connectivity-browser-peer-discovery"

TRANSPORTS = ("tcp", "quic", "websocket", "webtransport", "webrtc-direct")
"""Transports a node can listen and dial on."""

_PLANNED_TRANSPORTS = ("webrtc",)

PRESETS = ("browser", "server", "private", "development")


def _wildcard_addr(transport: str, host: str) -> str:
    ip = ipaddress.ip_address(host)
    proto = "ip4" if ip.version == 4 else "ip6"
    if transport == "tcp":
        return f"/{proto}/{host}/tcp/0"
    if transport == "quic":
        return f"/{proto}/{host}/udp/0/quic-v1"
    if transport == "webtransport":
        return f"/{proto}/{host}/udp/0/quic-v1/webtransport"
    if transport == "webrtc-direct":
        return f"/{proto}/{host}/udp/0/webrtc-direct"
    return f"/{proto}/{host}/tcp/0/ws"


def transport_of(addr: str) -> str | None:
    """Name the ucsdk transport a multiaddr uses (``tcp``, ``quic``, ``websocket``, ...).

    >>> transport_of("/ip4/127.0.0.1/udp/4001/quic-v1")
    'quic'
    """
    parts = addr.split("/")
    if "p2p-circuit" in parts:
        return "relay"
    for name, transport in (
        ("webtransport", "webtransport"),
        ("webrtc-direct", "webrtc-direct"),
        ("webrtc", "webrtc"),
        ("quic-v1", "quic"),
        ("quic", "quic"),
        ("ws", "websocket"),
        ("wss", "websocket"),
        ("tcp", "tcp"),
    ):
        if name in parts:
            return transport
    return None


@dataclass
class ConnectivityConfig:
    """Configuration of a ucsdk node and its :class:`UniversalConnectivityManager`.

    Every field of the seed API is here; unknown or impossible values raise
    :class:`ucsdk.errors.ConfigError` naming the field and the value when the config is
    made: by the constructor, :meth:`preset`, :meth:`replace` and ``dataclasses.replace``.
    A field assigned afterwards is checked when :meth:`validate` runs again (``Node`` and
    the manager call it).

    Intervals and timeouts are in seconds. The callbacks run on the node's event-loop
    thread: keep them short; an exception in one is logged and counted, never fatal.

    Example:
        >>> from ucsdk import ConnectivityConfig
        >>> ConnectivityConfig(enable_mdns=False, transports=["tcp", "quic"]).transports
        ['tcp', 'quic']
        >>> ConnectivityConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0/ws"]).transports
        ['tcp', 'websocket']
        >>> ConnectivityConfig(max_connections=0)
        Traceback (most recent call last):
        ...
        ucsdk.errors.ConfigError: max_connections=0 is invalid: expected a whole number >= 1
    """

    # Discovery
    enable_mdns: bool = True
    enable_pubsub_discovery: bool = True
    enable_dht_discovery: bool = True
    dht_mode: str = "server"
    dht_random_walk: bool = True
    mdns_service_name: str = "p2p"
    mdns_interfaces: list[str] | None = None
    pubsub_discovery_topics: list[str] = field(default_factory=lambda: [DEFAULT_DISCOVERY_TOPIC])
    # Messaging: GossipSub for users' topics (and pubsub discovery) with strict signing;
    # the message id function ("default": from + seqno as go and the spec; "uc": sha256 of
    # the seqno's decimal text as the universal-connectivity js peers; "content": sha256 of
    # the data; or a callable taking the raw message); messages kept in node.messages();
    # the largest message sent or accepted; how many topics a node may subscribe to.
    enable_pubsub: bool = True
    pubsub_message_id: str | Callable[..., bytes] = "default"
    pubsub_history_size: int = 1000
    pubsub_max_message_size: int = 1048576
    pubsub_max_topics: int = 64
    # Users' streams (node.handle): inbound streams open at once, in total and per peer
    # (more are reset and counted); plain-function handlers running at once (each in a
    # worker thread while it runs).
    max_user_streams: int = 256
    max_user_streams_per_peer: int = 32
    max_blocking_handlers: int = 16
    # NAT traversal
    enable_autonat: bool = True
    enable_relay_client: bool = True
    enable_relay_server: bool = False
    enable_dcutr: bool = True
    # DCUtR punches only towards public addresses a peer names in CONNECT; True allows
    # loopback and private ones too (the development preset; never on a public host).
    dcutr_allow_private: bool = False
    # Private-to-private WebRTC (/webrtc): SDP over /webrtc-signaling/0.0.1 on a relayed
    # connection, then ICE with each side's public mapping from a STUN server ("host:port").
    # Candidates follow DCUtR's rule: public addresses only unless dcutr_allow_private.
    enable_webrtc: bool = False
    stun_servers: list[str] = field(default_factory=list)
    max_relay_reservations: int = 3
    max_relay_circuits: int = 256
    # Server: peers holding a reservation at once (go-libp2p's relays allow 128 too).
    max_relay_reservations_served: int = 128
    # Relay details: reserve automatically when AutoNAT says private; per-circuit limits a
    # relay server applies. go-libp2p uses 2 minutes and 128 KiB, for connections that carry
    # only a few protocols; ucsdk runs discovery over relayed connections too (about 4 KB/s
    # in the lab with 1 s announcements), so its data limit is 1 MiB each way.
    relay_auto_reserve: bool = True
    relay_limit_duration: int = 120
    relay_limit_data: int = 1048576
    # A relay server refuses a reservation from a peer whose IP it cannot learn (its
    # per-IP limit could not hold); True lets such peers reserve, sharing one IP's budget.
    relay_allow_unknown_ip: bool = False
    # How long (seconds) to keep trying to get back a reservation lost when its relay went
    # away (restart, link down, NAT mapping change): reconnect to the relay's own addresses
    # and reserve again, backing off from 1 s to 30 s. 0 turns it off.
    relay_rejoin_window: float = 600.0
    # Bootstrap
    bootstrap_peers: list[str] = field(default_factory=lambda: list(IPFS_BOOTSTRAP_PEERS))
    connect_to_bootstrap: bool = True
    dns_nameservers: list[str] | None = None
    # Discovered peers: dial them (up to max_connections) and keep at most this many.
    auto_dial: bool = True
    max_discovered_peers: int = 1000
    # Auto-dial limits against amplification (identities are free to make): at most
    # auto_dial_max_in_flight auto-dials at once; one IP:port is auto-dialled for at most
    # auto_dial_max_per_endpoint distinct announced identities per 10 minutes, one IP for at
    # most auto_dial_max_per_ip (identity, IP:port) pairs (the development preset raises it:
    # its peers all share 127.0.0.1).
    auto_dial_max_in_flight: int = 16
    auto_dial_max_per_endpoint: int = 2
    auto_dial_max_per_ip: int = 8
    # Connections
    max_connections: int = 300
    max_connections_per_peer: int = 1
    connection_timeout: float = 10.0
    # Dialling a peer's addresses: a TCP dial waits dial_tcp_delay after a QUIC dial to the
    # same host started; relayed (/p2p-circuit) dials wait dial_relay_delay after the direct
    # ones started when the peer has a public direct address; at most max_parallel_dials
    # dials run at once.
    dial_tcp_delay: float = 0.25
    dial_relay_delay: float = 0.5
    max_parallel_dials: int = 8
    # Observed addresses (identify's observedAddr): an address other peers report for us
    # counts only once observed_addr_min_observers distinct peers from at least
    # observed_addr_min_groups distinct IP groups (IPv4 /16, IPv6 /56) reported it; an
    # observation is kept observed_addr_ttl seconds after it was last reported.
    observed_addr_min_observers: int = 4
    observed_addr_min_groups: int = 2
    observed_addr_ttl: float = 1800.0
    # Advertised addresses: when False, loopback addresses are advertised only to peers on
    # loopback and private ones only to peers on the same private network; True advertises
    # every listen address to everyone.
    advertise_all_addrs: bool = False
    # Intervals
    mdns_query_interval: float = 60.0
    pubsub_announce_interval: float = 10.0
    autonat_query_interval: float = 300.0
    # AutoNAT details: serve others (dial-back from a separate host), how many servers must
    # agree before the verdict changes, from how many distinct IP groups (IPv4 /16, IPv6
    # /56; identities from one network count as one), and the wait before the first round.
    autonat_server: bool = True
    autonat_min_agreement: int = 3
    autonat_min_groups: int = 2
    autonat_boot_delay: float = 15.0
    # AutoNAT server limits: streams served at once in total and per peer (more are reset
    # before a byte is read), and the seconds a request has to arrive.
    autonat_server_max_streams: int = 16
    autonat_server_max_streams_per_peer: int = 2
    autonat_server_read_timeout: float = 5.0
    # AutoNAT v2 (per-address checks, nonce-verified dial-back; only with enable_autonat):
    # ask about each address (every autonat_query_interval, from autonat_boot_delay) and,
    # with autonat_server, serve others. Private and loopback addresses are checked and
    # dialled only with autonat_v2_allow_private (a lab or a LAN; never on the internet).
    enable_autonat_v2: bool = True
    autonat_v2_allow_private: bool = False
    # Callbacks
    on_peer_discovered: Callable[..., Any] | None = None
    on_connection_established: Callable[..., Any] | None = None
    on_connection_closed: Callable[..., Any] | None = None
    # Node. A listen address enables its transport: listen_addrs=["/ip4/.../tcp/0/ws"] adds
    # "websocket" to transports when the config is made (/quic-v1 adds "quic", /tcp/N
    # "tcp"); an address of no supported transport is an error.
    listen_addrs: list[str] | None = None
    listen_host: str = "0.0.0.0"
    transports: list[str] = field(default_factory=lambda: ["tcp"])
    identity_path: str | os.PathLike[str] | None = None
    # Observability
    max_events: int = 2000
    metrics_history_interval: float = 1.0
    metrics_history_size: int = 3600
    log_level: str | None = None
    # Background services (discovery, AutoNAT, relay, ...): a crashed one is restarted after
    # service_restart_backoff[0] seconds, doubling up to service_restart_backoff[1]; after
    # service_max_restarts consecutive crashes (none 60 s apart from healthy running) it
    # stays "failed".
    service_restart_backoff: tuple[float, float] = (0.5, 30.0)
    service_max_restarts: int = 10

    def __post_init__(self) -> None:
        self._enable_listen_transports()
        backoff = self.service_restart_backoff
        if isinstance(backoff, list) and len(backoff) == 2:  # e.g. from JSON
            self.service_restart_backoff = (backoff[0], backoff[1])
        self.validate()

    def _enable_listen_transports(self) -> None:
        """Add the transport of each listen address to ``transports`` (as a new list)."""
        listen, transports = self.listen_addrs, self.transports
        if not isinstance(listen, (list, tuple)) or not isinstance(transports, (list, tuple)):
            return  # validate() names the bad field
        used = {transport_of(str(addr)) for addr in listen}
        added = [t for t in TRANSPORTS if t in used and t not in transports]
        if added:
            self.transports = [*transports, *added]

    # ----------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ConnectivityConfig:
        """Return the configuration the seed's *Best Practices* recommend for ``name``.

        ``name`` is one of ``"browser"``, ``"server"``, ``"private"``, ``"development"``;
        keyword arguments override single fields afterwards.

        >>> ConnectivityConfig.preset("private").connect_to_bootstrap
        False
        """
        if name not in PRESETS:
            raise ConfigError("preset", name, f"one of {', '.join(PRESETS)}")
        base: dict[str, Any]
        if name == "browser":
            # Browser-like peers: AutoNAT, relay client, DCUtR and pubsub discovery;
            # never a relay server, no mDNS.
            base = dict(
                enable_mdns=False,
                enable_relay_server=False,
                enable_autonat=True,
                enable_relay_client=True,
                enable_dcutr=True,
                enable_pubsub_discovery=True,
                pubsub_discovery_topics=[UNIVERSAL_CONNECTIVITY_TOPIC, DEFAULT_DISCOVERY_TOPIC],
                dht_mode="client",
                transports=["tcp", "websocket"],
            )
        elif name == "server":
            # Everything on, including serving as a relay; a good bootstrap node.
            base = dict(
                enable_mdns=True,
                enable_pubsub_discovery=True,
                enable_dht_discovery=True,
                enable_autonat=True,
                enable_relay_client=True,
                enable_relay_server=True,
                enable_dcutr=True,
                # WebTransport, WebRTC-Direct and WebSocket are what browsers can dial.
                transports=["tcp", "quic", "websocket", "webtransport", "webrtc-direct"],
            )
        elif name == "private":
            # No public bootstrap; custom bootstrap peers are added by the caller.
            base = dict(connect_to_bootstrap=False, bootstrap_peers=[], enable_mdns=True)
        else:
            # Local development: loopback only, mDNS, short intervals.
            base = dict(
                connect_to_bootstrap=False,
                bootstrap_peers=[],
                enable_mdns=True,
                listen_host="127.0.0.1",
                mdns_query_interval=5.0,
                pubsub_announce_interval=2.0,
                autonat_query_interval=30.0,
                autonat_boot_delay=1.0,
                # Every server of a development setup is on loopback: one IP group.
                autonat_min_groups=1,
                dcutr_allow_private=True,
                autonat_v2_allow_private=True,
                auto_dial_max_per_ip=64,
                # log_level stays unset: in a notebook, debug records would flood the
                # cells. Pass log_level="DEBUG" for the seed's "enable all logging".
            )
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes: Any) -> ConnectivityConfig:
        """Return a validated copy with ``changes`` applied (unknown names are errors)."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise ConfigError(
                    key, changes[key], f"a ConnectivityConfig field ({_near(key, names)})"
                )
        return dataclasses.replace(self, **changes)  # __post_init__ validates

    # --------------------------------------------------------------- validation
    def validate(self) -> ConnectivityConfig:
        """Check every field; raise :class:`ConfigError` on the first bad one; return self."""
        for name in (
            "enable_mdns",
            "enable_pubsub_discovery",
            "enable_pubsub",
            "enable_dht_discovery",
            "enable_autonat",
            "enable_autonat_v2",
            "autonat_v2_allow_private",
            "enable_relay_client",
            "enable_relay_server",
            "enable_dcutr",
            "dcutr_allow_private",
            "enable_webrtc",
            "connect_to_bootstrap",
            "auto_dial",
            "dht_random_walk",
            "autonat_server",
            "relay_auto_reserve",
            "relay_allow_unknown_ip",
            "advertise_all_addrs",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "True or False")
        for name in (
            "connection_timeout",
            "mdns_query_interval",
            "pubsub_announce_interval",
            "autonat_query_interval",
            "metrics_history_interval",
            "observed_addr_ttl",
            "autonat_server_read_timeout",
        ):
            _positive_number(name, getattr(self, name))
        for name in (
            "autonat_boot_delay",
            "dial_tcp_delay",
            "dial_relay_delay",
            "relay_rejoin_window",
        ):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < float("inf"):
                raise ConfigError(name, value, "a number of seconds >= 0")
        for name, minimum in (
            ("max_connections", 1),
            ("max_connections_per_peer", 1),
            ("max_relay_reservations", 0),
            ("max_relay_circuits", 0),
            ("max_relay_reservations_served", 1),
            ("max_events", 1),
            ("max_discovered_peers", 1),
            ("metrics_history_size", 1),
            ("autonat_min_agreement", 1),
            ("autonat_min_groups", 1),
            ("autonat_server_max_streams", 1),
            ("autonat_server_max_streams_per_peer", 1),
            ("relay_limit_duration", 1),
            ("relay_limit_data", 1),
            ("max_parallel_dials", 1),
            ("auto_dial_max_in_flight", 1),
            ("auto_dial_max_per_endpoint", 1),
            ("auto_dial_max_per_ip", 1),
            ("observed_addr_min_observers", 1),
            ("observed_addr_min_groups", 1),
            ("service_max_restarts", 0),
            ("pubsub_history_size", 1),
            ("pubsub_max_message_size", 1),
            ("pubsub_max_topics", 1),
            ("max_user_streams", 1),
            ("max_user_streams_per_peer", 1),
            ("max_blocking_handlers", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(name, value, f"a whole number >= {minimum}")
        if self.observed_addr_min_groups > self.observed_addr_min_observers:
            raise ConfigError(
                "observed_addr_min_groups",
                self.observed_addr_min_groups,
                "a whole number <= observed_addr_min_observers "
                f"({self.observed_addr_min_observers})",
            )
        if self.autonat_min_groups > self.autonat_min_agreement:
            raise ConfigError(
                "autonat_min_groups",
                self.autonat_min_groups,
                f"a whole number <= autonat_min_agreement ({self.autonat_min_agreement})",
            )
        backoff = self.service_restart_backoff
        if (
            not isinstance(backoff, (tuple, list))
            or len(backoff) != 2
            or not all(_is_number(v) and math.isfinite(v) for v in backoff)
            or not 0 < backoff[0] <= backoff[1]
        ):
            raise ConfigError(
                "service_restart_backoff",
                backoff,
                "(first, largest) seconds with 0 < first <= largest",
            )
        for name in ("on_peer_discovered", "on_connection_established", "on_connection_closed"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(name, value, "a callable or None")
        message_id = self.pubsub_message_id
        if not callable(message_id) and message_id not in ("default", "uc", "content"):
            raise ConfigError(
                "pubsub_message_id", message_id, "'default', 'uc', 'content' or a callable"
            )
        if self.pubsub_max_message_size > 16 * 1048576:
            raise ConfigError(
                "pubsub_max_message_size", self.pubsub_max_message_size, "at most 16 MiB"
            )
        if self.enable_pubsub_discovery and not self.enable_pubsub:
            raise ConfigError("enable_pubsub", False, "True while enable_pubsub_discovery is True")
        if self.dht_mode not in ("server", "client"):
            raise ConfigError("dht_mode", self.dht_mode, "'server' or 'client'")
        if not isinstance(self.mdns_service_name, str) or not 0 < len(self.mdns_service_name) <= 15:
            raise ConfigError("mdns_service_name", self.mdns_service_name, "1 to 15 characters")
        if self.mdns_interfaces is not None:
            if isinstance(self.mdns_interfaces, str) or not isinstance(self.mdns_interfaces, list):
                raise ConfigError("mdns_interfaces", self.mdns_interfaces, "a list of IP addresses")
            for ip in self.mdns_interfaces:
                try:
                    ipaddress.ip_address(ip)
                except (ValueError, TypeError):
                    raise ConfigError("mdns_interfaces", ip, "an IP address") from None
        topics = self.pubsub_discovery_topics
        if isinstance(topics, str) or not isinstance(topics, (list, tuple)):
            raise ConfigError("pubsub_discovery_topics", topics, "a list of topic names")
        for topic in topics:
            if not isinstance(topic, str) or not topic:
                raise ConfigError("pubsub_discovery_topics", topic, "a non-empty topic name")
        if isinstance(self.stun_servers, str) or not isinstance(self.stun_servers, (list, tuple)):
            raise ConfigError("stun_servers", self.stun_servers, "a list of 'host:port' texts")
        for server in self.stun_servers:
            host, _, port = str(server).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError("stun_servers", server, "'host:port', e.g. '192.0.2.1:3478'")
        self._validate_transports()
        try:
            ipaddress.ip_address(self.listen_host)
        except (ValueError, TypeError):
            raise ConfigError(
                "listen_host", self.listen_host, "an IP address such as 0.0.0.0 or 127.0.0.1"
            ) from None
        if self.listen_addrs is not None:
            if isinstance(self.listen_addrs, str):
                raise ConfigError("listen_addrs", self.listen_addrs, "a list of multiaddrs")
            for addr in self.listen_addrs:
                _check_multiaddr("listen_addrs", addr)
                transport = transport_of(str(addr))
                if transport not in TRANSPORTS:
                    note = (
                        f"; {transport} is not supported yet"
                        if transport in _PLANNED_TRANSPORTS
                        else ""
                    )
                    raise ConfigError(
                        "listen_addrs",
                        addr,
                        f"an address of a supported transport ({', '.join(TRANSPORTS)}{note})",
                    )
                if transport not in self.transports:
                    raise ConfigError(
                        "listen_addrs",
                        addr,
                        f"an address of an enabled transport ({', '.join(self.transports)})",
                    )
        if isinstance(self.bootstrap_peers, str) or not isinstance(
            self.bootstrap_peers, (list, tuple)
        ):
            raise ConfigError("bootstrap_peers", self.bootstrap_peers, "a list of multiaddrs")
        for addr in self.bootstrap_peers:
            _check_multiaddr("bootstrap_peers", addr)
            if "/p2p/" not in str(addr) and "/ipfs/" not in str(addr):
                raise ConfigError("bootstrap_peers", addr, "a multiaddr ending in /p2p/<peer id>")
        if self.dns_nameservers is not None:
            if isinstance(self.dns_nameservers, str) or not isinstance(self.dns_nameservers, list):
                raise ConfigError("dns_nameservers", self.dns_nameservers, "a list of IP[:port]")
            for server in self.dns_nameservers:
                host, _, port = str(server).partition(":")
                try:
                    ipaddress.ip_address(host)
                    if port:
                        int(port)
                except ValueError:
                    raise ConfigError("dns_nameservers", server, "an IPv4 address[:port]") from None
        if self.identity_path is not None and not isinstance(
            self.identity_path, (str, os.PathLike)
        ):
            raise ConfigError("identity_path", self.identity_path, "a file path or None")
        if self.log_level is not None and self.log_level.upper() not in (
            "DEBUG",
            "INFO",
            "WARNING",
            "ERROR",
            "CRITICAL",
        ):
            raise ConfigError("log_level", self.log_level, "DEBUG, INFO, WARNING, ERROR or None")
        return self

    def _validate_transports(self) -> None:
        transports = self.transports
        if isinstance(transports, str) or not isinstance(transports, (list, tuple)):
            raise ConfigError("transports", transports, f"a list drawn from {TRANSPORTS}")
        if not transports:
            raise ConfigError("transports", transports, "at least one transport")
        for name in transports:
            if name in _PLANNED_TRANSPORTS:
                raise ConfigError(
                    "transports",
                    name,
                    f"one of {', '.join(TRANSPORTS)} ({name} is not supported yet)",
                )
            if name not in TRANSPORTS:
                raise ConfigError("transports", name, f"one of {', '.join(TRANSPORTS)}")

    def resolved_listen_addrs(self) -> list[str]:
        """The addresses the node will listen on: ``listen_addrs``, or one per transport."""
        if self.listen_addrs is not None:
            return [str(a) for a in self.listen_addrs]
        return [_wildcard_addr(t, self.listen_host) for t in self.transports]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(name: str, value: Any) -> None:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(name, value, "a positive number of seconds")


def _check_multiaddr(name: str, value: Any) -> None:
    try:
        multiaddr.Multiaddr(str(value)) if isinstance(value, str) else multiaddr.Multiaddr(value)
    except Exception as exc:
        raise ConfigError(name, value, f"a valid multiaddr ({exc})") from None


def _near(key: str, names: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(names), n=1)
    return f"did you mean {close[0]!r}?" if close else "no such field"
