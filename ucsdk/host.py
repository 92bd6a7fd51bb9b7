"""Build a hardened py-libp2p host from a :class:`ucsdk.ConnectivityConfig`.

What ucsdk changes from ``libp2p.new_host()``'s defaults, and why (each is tested):

* security is Noise only: py-libp2p also accepts plaintext and SECIO, so a peer could
  talk to us unencrypted or through a broken handshake;
* Yamux is the preferred stream muxer (mplex only as a fallback for old peers);
* a refused dial fails at once instead of being retried three times over 0.7 s (the
  manager retries where that makes sense, e.g. bootstrap peers, with back-off);
* one connection per peer is dialled: with more, py-libp2p waits a 250 ms happy-eyeballs
  delay on every first connect even when the first address answers at once;
* a Noise message's write is whole: a task cancelled after it encrypted a message still
  sends it (py-libp2p's cancelled writes spent a nonce, or sent half a message, and the
  peer then closed the connection with every stream on it; see ``ucsdk._noise``);
* Yamux window credit is sent in batches, as go-yamux does, not after every read
  (see ``ucsdk._yamux``), and a closed Yamux connection does not linger 100 ms;
* a new stream's protocol is negotiated in one round trip (py-libp2p waits for two;
  see ``ucsdk._multiselect``);
* the ``libp2p`` logger propagates again (``import libp2p`` turns that off), so the
  user's logging configuration sees py-libp2p's records.

Example:
    >>> from ucsdk import ConnectivityConfig
    >>> from ucsdk.host import build_host
    >>> from ucsdk.identity import new_key_pair
    >>> host = build_host(ConnectivityConfig.preset("development"), new_key_pair())
    >>> sorted(str(p) for p in host.get_network().upgrader.security_multistream.transports)
    ['/noise']
"""

from __future__ import annotations

import array
import fcntl
import ipaddress
import logging
import os
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from ucsdk._multiselect import pipelined_negotiation
from ucsdk._noise import whole_noise_writes
from ucsdk._quic import fast_quic
from ucsdk._wire import close_quietly
from ucsdk._yamux import batched_window_updates, prompt_close
from ucsdk.addresses import split_p2p
from ucsdk.config import ConnectivityConfig, transport_of
from ucsdk.transports.webrtc import WebRTCDirect
from ucsdk.transports.webtransport import WebTransportTransport

SECURITY_PROTOCOLS = (str(NOISE_PROTOCOL_ID),)
MUXER_PROTOCOLS = (str(YAMUX_PROTOCOL_ID), str(MPLEX_PROTOCOL_ID))


# py-libp2p logs at ERROR what happens whenever a peer closes a connection while a stream
# on it is being opened or read (a normal event in a swarm): these loggers, these messages.
_ROUTINE_LOGGERS = (
    "libp2p.protocol_muxer.multiselect_client",
    "libp2p.host.basic_host",
    "libp2p.stream_muxer.yamux.yamux",
    "libp2p.kad_dht.peer_routing",
    "libp2p.kad_dht.kad_dht",
)
_ROUTINE_MARKERS = (
    "fail to read from multiselect communicator",
    "fail to write to multiselect communicator",
    "handshake read failed",
    "handshake write failed",
    "ConnectionClosedError",
    "ClosedResourceError",
    "Connection reset by peer",
    # The DHT asks a routing-table peer that has just disconnected (WARNING).
    "No valid connections available for peer",
)


