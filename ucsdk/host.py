"""Build a hardened py-libp2p host from a :class:`ucsdk.ConnectivityConfig`.

What ucsdk changes from ``libp2p.new_host()``'s defaults, and why (each is tested):

* security is Noise only: py-libp2p also accepts plaintext and SECIO, so a peer could
  talk to us unencrypted or through a broken handshake;
* Yamux is the preferred stream muxer (mplex only as a fallback for old peers);
* a refused dial fails at once instead of being retried three times over 0.7 s (the
  manager retries where that makes sense, e.g. bootstrap peers, with back-off);
* one connection per peer is dialled: with more, py-libp2p waits a 250 ms happy-eyeballs
  delay on every first connect even when the first address answers at once;
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

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from ucsdk.config import ConnectivityConfig

SECURITY_PROTOCOLS = (str(NOISE_PROTOCOL_ID),)
MUXER_PROTOCOLS = (str(YAMUX_PROTOCOL_ID), str(MPLEX_PROTOCOL_ID))


# py-libp2p logs at ERROR what happens whenever a peer closes a connection while a stream
# on it is being opened or read (a normal event in a swarm): these loggers, these messages.
_ROUTINE_LOGGERS = (
    "libp2p.protocol_muxer.multiselect_client",
    "libp2p.host.basic_host",
    "libp2p.stream_muxer.yamux.yamux",
)
_ROUTINE_MARKERS = (
    "fail to read from multiselect communicator",
    "fail to write to multiselect communicator",
    "handshake read failed",
    "handshake write failed",
    "ConnectionClosedError",
    "ClosedResourceError",
    "Connection reset by peer",
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
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not any(marker in message for marker in _ROUTINE_MARKERS):
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


def build_host(config: ConnectivityConfig, key_pair: KeyPair) -> IHost:
    """Create (but do not start) a host with ucsdk's transport and security choices."""
    restore_libp2p_logging()
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
    )
    # py-libp2p retries a refused dial three times with back-off (about 0.7 s); the
    # manager's dial strategy and bootstrap loop own retries, so a dial fails fast here.
    host.get_network().retry_config = RetryConfig(max_retries=0)  # type: ignore[attr-defined]
    return host


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
