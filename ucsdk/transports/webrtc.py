"""WebRTC-Direct: what a browser dials to reach a node with no trusted TLS certificate.

py-libp2p 0.8.1 ships a WebRTC-Direct transport on aiortc (an asyncio loop in one bridge
thread per transport): an ICE-Lite listener on one UDP port that accepts the spec's v1 flow
(the dialer munges its ICE credentials, ufrag prefix ``libp2p+webrtc+v1/``) and v2 (no
munging, libp2p/specs PR 715: the server ufrag ``libp2p+webrtc+v2/<client pwd>``), picked by
the prefix, with the STUN ``USERNAME`` checked against RFC 8839's ``ice-char`` set and length
bounds before anything is built from it; DTLS with the Noise ``XX`` handshake on data
channel 0 and the ``libp2p-webrtc-noise:`` prologue; one data channel per libp2p stream with
the spec's framing (FIN, STOP_SENDING, RESET, FIN_ACK, 16 KiB messages). ucsdk uses it and
adds what a node needs on top:

* a certificate derived from the host key (HKDF, deterministic ECDSA), so the
  ``/certhash`` in the node's address survives a restart, as go-libp2p does since 0.49;
  py-libp2p makes a random one each start;
* every first contact it refuses counted by reason (``rejections``; the node's metrics
  show them as ``webrtc_<reason>``), where py-libp2p only logs at debug;
* the limits in :class:`WebRTCDirectLimits`: handshakes in flight, first contacts per
  source IP (a token bucket, looked up before any parsing), streams per connection.

Example (the certificate is the same for the same key):
    >>> from ucsdk.identity import new_key_pair
    >>> key = new_key_pair().private_key.to_bytes()
    >>> webrtc_certificate(key).fingerprint == webrtc_certificate(key).fingerprint
    True
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import datetime as dt
import hashlib
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

import trio
from aioice import stun
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import THandler
from libp2p.transport.webrtc.certificate import WebRTCCertificate
from libp2p.transport.webrtc.config import WebRTCTransportConfig
from libp2p.transport.webrtc.exceptions import WebRTCConnectionError
from libp2p.transport.webrtc.listener import WebRTCDirectListener, _FirstContactLimiter
from libp2p.transport.webrtc.sdp import parse_direct_username
from libp2p.transport.webrtc.transport import WebRTCDirectTransport
from multiaddr import Multiaddr

from ucsdk._wire import close_quietly
from ucsdk.addresses import split_p2p
from ucsdk.transports.certs import derive_key, self_signed

NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
"""The derived certificate's validity starts here (fixed, so its hash is too)..."""
NOT_AFTER = dt.datetime(2124, 1, 1, tzinfo=dt.timezone.utc)
"""...and ends here: WebRTC checks a certificate by its fingerprint, not its dates."""