class RoutineDisconnects(logging.Filter):
    """Shows py-libp2p's errors about peers that closed a connection only at DEBUG.

    They are the expected end of a connection, not faults; in a notebook they would fill
    cells with red text. With ``logging.getLogger("libp2p").setLevel(logging.DEBUG)`` they
    appear again, labelled DEBUG.

    Example:
        >>> record = logging.LogRecord("libp2p.host.basic_host", logging.ERROR, "", 0,
        ...     "Error in handle_incoming: ClosedResourceError", None, None)
        >>> RoutineDisconnects().filter(record)
        False
        >>> from libp2p.network.stream.exceptions import StreamEOF
        >>> eof = logging.LogRecord("libp2p.kad_dht.kad_dht", logging.WARNING, "", 0,
        ...     "Failed to read DHT message from stream: %s", (StreamEOF(),), None)
        >>> RoutineDisconnects().filter(eof)
        False
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # py-libp2p's DHT server logs a peer that closed its request stream (a clean
        # StreamEOF) as a failed read, at WARNING.
        clean_eof = isinstance(record.args, tuple) and any(
            isinstance(arg, EOFError) for arg in record.args
        )
        if not clean_eof and not any(marker in message for marker in _ROUTINE_MARKERS):
            return True
        if not logging.getLogger("libp2p").isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def restore_libp2p_logging() -> None:
    """Let the ``libp2p`` logger propagate to the root logger again.

    ``import libp2p`` sets ``propagate=False`` and level WARNING on it unless ``LIBP2P_DEBUG``
    is set; then py-libp2p manages its own handlers and we leave it alone.
    """
    if os.environ.get("LIBP2P_DEBUG"):
        return
    libp2p_logger = logging.getLogger("libp2p")
    libp2p_logger.propagate = True
    libp2p_logger.setLevel(logging.NOTSET)
    for name in _ROUTINE_LOGGERS:
        child = logging.getLogger(name)
        if not any(isinstance(f, RoutineDisconnects) for f in child.filters):
            child.addFilter(RoutineDisconnects())
    # This module forces INFO on itself, so a chatty log line every 30 s reached users.
    logging.getLogger("libp2p.network.auto_connector").setLevel(logging.NOTSET)


async def disable_auto_dial(host: IHost) -> None:
    """Stop py-libp2p's auto-connector on a running host.

    It dials every peer in the peerstore whenever the node has fewer connections than its
    watermarks, including addresses a remote merely claimed in identify. ucsdk dials only
    through its manager's strategy (and its discovery services), so this is turned off.
    """
    auto_connector = getattr(host.get_network(), "auto_connector", None)
    if auto_connector is not None and getattr(auto_connector, "_started", False):
        await auto_connector.stop()


class AdvertisedAddrs:
    """The host's ``addrs_factory`` (go-libp2p's ``AddrsFactory``): what ``get_addrs()``,
    and so identify and signed peer records, advertise.

    Until an address book attaches its ``source``, it advertises the listen addresses with
    wildcards (``0.0.0.0``) replaced by the interface addresses they stand for.
    """

    def __init__(self) -> None:
        self.source: Callable[[], list[str]] | None = None
        # py-libp2p asks for the addresses on every pubsub publish (its signed peer
        # record): parsing them each time cost ~60 us per message.
        self._parsed: tuple[tuple[str, ...], list[multiaddr.Multiaddr]] = ((), [])

    def __call__(self, candidates: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
        if self.source is not None:
            texts = tuple(self.source())
        else:
            out: list[str] = []
            for addr in candidates:
                out.extend(e for e in expand_wildcard(str(addr)) if e not in out)
            texts = tuple(out)
        if texts != self._parsed[0]:
            self._parsed = (texts, [multiaddr.Multiaddr(a) for a in texts])
        return list(self._parsed[1])


def set_addrs_source(host: IHost, source: Callable[[], list[str]] | None) -> None:
    """Make ``source`` decide what ``host`` advertises (``None``: back to the default).

    A host built by :func:`build_host` carries an :class:`AdvertisedAddrs`; any other
    py-libp2p ``BasicHost`` gets one in its ``addrs_factory`` slot.
    """
    hook: Any = getattr(host, "_addrs_factory", None)
    if not isinstance(hook, AdvertisedAddrs):
        hook = AdvertisedAddrs()
        host._addrs_factory = hook  # type: ignore[attr-defined]
    hook.source = source


class GuardedStreams:
    """The swarm's handler for inbound streams: the host's own dispatch, guarded.

    py-libp2p lets an exception raised by a protocol handler (its own or ours) escape into
    the swarm, which then ends every connection: one malformed frame from one peer stopped
    the node. Here such a stream is reset, the exception counted by type in ``errors``
    (the manager reports them as ``stream_handler_<type>`` in the metrics' invalid
    messages) and logged at debug; the node goes on.
    """

    def __init__(self, dispatch: Callable[[INetStream], Awaitable[None]]) -> None:
        self.dispatch = dispatch
        self.errors: Counter[str] = Counter()

    async def __call__(self, stream: INetStream) -> None:
        try:
            await self.dispatch(stream)
        except Exception as exc:
            self.errors[type(exc).__name__] += 1
            logging.getLogger(__name__).debug("a stream handler raised %r; stream reset", exc)
            await close_quietly(stream, reset=True)


def guard_stream_handlers(host: IHost) -> GuardedStreams:
    """Put the host's inbound streams behind :class:`GuardedStreams` (once)."""
    network: Any = host.get_network()
    current = getattr(network, "common_stream_handler", None)
    if isinstance(current, GuardedStreams):
        return current
    guard = GuardedStreams(host._swarm_stream_handler)  # type: ignore[attr-defined]
    network.set_stream_handler(guard)
    return guard


