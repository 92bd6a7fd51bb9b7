"""libp2p over WebTransport (HTTP/3 on QUIC): what browsers dial.

A listener answers ``/ip4/…/udp/N/quic-v1/webtransport/certhash/<h1>/certhash/<h2>``
per the libp2p WebTransport spec, on aioquic's HTTP/3 with WebTransport enabled:

* the client sends an extended CONNECT (``:protocol webtransport``) to
  ``/.well-known/libp2p-webtransport?type=noise``; anything else is refused (404);
* the first stream the client opens in the session carries a Noise XX handshake (the
  client initiates) in which the server lists its certificate hashes in the
  ``webtransport_certhashes`` extension; a client checks that the hash of the certificate
  it saw, and every hash it dialled, are in that list before it sends the last message;
* every later WebTransport stream is one libp2p stream: no further muxer; protocols are
  negotiated on it with multistream-select as on any libp2p stream.

Certificates come from :class:`ucsdk.transports.certs.CertificateManager` (ECDSA P-256,
12 days, derived from the host key, two hashes advertised).

Hostile peers: sessions are capped in total and per source IP (an Initial packet beyond a
cap is dropped before any state is made), a session must finish its handshake in
``handshake_timeout`` seconds, one WebTransport session per QUIC connection, streams per
session capped, unread data per stream and per session capped. Each refusal is counted in
:attr:`WebTransportTransport.rejections` by reason; the listener goes on serving others.

The dialer (ucsdk to ucsdk) checks the served certificate as a browser does: its hash is
one of the address's, it is valid now, for at most 14 days, and not RSA.

Example:
    >>> from ucsdk.identity import new_key_pair
    >>> transport = WebTransportTransport(new_key_pair())
    >>> transport.can_dial(multiaddr.Multiaddr(
    ...     "/ip4/127.0.0.1/udp/4001/quic-v1/webtransport/certhash/"
    ...     "uEiDqeY7IaPVb6aFn0e6jkIEUNdKLSIrN1IN6Qf8346T3Eg"))
    True
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import multiaddr
import trio
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, H3Stream
from aioquic.h3.events import DataReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    HandshakeCompleted,
    StopSendingReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from libp2p.abc import IListener, IMuxedConn, IMuxedStream, ITransport
from libp2p.connection_types import ConnectionType
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.peer.id import ID
from libp2p.security.noise.io import NoiseHandshakeReadWriter
from libp2p.security.noise.messages import (
    NoiseExtensions,
    NoiseHandshakePayload,
    verify_handshake_payload_sig,
)
from libp2p.security.noise.patterns import PatternXX
from libp2p.stream_muxer.exceptions import (
    MuxedConnUnavailable,
    MuxedStreamClosed,
    MuxedStreamEOF,
    MuxedStreamReset,
)
from libp2p.transport.exceptions import OpenConnectionError

from ucsdk.transports.certs import (
    CertificateManager,
    certhash_from_multibase,
    certhash_multibase,
    check_served_certificate,
)

log = logging.getLogger(__name__)

WELL_KNOWN_PATH = "/.well-known/libp2p-webtransport"
WT_ERROR_BASE = 0x52E4A40FA8DB
"""HTTP/3 error code of WebTransport application error 0 (draft-02): a reset stream."""
MAX_DATAGRAM_FRAME = 65536
SUPPORTED_VERSIONS = frozenset(QuicConfiguration(is_client=False).supported_versions)
NOISE_MAX_MESSAGE = 65535


@dataclass(frozen=True)
class WebTransportLimits:
    """Bounds on what peers can make a WebTransport listener hold.

    Example:
        >>> WebTransportLimits(max_sessions=8).max_sessions
        8
    """

    max_sessions: int = 256
    """QUIC connections at once, handshaking or established."""
    max_sessions_per_ip: int = 16
    """QUIC connections at once from one source IP."""
    handshake_timeout: float = 10.0
    """Seconds from the first packet to a finished Noise handshake."""
    max_streams_per_session: int = 256
    """Open streams a peer may have started on one session (more are reset)."""
    max_stream_buffer: int = 4 * 1024 * 1024
    """Unread bytes held for one stream (more resets it)."""
    max_session_buffer: int = 16 * 1024 * 1024
    """Unread bytes held for one session (more closes it)."""
    write_high_water: int = 1024 * 1024
    """A write waits while more than this many bytes of a stream are unacknowledged."""


def is_webtransport_addr(maddr: multiaddr.Multiaddr) -> bool:
    """``/ip4|ip6/…/udp/N/quic-v1/webtransport[/certhash/…][/p2p/…]``."""
    names = [p.name for p in maddr.protocols()]
    return (
        len(names) >= 4
        and names[0] in ("ip4", "ip6")
        and names[1] == "udp"
        and names[2] == "quic-v1"
        and names[3] == "webtransport"
        and all(n in ("certhash", "p2p") for n in names[4:])
    )


def parse_webtransport_addr(
    maddr: multiaddr.Multiaddr,
) -> tuple[str, int, list[bytes], str | None]:
    """(host, port, certificate multihashes, peer id text) of a WebTransport address;
    ``ValueError`` naming what is wrong."""
    if not is_webtransport_addr(maddr):
        raise ValueError(f"not a WebTransport address: {maddr}")
    host = port = None
    hashes: list[bytes] = []
    peer: str | None = None
    for proto, value in maddr.items():
        if proto.name in ("ip4", "ip6"):
            host = str(value)
        elif proto.name == "udp":
            port = int(value)
        elif proto.name == "certhash":
            hashes.append(certhash_from_multibase(str(value)))
        elif proto.name == "p2p":
            peer = str(value)
    assert host is not None and port is not None
    return host, port, hashes, peer


def _decrypted_any(quic: QuicConnection) -> bool:
    """Whether ``quic`` has decrypted a packet from its peer yet."""
    spaces = getattr(quic, "_spaces", {})
    return any(space.largest_received_packet >= 0 for space in spaces.values())


async def _receive_batch(sock: socket.socket) -> tuple[list[tuple[bytes, tuple[str, int]]], bool]:
    """Wait until ``sock`` is readable, then take up to 64 datagrams: (them, whether the
    socket failed). Yields to other tasks either way."""
    batch: list[tuple[bytes, tuple[str, int]]] = []
    failed = False
    await trio.lowlevel.wait_readable(sock.fileno())
    for _ in range(64):
        try:
            data, addr = sock.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            log.debug("WebTransport receive failed: %s", exc)
            failed = True
            break
        batch.append((data, (addr[0], addr[1])))
    await trio.lowlevel.checkpoint()
    return batch, failed


async def _drive(
    conn: WebTransportConnection, companion: Callable[[WebTransportConnection], Awaitable[Any]]
) -> None:
    """Run ``conn``'s timer loop beside ``companion(conn)`` until the connection ends."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        nursery.start_soon(companion, conn)
        await conn.terminated.wait()
        nursery.cancel_scope.cancel()