@dataclass(frozen=True)
class WebRTCDirectLimits:
    """Bounds on what dialers can make a WebRTC-Direct listener hold.

    ``max_handshakes``: connections between first STUN contact and the end of Noise, in
    total. ``first_contacts_burst`` / ``first_contacts_per_second``: new connections one
    source IP may start (a token bucket, checked before the datagram is parsed), with
    ``max_sources`` buckets kept. ``handshake_timeout``: seconds from first contact to a
    finished Noise handshake. ``max_streams``: data channels per connection.
    """

    max_handshakes: int = 64
    first_contacts_burst: int = 8
    first_contacts_per_second: float = 4.0
    max_sources: int = 4096
    handshake_timeout: float = 10.0
    max_streams: int = 256

    def __post_init__(self) -> None:
        for name in ("max_handshakes", "first_contacts_burst", "max_sources", "max_streams"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        if not self.first_contacts_per_second > 0 or not self.handshake_timeout > 0:
            raise ValueError("rates and timeouts must be positive")


def webrtc_certificate(seed: bytes) -> WebRTCCertificate:
    """The node's DTLS certificate, derived from ``seed`` (the host's private key bytes):
    ECDSA P-256, the same for the same seed, valid from :data:`NOT_BEFORE` to
    :data:`NOT_AFTER`."""
    from aiortc.rtcdtlstransport import RTCCertificate

    material = hashlib.sha256(b"ucsdk webrtc-direct certificate\x00" + seed).digest()
    key = derive_key(material, b"webrtc-direct")
    cert = self_signed(key, material, NOT_BEFORE, NOT_AFTER, "libp2p webrtc-direct")
    certificate = WebRTCCertificate(certificate=cert, private_key=key)
    # py-libp2p's listener hands this one to aiortc's RTCPeerConnection.
    certificate._rtc_certificate = RTCCertificate(key=key, cert=cert)  # type: ignore[attr-defined]
    return certificate


CLOSE_TIMEOUT = 15.0
"""Seconds a WebRTC connection whose peer went away gets to close (py-libp2p's peer
connection close waits up to 5 s, then aborts its ICE transports and waits 5 s more)."""


def _close_when_the_peer_goes(pc: Any, conn: Any) -> None:
    """Close ``conn`` (on its trio loop) when ``pc`` ends: DTLS closed by the peer, or ICE
    failed (consent checks unanswered). py-libp2p 0.8.1 watches the peer connection's state
    only until it is up: a peer that hung up stayed "connected" here for good (seen: still
    listed 60 s after the other node stopped). Runs on the bridge's asyncio thread."""
    token = getattr(conn, "_trio_token", None)

    def close_conn() -> None:
        if token is None or conn.is_closed:
            return
        # Not awaited here: closing goes through this same asyncio loop.
        with contextlib.suppress(trio.RunFinishedError, RuntimeError):
            trio.from_thread.run_sync(
                trio.lowlevel.spawn_system_task,
                close_quietly,
                conn,
                CLOSE_TIMEOUT,
                trio_token=token,
            )

    watched: list[Any] = []

    def watch_dtls() -> None:
        # A peer that closes sends DTLS close_notify: aiortc closes the DTLS transport but
        # does not change the peer connection's state, so watch the DTLS transport as well.
        # It exists only once the peer connection has a data-channel section (``/webrtc``
        # wires before its offer or answer): watched from the first state change after.
        dtls = getattr(getattr(pc, "sctp", None), "transport", None)
        if dtls is None or watched:
            return
        watched.append(dtls)

        @dtls.on("statechange")  # type: ignore[untyped-decorator]
        def _dtls_state() -> None:
            if str(getattr(dtls, "state", "")) in ("closed", "failed"):
                close_conn()

    @pc.on("connectionstatechange")  # type: ignore[untyped-decorator]
    def _pc_state() -> None:
        if pc.connectionState in ("closed", "failed"):
            close_conn()
        else:
            watch_dtls()

    watch_dtls()


def _watch_peer_connections() -> None:
    """Make every WebRTC connection py-libp2p wires (listener and dialer, ``/webrtc-direct``
    and ucsdk's ``/webrtc``) close when its peer connection ends. py-libp2p imports the
    wiring function from its module at each use, so wrapping it there reaches them all."""
    from libp2p.transport.webrtc import _aiortc_helpers as helpers

    wire = helpers.wire_pc_to_connection
    if getattr(wire, "_ucsdk_watches", False):
        return

    def wire_and_watch(pc: Any, conn: Any) -> None:
        wire(pc, conn)
        _close_when_the_peer_goes(pc, conn)

    wire_and_watch._ucsdk_watches = True  # type: ignore[attr-defined]
    helpers.wire_pc_to_connection = wire_and_watch


_watch_peer_connections()


def _register_streams_before_opening() -> None:
    """Make an outbound WebRTC stream able to receive from the moment its data channel
    exists. py-libp2p 0.8.1 creates the channel (on the bridge's asyncio thread) and only
    then, back on trio, registers the stream; a peer that writes as soon as the channel
    opens (a multistream listener sends its header at once) can land in between, and its
    bytes are dropped as "for unknown channel". The opener then waits for an answer that
    never comes (seen: 2 in 28 stream opens failing after 10 s on a loaded machine)."""
    from libp2p.transport.webrtc.connection import WebRTCConnection
    from libp2p.transport.webrtc.exceptions import WebRTCStreamError
    from libp2p.transport.webrtc.stream import WebRTCStream

    if getattr(WebRTCConnection.open_stream, "_ucsdk_registers_first", False):
        return

    async def open_stream(self: Any) -> Any:
        if self._closed:
            raise WebRTCStreamError("Connection is closed")
        channel_id = self._allocate_outbound_id()
        stream = WebRTCStream(
            connection=self, channel_id=channel_id, is_initiator=True, trio_token=self._trio_token
        )
        stream._send_callback = self._make_send_callback(channel_id)
        with self._streams_lock:
            self._streams[channel_id] = stream
        if self._create_channel_cb is not None:
            try:
                await self._bridge.run_coro(self._create_channel_cb(channel_id, ""))
            except Exception as exc:
                # Not self.remove_stream(): py-libp2p's SwarmConn replaces it on the muxed
                # connection with a coroutine taking a NetStream (it was never awaited here,
                # and the channel stayed registered).
                with self._streams_lock:
                    self._streams.pop(channel_id, None)
                raise WebRTCStreamError(f"could not open data channel {channel_id}: {exc}") from exc
        return stream

    open_stream._ucsdk_registers_first = True  # type: ignore[attr-defined]
    WebRTCConnection.open_stream = open_stream  # type: ignore[method-assign]


_register_streams_before_opening()


_INBOUND_FROM: contextvars.ContextVar[Multiaddr | None] = contextvars.ContextVar(
    "webrtc_inbound_from", default=None
)


def _as_multiaddr(addr: tuple[str, int]) -> Multiaddr:
    ip = ipaddress.ip_address(addr[0])
    return Multiaddr(f"/ip{ip.version}/{ip}/udp/{addr[1]}/webrtc-direct")


def _local_ufrag(pc: Any) -> str | None:
    """The ICE ufrag the listener answers with on ``pc`` (the dialer's server ufrag)."""
    try:
        return str(pc.sctp.transport.transport.iceGatherer.getLocalParameters().usernameFragment)
    except AttributeError:
        return None


class _Listener(WebRTCDirectListener):
    """py-libp2p's listener with each refused first contact counted by reason, the
    dialer's address on each inbound connection, and addresses without ``/p2p``."""

    def __init__(
        self,
        handler_function: THandler,
        limits: WebRTCDirectLimits,
        refused: collections.Counter[str],
        versions: collections.Counter[str],
        **kwargs: Any,
    ) -> None:
        handler = handler_function

        async def with_remote(conn: Any) -> None:
            # py-libp2p leaves an inbound connection without an address.
            remote = _INBOUND_FROM.get()
            if remote is not None and not conn.get_transport_addresses():
                conn._remote_addrs = [remote]
            await handler(conn)

        super().__init__(handler_function=with_remote, **kwargs)
        self._refused = refused
        self._versions = versions
        # py-libp2p's per-IP token bucket (looked up before parsing, table bounded), with
        # ucsdk's figures; consulted here so that its refusals are counted.
        self._bucket = _FirstContactLimiter(
            limits.first_contacts_burst, limits.first_contacts_per_second, limits.max_sources
        )
        self._sources: collections.OrderedDict[str, tuple[str, int]] = collections.OrderedDict()
        self._first_contact_limiter = _AllowAll()  # type: ignore[assignment]

    async def _finish_inbound(self, pc: Any, *args: Any) -> None:
        # The handler runs inside this call, in the same task: the context carries it.
        source = self._sources.pop(_local_ufrag(pc) or "", None)
        _INBOUND_FROM.set(None if source is None else _as_multiaddr(source))
        await super()._finish_inbound(pc, *args)

    async def listen(self, maddr: Multiaddr) -> None:
        await super().listen(maddr)
        mux = self._mux
        if mux is None:
            return
        receive = mux.datagram_received
        refused = self._refused

        def counted(data: bytes, addr: tuple[str, int]) -> None:
            # Runs for every datagram (asyncio thread). From an address a connection has
            # learnt, straight on; from any other, only a STUN binding request with a
            # ufrag goes on (a known one, or a first contact, counted above); the rest is
            # what py-libp2p drops with a debug line: counted and dropped here.
            if (addr[0], addr[1]) in mux._by_addr:
                receive(data, addr)
                return
            try:
                msg = stun.parse_message(data)
            except Exception as exc:  # ValueError: not STUN; struct.error and others: broken
                refused["unroutable" if type(exc) is ValueError else "malformed_stun"] += 1
                return
            ufrag = str(msg.attributes.get("USERNAME", "")).partition(":")[0]
            binding = (
                msg.message_class == stun.Class.REQUEST
                and msg.message_method == stun.Method.BINDING
            )
            if ufrag and (binding or ufrag in mux._by_ufrag):
                receive(data, addr)
                return
            refused["stray_stun"] += 1

        mux.datagram_received = counted  # type: ignore[method-assign]

    def get_addrs(self) -> tuple[Multiaddr, ...]:
        # The node appends its own /p2p part to each listen address.
        return tuple(split_p2p(a)[0] for a in super().get_addrs())

    def _on_unknown_stun(self, username: str, data: bytes, addr: tuple[str, int]) -> None:
        # Runs on the bridge's asyncio thread for each binding request with a ufrag no
        # connection has. Each refusal is counted here; py-libp2p repeats the checks but
        # only logs at debug. Its own call of the rate limiter is made to allow all (the
        # bucket was consulted here, once).
        if self._closed:
            return
        if not self._bucket.allow(addr[0], time.monotonic()):
            self._refused["rate_limited"] += 1
            return
        if self._in_flight >= self._config.max_in_flight_connections:
            self._refused["handshakes_full"] += 1
            return
        try:
            version = parse_direct_username(username)[0]
        except WebRTCConnectionError as exc:
            reason = "unknown_version" if "version" in str(exc) else "bad_username"
            self._refused[reason] += 1
            return
        self._versions[f"v{version}"] += 1
        # Where each handshake came from, by its server ufrag (bounded: handshakes that
        # never finish are pushed out by newer ones).
        self._sources[username.partition(":")[0]] = addr
        while len(self._sources) > 2 * self._config.max_in_flight_connections:
            self._sources.popitem(last=False)
        super()._on_unknown_stun(username, data, addr)


class _AllowAll:
    def allow(self, ip: str, now: float) -> bool:
        return True


class WebRTCDirect(WebRTCDirectTransport):
    """py-libp2p's WebRTC-Direct transport with a key-derived certificate, ucsdk's
    limits and counted refusals (``rejections``, by reason).

    Example:
        >>> from ucsdk.identity import new_key_pair
        >>> transport = WebRTCDirect(new_key_pair())
        >>> transport.protocols(), dict(transport.rejections)
        (['webrtc-direct'], {})
    """

    def __init__(self, key_pair: KeyPair, limits: WebRTCDirectLimits | None = None) -> None:
        self.limits = limits or WebRTCDirectLimits()
        config = WebRTCTransportConfig(
            certificate=webrtc_certificate(key_pair.private_key.to_bytes()),
            handshake_timeout=self.limits.handshake_timeout,
            max_in_flight_connections=self.limits.max_handshakes,
            max_concurrent_streams=self.limits.max_streams,
            ice_servers=[],
        )
        super().__init__(key_pair.private_key, config)
        self.rejections: collections.Counter[str] = collections.Counter()
        """Datagrams refused, by reason: first contacts ``rate_limited``,
        ``handshakes_full``, ``bad_username``, ``unknown_version``; from addresses no
        connection has, ``unroutable`` (not STUN), ``malformed_stun`` and ``stray_stun``
        (STUN that is no binding request with a ufrag)."""
        self.versions: collections.Counter[str] = collections.Counter()
        """First contacts let through, by the WebRTC-Direct version the dialer chose
        (``v1``: it munged its ICE credentials; ``v2``: libp2p/specs PR 715)."""

    def create_listener(self, handler_function: THandler) -> WebRTCDirectListener:
        return _Listener(
            handler_function=handler_function,
            private_key=self._private_key,
            certificate=self._certificate,
            config=self._config,
            bridge_factory=self._ensure_bridge,
            local_peer_id=self._local_peer_id,
            limits=self.limits,
            refused=self.rejections,
            versions=self.versions,
        )

    def certhash(self) -> str:
        """The multibase ``/certhash`` of the node's certificate."""
        return str(self._certificate.fingerprint_to_multibase())