def build_host(config: ConnectivityConfig, key_pair: KeyPair) -> IHost:
    """Create (but do not start) a host with ucsdk's transport and security choices."""
    restore_libp2p_logging()
    whole_noise_writes()
    fast_quic()  # py-libp2p's QUIC sends and polls per datagram: see ucsdk._quic
    batched_window_updates()
    prompt_close()
    listen = [multiaddr.Multiaddr(a) for a in config.resolved_listen_addrs()]
    security = {
        NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    }
    # dicts keep order: multistream-select offers Yamux first.
    muxers = {YAMUX_PROTOCOL_ID: Yamux, MPLEX_PROTOCOL_ID: Mplex}
    connection_config = ConnectionConfig(
        max_connections=config.max_connections,
        high_watermark=config.max_connections,
        low_watermark=min(100, config.max_connections),
        min_connections=0,
        max_connections_per_peer=config.max_connections_per_peer,
        dial_timeout=config.connection_timeout,
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt=security,  # type: ignore[arg-type]
        muxer_opt=muxers,  # type: ignore[arg-type]
        listen_addrs=listen,
        enable_quic="quic" in config.transports,
        enable_websocket="websocket" in config.transports,
        enable_tcp="tcp" in config.transports,
        connection_config=connection_config,
        # ucsdk's address book decides what is advertised (observed addresses count only
        # when enough peers agree): py-libp2p's own observed-address manager stays off.
        addrs_factory=AdvertisedAddrs(),
        disable_identify_address_discovery=True,
    )
    # py-libp2p retries a refused dial three times with back-off (about 0.7 s); the
    # manager's dial strategy and bootstrap loop own retries, so a dial fails fast here.
    host.get_network().retry_config = RetryConfig(max_retries=0)  # type: ignore[attr-defined]
    if "webtransport" in config.transports:
        # py-libp2p 0.8.1's own WebTransport transport has no bounds on sessions (an
        # Initial packet makes state), never forgets closed ones and checks the Noise
        # certhashes only after its last message: ucsdk's replaces it.
        _replace_transport(host, "webtransport", WebTransportTransport(key_pair))
    if "webrtc-direct" in config.transports:
        # py-libp2p's WebRTC-Direct makes a new certificate each start (so a browser's
        # cached address stops working) and does not count what it refuses: ucsdk's
        # subclass derives the certificate from the host key and counts.
        _replace_transport(host, "webrtc-direct", WebRTCDirect(key_pair))
    # A stream's protocol negotiation in one round trip (see ucsdk._multiselect).
    pipelined_negotiation(host)
    guard_stream_handlers(host)
    end_inbound_handlers_with_their_connection(host)
    join_implicit_dials(host)
    return host


def join_implicit_dials(host: IHost) -> None:
    """Make a dial to a peer by address count as a dial in flight to that peer.

    py-libp2p's swarm lets a ``dial_peer`` (the one ``new_stream`` makes when a peer has
    no connection yet) wait for another ``dial_peer`` to the same peer, but not for a
    ``dial_addr``. So a stream opened while ucsdk's dialer was connecting to that peer,
    such as a DHT query to a peer the peerstore just learnt, dialled a second connection:
    a websocket ``connect`` under load ended with two connections in about 1 run in 3.
    Here ``dial_addr`` enters the swarm's table of dials in flight (one entry per peer,
    removed when the dial ends), so that ``dial_peer`` waits for it and then uses the
    connection it made. ``dial_addr`` itself still dials: a dial to a given address is
    asked for explicitly (a transport, a hole punch).
    """
    swarm: Any = host.get_network()
    in_flight = getattr(swarm, "_ongoing_dials", None)
    original = getattr(swarm, "dial_addr", None)
    if not isinstance(in_flight, dict) or original is None:
        return
    if getattr(original, "_ucsdk_joined", False):
        return

    async def dial_addr(addr: Any, peer_id: Any, *args: Any, **kwargs: Any) -> Any:
        if peer_id in in_flight:
            return await original(addr, peer_id, *args, **kwargs)
        done = in_flight[peer_id] = trio.Event()
        try:
            return await original(addr, peer_id, *args, **kwargs)
        finally:
            if in_flight.get(peer_id) is done:
                del in_flight[peer_id]
            done.set()

    dial_addr._ucsdk_joined = True  # type: ignore[attr-defined]
    swarm.dial_addr = dial_addr