def _now() -> float:
    return time.time()


# --------------------------------------------------------------------------- streams
class WebTransportStream(IMuxedStream):
    """One WebTransport bidirectional stream, used as one libp2p stream."""

    def __init__(self, conn: WebTransportConnection, stream_id: int, inbound: bool) -> None:
        self.muxed_conn = conn  # type: ignore[assignment]
        self.conn = conn
        self.stream_id = stream_id
        self.inbound = inbound
        self._buffer = bytearray()
        self._data = trio.Event()
        self._remote_fin = False
        self._local_fin = False
        self._reset = False
        self._reset_reason = ""

    # -- fed by the connection
    def _feed(self, data: bytes, fin: bool) -> None:
        if self._reset:
            return
        if data:
            self._buffer += data
        if fin:
            self._remote_fin = True
        self._data.set()

    def _mark_reset(self, reason: str) -> None:
        if not self._reset:
            self._reset = True
            self._reset_reason = reason
        self._data.set()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def is_done(self) -> bool:
        return self._reset or (self._remote_fin and self._local_fin and not self._buffer)

    # -- IMuxedStream
    async def read(self, n: int | None = None) -> bytes:
        while not self._buffer:
            if self._reset:
                raise MuxedStreamReset(f"stream {self.stream_id} reset ({self._reset_reason})")
            if self._remote_fin:
                self.conn._forget_if_done(self)
                raise MuxedStreamEOF(f"stream {self.stream_id} ended")
            self._data = trio.Event()
            await self._data.wait()
        size = len(self._buffer) if n is None or n < 0 else min(n, len(self._buffer))
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.conn._consumed(size)
        return out

    async def write(self, data: bytes) -> None:
        if self._reset:
            raise MuxedStreamReset(f"stream {self.stream_id} reset ({self._reset_reason})")
        if self._local_fin:
            raise MuxedStreamClosed(f"stream {self.stream_id} closed for writing")
        await self.conn._send(self, bytes(data), end=False)

    async def close(self) -> None:
        if self._local_fin or self._reset:
            return
        self._local_fin = True
        with contextlib.suppress(MuxedStreamReset, MuxedConnUnavailable):
            await self.conn._send(self, b"", end=True)
        self.conn._forget_if_done(self)

    async def reset(self) -> None:
        if self._reset:
            return
        self._mark_reset("reset here")
        self.conn._reset_stream(self)

    def set_deadline(self, ttl: int) -> None:
        return None

    def get_remote_address(self) -> tuple[str, int] | None:
        return self.conn.remote_addr

    async def __aenter__(self) -> WebTransportStream:
        return self

    def __repr__(self) -> str:
        return f"<WebTransportStream {self.stream_id} of {self.muxed_conn.peer_id}>"


class _NoiseWire:
    """A stream as the byte pipe py-libp2p's Noise message reader expects."""

    def __init__(self, stream: WebTransportStream) -> None:
        self.stream = stream

    async def read(self, n: int | None = None) -> bytes:
        try:
            return await self.stream.read(n)
        except MuxedStreamEOF:
            return b""

    async def write(self, data: bytes) -> None:
        await self.stream.write(data)

    async def close(self) -> None:
        await self.stream.close()

    def get_remote_address(self) -> tuple[str, int] | None:
        return self.stream.get_remote_address()