def _replace_transport(host: IHost, protocol: str, transport: Any) -> None:
    """Put ucsdk's ``transport`` in place of py-libp2p's for ``protocol`` (new_host()
    adds py-libp2p's own for a listen address of that protocol)."""
    manager = host.get_network().transport_manager  # type: ignore[attr-defined]
    manager._transports = [
        t
        for t in manager.get_transports()
        if not type(t).__module__.startswith("libp2p.") or protocol not in t.protocols()
    ]
    manager.add_transport(transport)


_T = TypeVar("_T")


def _transport_of_type(host: IHost, kind: type[_T]) -> _T | None:
    manager = getattr(host.get_network(), "transport_manager", None)
    if manager is None:
        return None
    return next((t for t in manager.get_transports() if isinstance(t, kind)), None)


def webrtc_direct_of(host: IHost) -> WebRTCDirect | None:
    """The host's WebRTC-Direct transport (ucsdk's), when it has one."""
    return _transport_of_type(host, WebRTCDirect)


def webtransport_of(host: IHost) -> WebTransportTransport | None:
    """The host's WebTransport transport (ucsdk's), when it has one."""
    return _transport_of_type(host, WebTransportTransport)


# How often a finished inbound connection's handler notices that its socket is closed.
INBOUND_WATCH_INTERVAL = 1.0


def end_inbound_handlers_with_their_connection(host: IHost) -> None:
    """Let each inbound connection's handler task end when its connection closes.

    py-libp2p's swarm keeps the task that accepted an inbound connection waiting until the
    whole swarm stops (``manager.wait_finished()``, "intentional barrier"), and with it a
    slot of its inbound-connection limiter: every connection a peer opened and closed left
    one task behind for the node's lifetime (the soak bench saw +1 trio task per inbound
    connection, bench/soak.py). Here each such handler runs beside a watcher that cancels
    it once the connection's socket (TCP) or QUIC connection is closed.
    """
    swarm: Any = host.get_network()
    original = getattr(swarm, "_handle_inbound_connection", None)
    if original is None or getattr(original, "_ucsdk_bounded", False):
        return

    async def bounded(read_write_closer: Any, maddr: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when_closed, read_write_closer, nursery.cancel_scope)
            await original(read_write_closer, maddr)
            nursery.cancel_scope.cancel()

    bounded._ucsdk_bounded = True  # type: ignore[attr-defined]
    swarm._handle_inbound_connection = bounded


def _is_closed(conn: Any) -> bool:
    """Whether an inbound raw connection (py-libp2p's TCP stream, or a QUIC connection)
    is closed."""
    closed = getattr(conn, "is_closed", None)
    if isinstance(closed, bool):
        return closed
    sock = getattr(getattr(conn, "stream", None), "socket", None)
    return sock is not None and sock.fileno() == -1


async def _cancel_when_closed(conn: Any, scope: trio.CancelScope) -> None:
    while not _is_closed(conn):
        await trio.sleep(INBOUND_WATCH_INTERVAL)
    scope.cancel()


def interface_ipv4_addresses() -> list[str]:
    """IPv4 addresses of this machine's interfaces (loopback first), read from the kernel."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), 0x8915, request)  # SIOCGIFADDR
            except OSError:
                continue
            found.append(socket.inet_ntoa(array.array("B", reply[20:24]).tobytes()))
    return sorted(set(found), key=lambda a: (not ipaddress.ip_address(a).is_loopback, a))


def expand_wildcard(addr: str) -> list[str]:
    """Replace an unspecified listen IP (0.0.0.0, ::) with the addresses it stands for."""
    parts = addr.split("/")
    if len(parts) > 2 and parts[1] == "ip4" and parts[2] == "0.0.0.0":
        return ["/".join([*parts[:2], ip, *parts[3:]]) for ip in interface_ipv4_addresses()]
    if len(parts) > 2 and parts[1] == "ip6" and parts[2] == "::":
        return ["/".join([*parts[:2], "::1", *parts[3:]])]
    return [addr]


def describe_connection(conn: INetConn) -> tuple[str | None, str | None, bool]:
    """(remote address, transport, relayed) of a py-libp2p connection."""
    remote: str | None = None
    try:
        addrs = conn.get_transport_addresses()
        if addrs:
            remote = str(split_p2p(addrs[0])[0])
    except Exception as exc:
        logging.getLogger(__name__).debug("no transport address for a connection: %s", exc)
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
        (muxed, "is_initiator"),  # a transport that muxes natively (WebRTC)
    ):
        value = getattr(holder, attr, None)
        if isinstance(value, bool):
            return "outbound" if value else "inbound"
    return "unknown"