# ----------------------------------------------------------------------- connection
class WebTransportConnection(IMuxedConn):
    """A WebTransport session on its QUIC connection, as py-libp2p's muxed connection."""

    def __init__(
        self,
        quic: QuicConnection,
        sock: socket.socket,
        remote_addr: tuple[str, int],
        *,
        is_initiator: bool,
        local_addr: tuple[str, int],
        limits: WebTransportLimits,
        rejections: Counter[str],
        on_cid: Callable[[bytes, bool], None] | None = None,
    ) -> None:
        self.quic = quic
        self.h3 = H3Connection(quic, enable_webtransport=True)
        self.sock = sock
        self.remote_addr = remote_addr
        self.local_addr = local_addr
        self._is_initiator = is_initiator
        self.limits = limits
        self.rejections = rejections
        self._on_cid = on_cid
        self.peer_id: ID = None  # type: ignore[assignment]  # set after Noise
        self.session_id: int | None = None
        self.noise_stream: WebTransportStream | None = None
        self.streams: dict[int, WebTransportStream] = {}
        self._send_accept, self._accept = trio.open_memory_channel[WebTransportStream](
            limits.max_streams_per_session
        )
        self.event_started = trio.Event()
        self.handshake_done = trio.Event()
        self.session_ready = trio.Event()
        self.noise_ready = trio.Event()
        self.terminated = trio.Event()
        self.close_reason = ""
        self._wake = trio.Event()
        self._acked = trio.Event()
        self._buffered = 0
        self._established = False
        self._closing = False
        self.peer_certificate: Any = None
        self.connect_response: int | None = None

    # -- IMuxedConn
    @property
    def is_initiator(self) -> bool:
        return self._is_initiator

    @property
    def is_established(self) -> bool:
        return self._established and not self.terminated.is_set()

    @property
    def is_closed(self) -> bool:
        return self.terminated.is_set()

    async def start(self) -> None:
        self.event_started.set()

    async def close(self) -> None:
        self._shutdown("closed here")
        with trio.move_on_after(1):
            await self.terminated.wait()

    async def open_stream(self) -> WebTransportStream:
        if self.terminated.is_set() or self.session_id is None:
            raise MuxedConnUnavailable("the WebTransport session is closed")
        stream_id = self.h3.create_webtransport_stream(self.session_id)
        # aioquic's H3 layer parses what arrives on a stream it did not see opened as
        # HTTP frames: tell it this one is a WebTransport stream of our session.
        h3_stream = self.h3._stream.setdefault(stream_id, H3Stream(stream_id))
        h3_stream.frame_type = FrameType.WEBTRANSPORT_STREAM
        h3_stream.session_id = self.session_id
        stream = WebTransportStream(self, stream_id, inbound=False)
        self.streams[stream_id] = stream
        self.transmit()
        return stream

    async def accept_stream(self) -> WebTransportStream:
        try:
            return await self._accept.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise MuxedConnUnavailable("the WebTransport session is closed") from None

    def get_transport_addresses(self) -> list[multiaddr.Multiaddr]:
        host, port = self.remote_addr[0], self.remote_addr[1]
        family = "ip6" if ":" in host else "ip4"
        return [multiaddr.Multiaddr(f"/{family}/{host}/udp/{port}/quic-v1/webtransport")]

    def get_connection_type(self) -> ConnectionType:
        return ConnectionType.DIRECT

    def get_remote_address(self) -> tuple[str, int]:
        return self.remote_addr

    def __repr__(self) -> str:
        return f"<WebTransportConnection {self.remote_addr} peer={self.peer_id}>"

    # -- QUIC plumbing
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.quic.receive_datagram(data, addr, now=_now())
        self._process()
        self.transmit()
        self._wake.set()

    def transmit(self) -> None:
        for data, addr in self.quic.datagrams_to_send(now=_now()):
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                pass  # a lost datagram: QUIC retransmits
            except OSError as exc:
                log.debug("WebTransport send to %s failed: %s", addr, exc)
        self._wake.set()

    async def run(self) -> None:
        """Drive QUIC timers until the connection ends (one task per connection)."""
        try:
            while not self.terminated.is_set():
                deadline = self.quic.get_timer()
                wait = 3600.0 if deadline is None else max(0.0, deadline - _now())
                with trio.move_on_after(wait):
                    await self._wake.wait()
                self._wake = trio.Event()
                deadline = self.quic.get_timer()
                if deadline is not None and deadline <= _now():
                    self.quic.handle_timer(now=_now())
                    self._process()
                self.transmit()
                self._wake = trio.Event() if self._wake.is_set() else self._wake
        finally:
            self._finish(self.close_reason or "connection ended")

    def _shutdown(self, reason: str, error_code: int = 0) -> None:
        if self.terminated.is_set() or self._closing:
            return
        self._closing = True
        self.close_reason = reason
        self.quic.close(error_code=error_code, reason_phrase=reason[:100])
        self.transmit()
        # aioquic ends the connection after its draining period; do not wait for it.
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.terminated.is_set():
            return
        self.close_reason = self.close_reason or reason
        for stream in list(self.streams.values()):
            stream._mark_reset("connection closed")
        if self.noise_stream is not None:
            self.noise_stream._mark_reset("connection closed")
        self.streams.clear()
        self._send_accept.close()
        self.terminated.set()
        self._acked.set()
        self.handshake_done.set()
        self.session_ready.set()
        self._wake.set()

    def _process(self) -> None:
        while True:
            event = self.quic.next_event()
            if event is None:
                return
            if isinstance(event, ConnectionIdIssued):
                if self._on_cid:
                    self._on_cid(event.connection_id, True)
            elif isinstance(event, ConnectionIdRetired):
                if self._on_cid:
                    self._on_cid(event.connection_id, False)
            elif isinstance(event, HandshakeCompleted):
                self.peer_certificate = getattr(self.quic.tls, "_peer_certificate", None)
                self.handshake_done.set()
            elif isinstance(event, ConnectionTerminated):
                self._finish(event.reason_phrase or f"closed by peer ({event.error_code})")
                return
            elif isinstance(event, StreamReset) and event.stream_id == self.session_id:
                self._shutdown("the peer reset its session stream")
                return
            elif isinstance(event, StreamReset | StopSendingReceived):
                stream = self.streams.get(event.stream_id)
                noise = self.noise_stream
                if stream is None and noise is not None and noise.stream_id == event.stream_id:
                    stream = noise
                if stream is not None:
                    self._buffered -= stream.buffered
                    stream._buffer.clear()
                    stream._mark_reset("reset by peer")
                    self._forget(stream)
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived):
                    self._headers(h3_event)
                elif isinstance(h3_event, WebTransportStreamDataReceived):
                    self._stream_data(h3_event)
                elif (
                    isinstance(h3_event, DataReceived)
                    and h3_event.stream_id == self.session_id
                    and h3_event.stream_ended
                ):
                    # The peer ended its CONNECT stream (with a CLOSE_WEBTRANSPORT_SESSION
                    # capsule, as a browser does on close()): the session is over.
                    self._shutdown("the peer closed its session")
                    return
            self._acked.set()

    # -- the session
    def _headers(self, event: HeadersReceived) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
        if self._is_initiator:
            if event.stream_id == self.session_id:
                self.connect_response = int(headers.get(":status", "0") or 0)
                self.session_ready.set()
            return
        if self.session_id is not None:
            self._refuse_request(event.stream_id, 429, "second_session")
            return
        path = headers.get(":path", "")
        if headers.get(":method") != "CONNECT" or headers.get(":protocol") != "webtransport":
            self._refuse_request(event.stream_id, 400, "not_webtransport_connect")
            return
        parts = urlsplit(path)
        if parts.path != WELL_KNOWN_PATH or parse_qs(parts.query).get("type") != ["noise"]:
            self._refuse_request(event.stream_id, 404, "bad_path")
            return
        self.session_id = event.stream_id
        self.h3.send_headers(
            event.stream_id,
            [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")],
        )
        self.session_ready.set()

    def _refuse_request(self, stream_id: int, status: int, reason: str) -> None:
        self.rejections[reason] += 1
        log.debug("WebTransport request from %s refused: %s", self.remote_addr, reason)
        try:
            self.h3.send_headers(stream_id, [(b":status", str(status).encode())], end_stream=True)
        except Exception as exc:  # the stream may be gone already
            log.debug("could not answer a refused request: %s", exc)
        self.transmit()  # the answer leaves before the connection's close
        if self.session_id is None:
            self._shutdown(reason, error_code=0x10C)  # H3_REQUEST_REJECTED

    def _stream_data(self, event: WebTransportStreamDataReceived) -> None:
        if event.session_id != self.session_id:
            self.rejections["stream_for_unknown_session"] += 1
            self._reset_id(event.stream_id)
            return
        stream = self.streams.get(event.stream_id)
        noise = self.noise_stream
        if stream is None and noise is not None and event.stream_id == noise.stream_id:
            stream = noise
        if stream is None:
            if self._locally_initiated(event.stream_id):
                return  # late data for a stream we already forgot
            stream = WebTransportStream(self, event.stream_id, inbound=True)
            if self.noise_stream is None and not self._is_initiator:
                self.noise_stream = stream
                self.noise_ready.set()
            else:
                inbound = sum(1 for s in self.streams.values() if s.inbound)
                if inbound >= self.limits.max_streams_per_session:
                    self.rejections["stream_limit"] += 1
                    self._reset_id(event.stream_id)
                    return
                try:
                    self._send_accept.send_nowait(stream)
                except (trio.WouldBlock, trio.ClosedResourceError):
                    self.rejections["stream_limit"] += 1
                    self._reset_id(event.stream_id)
                    return
                self.streams[event.stream_id] = stream
        stream._feed(event.data, event.stream_ended)
        self._buffered += len(event.data)
        if stream.buffered > self.limits.max_stream_buffer:
            self.rejections["stream_buffer_overflow"] += 1
            self._buffered -= stream.buffered
            stream._buffer.clear()
            stream._mark_reset("too much unread data")
            self._reset_stream(stream)
        if self._buffered > self.limits.max_session_buffer:
            self.rejections["session_buffer_overflow"] += 1
            self._shutdown("too much unread data")

    def _locally_initiated(self, stream_id: int) -> bool:
        return (stream_id & 1) == (0 if self._is_initiator else 1)

    def _consumed(self, size: int) -> None:
        self._buffered -= size

    async def _send(self, stream: WebTransportStream, data: bytes, end: bool) -> None:
        if self.terminated.is_set():
            raise MuxedConnUnavailable("the WebTransport session is closed")
        self.quic.send_stream_data(stream.stream_id, data, end_stream=end)
        self.transmit()
        while not end and self._unacked(stream.stream_id) > self.limits.write_high_water:
            if self.terminated.is_set():
                raise MuxedConnUnavailable("the WebTransport session is closed")
            if stream._reset:
                raise MuxedStreamReset(f"stream {stream.stream_id} reset")
            self._acked = trio.Event()
            await self._acked.wait()

    def _unacked(self, stream_id: int) -> int:
        quic_stream = self.quic._streams.get(stream_id)
        if quic_stream is None:
            return 0
        return len(getattr(quic_stream.sender, "_buffer", b""))

    def _reset_stream(self, stream: WebTransportStream) -> None:
        self._reset_id(stream.stream_id)
        self._forget(stream)

    def _reset_id(self, stream_id: int) -> None:
        if self.terminated.is_set():
            return
        try:
            self.quic.reset_stream(stream_id, WT_ERROR_BASE)
        except Exception as exc:  # already reset or finished
            log.debug("reset of stream %d: %s", stream_id, exc)
        try:
            self.quic.stop_stream(stream_id, WT_ERROR_BASE)
        except Exception as exc:
            log.debug("stop_sending of stream %d: %s", stream_id, exc)
        self.transmit()

    def _forget(self, stream: WebTransportStream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        # The H3 layer keeps a record per WebTransport stream until it has seen both
        # directions end, which it never does for ours: drop those QUIC has finished.
        live = self.quic._streams
        for stream_id in [i for i in self.h3._stream if i not in live and i != self.session_id]:
            if self.h3._stream[stream_id].frame_type == FrameType.WEBTRANSPORT_STREAM:
                del self.h3._stream[stream_id]

    def _forget_if_done(self, stream: WebTransportStream) -> None:
        if stream.is_done:
            self._forget(stream)

    def established(self, peer: ID) -> None:
        self.peer_id = peer
        self._established = True


# --------------------------------------------------------------------------- noise
def _noise_pattern(key_pair: KeyPair) -> PatternXX:
    return PatternXX(
        local_peer=ID.from_pubkey(key_pair.public_key),
        libp2p_privkey=key_pair.private_key,
        noise_static_key=new_x25519_key_pair().private_key,
    )


async def noise_responder(
    stream: WebTransportStream, key_pair: KeyPair, certhashes: list[bytes]
) -> ID:
    """The server's side of the Noise XX handshake; returns the client's peer id."""
    pattern = _noise_pattern(key_pair)
    state = pattern.create_noise_state()
    state.set_as_responder()
    state.start_handshake()
    # The noise library drops its handshake state once the handshake ends: keep it.
    handshake = state.noise_protocol.handshake_state if state.noise_protocol else None
    wire = NoiseHandshakeReadWriter(_NoiseWire(stream), state)  # type: ignore[arg-type]
    await wire.read_msg()
    payload = pattern.make_handshake_payload(
        NoiseExtensions(webtransport_certhashes=list(certhashes))
    )
    await wire.write_msg(payload.serialize())
    msg3 = await wire.read_msg()
    remote = NoiseHandshakePayload.deserialize(msg3)
    if handshake is None or handshake.rs is None or not state.handshake_finished:
        raise ValueError("the Noise handshake did not finish")
    static_key = pattern._get_pubkey_from_noise_keypair(handshake.rs)
    if not verify_handshake_payload_sig(remote, static_key):
        raise ValueError("the client's Noise payload signature is invalid")
    return ID.from_pubkey(remote.id_pubkey)


async def noise_initiator(
    stream: WebTransportStream,
    key_pair: KeyPair,
    expected_peer: ID | None,
    served_hash: bytes,
    dialled_hashes: list[bytes],
) -> ID:
    """The client's side: checks the server's certhashes extension before the last
    message (every dialled hash and the served one must be listed); returns the server's
    peer id."""
    pattern = _noise_pattern(key_pair)
    state = pattern.create_noise_state()
    state.set_as_initiator()
    state.start_handshake()
    handshake = state.noise_protocol.handshake_state if state.noise_protocol else None
    wire = NoiseHandshakeReadWriter(_NoiseWire(stream), state)  # type: ignore[arg-type]
    await wire.write_msg(b"")
    msg2 = await wire.read_msg()
    remote = NoiseHandshakePayload.deserialize(msg2)
    if handshake is None or handshake.rs is None:
        raise ValueError("the server's Noise message carried no static key")
    static_key = pattern._get_pubkey_from_noise_keypair(handshake.rs)
    if not verify_handshake_payload_sig(remote, static_key):
        raise ValueError("the server's Noise payload signature is invalid")
    peer = ID.from_pubkey(remote.id_pubkey)
    if expected_peer is not None and peer != expected_peer:
        raise ValueError(f"the server is {peer}, not the dialled {expected_peer}")
    listed = list(remote.extensions.webtransport_certhashes) if remote.extensions else []
    missing = [h for h in [served_hash, *dialled_hashes] if h not in listed]
    if missing:
        raise ValueError(
            "the server's Noise certhashes extension lacks "
            + ", ".join(certhash_multibase(h) for h in missing)
        )
    await wire.write_msg(pattern.make_handshake_payload().serialize())
    return peer


# ------------------------------------------------------------------------- listener
class WebTransportListener(IListener):
    """One UDP socket accepting WebTransport sessions."""

    def __init__(self, transport: WebTransportTransport, handler: Callable[..., Awaitable[Any]]):
        self.transport = transport
        self.handler = handler
        self.sock: socket.socket | None = None
        self.bound: tuple[str, int] | None = None
        self.by_cid: dict[bytes, WebTransportConnection] = {}
        self.sessions: set[WebTransportConnection] = set()
        self.per_ip: Counter[str] = Counter()
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()
        self.background_nursery: trio.Nursery | None = None

    async def listen(self, maddr: multiaddr.Multiaddr) -> None:
        host, port, _hashes, _peer = parse_webtransport_addr(maddr)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.bound = sock.getsockname()[:2]
        nursery = self.background_nursery or self.transport.nursery
        if nursery is None:
            sock.close()
            raise OpenConnectionError("the WebTransport listener needs a running host")
        await nursery.start(self._serve)

    async def _serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        assert self.sock is not None
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self._nursery = nursery
                task_status.started()
                await self._receive_loop(nursery)
        finally:
            for conn in list(self.sessions):
                conn._shutdown("listener closed")
            self.sock.close()
            self._done.set()

    async def _receive_loop(self, nursery: trio.Nursery) -> None:
        assert self.sock is not None
        while True:
            batch, _failed = await _receive_batch(self.sock)
            for data, addr in batch:
                self._datagram(data, addr, nursery)

    def _datagram(self, data: bytes, addr: tuple[str, int], nursery: trio.Nursery) -> None:
        rejections = self.transport.rejections
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        except (BufferReadError, ValueError):
            rejections["malformed_packet"] += 1
            return
        conn = self.by_cid.get(header.destination_cid)
        if conn is None:
            if header.packet_type != QuicPacketType.INITIAL:
                rejections["unknown_connection"] += 1
                return
            if header.version not in SUPPORTED_VERSIONS:
                rejections["unsupported_version"] += 1
                return
            if len(data) < 1200:
                rejections["malformed_packet"] += 1  # an Initial must be padded
                return
            conn = self._accept(header.destination_cid, addr, nursery)
            if conn is None:
                return
            new = True
        else:
            new = False
        try:
            conn.datagram_received(data, addr)
        except Exception as exc:  # aioquic rejects what it cannot parse
            rejections["malformed_packet"] += 1
            log.debug("WebTransport datagram from %s dropped: %r", addr, exc)
        if new and not _decrypted_any(conn.quic):
            # Garbage shaped like an Initial: keep no state for it.
            rejections["malformed_packet"] += 1
            conn._finish("undecryptable first packet")

    def _accept(
        self, dcid: bytes, addr: tuple[str, int], nursery: trio.Nursery
    ) -> WebTransportConnection | None:
        limits = self.transport.limits
        rejections = self.transport.rejections
        if len(self.sessions) >= limits.max_sessions:
            rejections["session_limit"] += 1
            return None
        if self.per_ip[addr[0]] >= limits.max_sessions_per_ip:
            rejections["session_limit_per_ip"] += 1
            return None
        cert = self.transport.certificates.current()
        config = QuicConfiguration(
            is_client=False,
            alpn_protocols=H3_ALPN,
            max_datagram_frame_size=MAX_DATAGRAM_FRAME,
            idle_timeout=30.0,
        )
        config.certificate = cert.x509()
        config.private_key = cert.private_key()
        assert self.sock is not None and self.bound is not None
        quic = QuicConnection(configuration=config, original_destination_connection_id=dcid)
        conn = WebTransportConnection(
            quic,
            self.sock,
            addr,
            is_initiator=False,
            local_addr=self.bound,
            limits=limits,
            rejections=rejections,
        )
        conn._on_cid = lambda cid, issued: self._cid(conn, cid, issued)
        self.by_cid[dcid] = conn
        self.by_cid[quic.host_cid] = conn
        self.sessions.add(conn)
        self.per_ip[addr[0]] += 1
        nursery.start_soon(self._session, conn, dcid)
        return conn

    def _cid(self, conn: WebTransportConnection, cid: bytes, issued: bool) -> None:
        if issued:
            self.by_cid[cid] = conn
        elif self.by_cid.get(cid) is conn:
            del self.by_cid[cid]

    async def _session(self, conn: WebTransportConnection, dcid: bytes) -> None:
        try:
            await _drive(conn, self._handshake)
        finally:
            self.sessions.discard(conn)
            self.per_ip[conn.remote_addr[0]] -= 1
            if self.per_ip[conn.remote_addr[0]] <= 0:
                del self.per_ip[conn.remote_addr[0]]
            for cid in [c for c, owner in self.by_cid.items() if owner is conn]:
                del self.by_cid[cid]

    async def _handshake(self, conn: WebTransportConnection) -> None:
        transport = self.transport
        stage = "handshake_timeout"
        with trio.move_on_after(transport.limits.handshake_timeout) as scope:
            try:
                await conn.session_ready.wait()
                if conn.terminated.is_set():
                    return
                await conn.noise_ready.wait()
                assert conn.noise_stream is not None
                stage = "noise_failed"
                peer = await noise_responder(
                    conn.noise_stream, transport.key_pair, transport.certificates.noise_certhashes()
                )
            except Exception as exc:
                transport.rejections[stage] += 1
                conn._shutdown(f"{stage}: {exc}", error_code=0x1)
                log.debug("WebTransport handshake with %s failed: %r", conn.remote_addr, exc)
                return
        if scope.cancelled_caught:
            if not conn.terminated.is_set():
                transport.rejections["handshake_timeout"] += 1
                conn._shutdown("handshake_timeout", error_code=0x1)
            return
        conn.established(peer)
        stream, conn.noise_stream = conn.noise_stream, None
        if stream is not None:
            await stream.close()
        transport.accepted += 1
        # The swarm's inbound handler keeps running while the connection lives.
        self._nursery.start_soon(self._hand_over, conn)

    async def _hand_over(self, conn: WebTransportConnection) -> None:
        try:
            await self.handler(conn)
        except Exception as exc:
            log.debug("the swarm refused a WebTransport connection: %r", exc)
            conn._shutdown("refused by the swarm")

    def get_addrs(self) -> tuple[multiaddr.Multiaddr, ...]:
        if self.bound is None or self._done.is_set():
            return ()
        host, port = self.bound
        family = "ip6" if ":" in host else "ip4"
        hashes = "".join(
            f"/certhash/{h}" for h in self.transport.certificates.advertised_multibase()
        )
        return (multiaddr.Multiaddr(f"/{family}/{host}/udp/{port}/quic-v1/webtransport{hashes}"),)

    async def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._done.wait()
        elif self.sock is not None:
            self.sock.close()


# ------------------------------------------------------------------------ transport
class WebTransportTransport(ITransport):
    """py-libp2p transport for ``/quic-v1/webtransport`` (listener and dialer).

    Register it on a host's swarm (:func:`ucsdk.host.build_host` does this when
    ``"webtransport"`` is in ``ConnectivityConfig.transports``).

    Example:
        >>> from ucsdk.identity import new_key_pair
        >>> WebTransportTransport(new_key_pair()).protocols()
        ['webtransport']
    """

    provides_native_muxing = True

    def __init__(
        self,
        key_pair: KeyPair,
        *,
        limits: WebTransportLimits | None = None,
        certificates: CertificateManager | None = None,
    ) -> None:
        self.key_pair = key_pair
        self.limits = limits or WebTransportLimits()
        self.certificates = certificates or CertificateManager(key_pair.private_key.to_bytes())
        self.rejections: Counter[str] = Counter()
        """Refusals by reason (``session_limit``, ``bad_path``, …)."""
        self.nursery: trio.Nursery | None = None
        self.listeners: list[WebTransportListener] = []
        self.dialled: set[WebTransportConnection] = set()
        self.accepted = 0
        self.dials = 0
        self.recent_errors: deque[str] = deque(maxlen=20)

    def set_background_nursery(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery

    def can_dial(self, maddr: multiaddr.Multiaddr) -> bool:
        return is_webtransport_addr(maddr) and "certhash" in [p.name for p in maddr.protocols()]

    def can_listen(self, maddr: multiaddr.Multiaddr) -> bool:
        return is_webtransport_addr(maddr)

    def protocols(self) -> list[str]:
        return ["webtransport"]

    def listen_order(self) -> int:
        return 1

    def create_listener(self, handler_function: Any) -> WebTransportListener:
        listener = WebTransportListener(self, handler_function)
        self.listeners.append(listener)
        return listener

    async def dial(self, maddr: multiaddr.Multiaddr) -> WebTransportConnection:  # type: ignore[override]
        try:
            host, port, hashes, peer_text = parse_webtransport_addr(maddr)
        except ValueError as exc:
            raise OpenConnectionError(str(exc)) from exc
        if not hashes:
            raise OpenConnectionError(f"{maddr} has no /certhash: nothing to verify against")
        if self.nursery is None:
            raise OpenConnectionError("the WebTransport transport needs a running host")
        expected = ID.from_base58(peer_text) if peer_text else None
        self.dials += 1
        conn = self.client_connection(host, port)
        try:
            with trio.fail_after(self.limits.handshake_timeout):
                conn.quic.connect((host, port), now=_now())
                conn.transmit()
                await conn.handshake_done.wait()
                if conn.terminated.is_set():
                    raise OpenConnectionError(f"QUIC handshake failed: {conn.close_reason}")
                try:
                    served = check_served_certificate(conn.peer_certificate, hashes)
                except (ValueError, AttributeError) as exc:
                    self.rejections["dial_bad_certificate"] += 1
                    raise OpenConnectionError(str(exc)) from exc
                conn.session_id = conn.quic.get_next_available_stream_id()
                conn.h3.send_headers(
                    conn.session_id,
                    [
                        (b":method", b"CONNECT"),
                        (b":scheme", b"https"),
                        (b":authority", f"{host}:{port}".encode()),
                        (b":path", f"{WELL_KNOWN_PATH}?type=noise".encode()),
                        (b":protocol", b"webtransport"),
                        (b"sec-webtransport-http3-draft02", b"1"),
                    ],
                )
                conn.transmit()
                await conn.session_ready.wait()
                if conn.connect_response != 200:
                    raise OpenConnectionError(
                        f"the server answered the WebTransport CONNECT with "
                        f"{conn.connect_response or conn.close_reason}"
                    )
                stream = await conn.open_stream()
                del conn.streams[stream.stream_id]
                conn.noise_stream = stream
                try:
                    peer = await noise_initiator(stream, self.key_pair, expected, served, hashes)
                except (ValueError, MuxedStreamReset, MuxedConnUnavailable) as exc:
                    self.rejections["dial_noise_failed"] += 1
                    raise OpenConnectionError(f"Noise over WebTransport failed: {exc}") from exc
                conn.noise_stream = None
                await stream.close()
                conn.established(peer)
                return conn
        except trio.TooSlowError:
            self.recent_errors.append(f"{maddr}: timed out")
            conn._shutdown("dial timed out")
            raise OpenConnectionError(
                f"no WebTransport session with {host}:{port} within "
                f"{self.limits.handshake_timeout} s ({conn.close_reason or 'no answer'})"
            ) from None
        except BaseException as exc:
            self.recent_errors.append(f"{maddr}: {exc}")
            conn._shutdown("dial failed")
            raise

    def client_connection(self, host: str, port: int) -> WebTransportConnection:
        """A client QUIC connection to ``host:port`` on a socket of its own, driven by a
        task in the transport's nursery (not yet connected; :meth:`dial` goes on)."""
        assert self.nursery is not None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        ip = ipaddress.ip_address(host)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("::" if ip.version == 6 else "0.0.0.0", 0))
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=H3_ALPN,
            max_datagram_frame_size=MAX_DATAGRAM_FRAME,
            verify_mode=ssl.CERT_NONE,  # dial() checks it by hash, as a browser does
            server_name=host,
            idle_timeout=30.0,
        )
        conn = WebTransportConnection(
            QuicConnection(configuration=config),
            sock,
            (host, port),
            is_initiator=True,
            local_addr=sock.getsockname()[:2],
            limits=self.limits,
            rejections=self.rejections,
        )
        self.nursery.start_soon(self._client_session, conn)
        return conn

    async def _client_session(self, conn: WebTransportConnection) -> None:
        self.dialled.add(conn)
        try:
            await _drive(conn, self._client_receive)
        finally:
            self.dialled.discard(conn)
            conn.sock.close()

    async def _client_receive(self, conn: WebTransportConnection) -> None:
        while not conn.terminated.is_set():
            batch, failed = await _receive_batch(conn.sock)
            for data, addr in batch:
                if addr != conn.remote_addr:
                    self.rejections["unknown_connection"] += 1
                    continue
                try:
                    conn.datagram_received(data, addr)
                except Exception as exc:
                    self.rejections["malformed_packet"] += 1
                    log.debug("WebTransport datagram dropped: %r", exc)
            if failed:
                return

    async def close(self) -> None:
        for listener in list(self.listeners):
            await listener.close()
        for conn in list(self.dialled):
            conn._shutdown("transport closed")
        self.listeners.clear()

    def stats(self) -> dict[str, Any]:
        """Sessions open, accepted and dialled, and refusals by reason."""
        return {
            "sessions": sum(len(x.sessions) for x in self.listeners) + len(self.dialled),
            "accepted": self.accepted,
            "dials": self.dials,
            "rejections": dict(self.rejections),
        }


__all__ = [
    "WELL_KNOWN_PATH",
    "WebTransportConnection",
    "WebTransportLimits",
    "WebTransportListener",
    "WebTransportStream",
    "WebTransportTransport",
    "is_webtransport_addr",
    "parse_webtransport_addr",
]
