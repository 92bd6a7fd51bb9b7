"""WebRTC between two peers that cannot listen (``/webrtc``), signalled over a relay.

The libp2p WebRTC spec ("browser to browser", which holds for any two peers behind NATs):
*A* holds a relayed connection to *B* (Circuit Relay v2, authenticated with Noise end to
end), opens ``/webrtc-signaling/0.0.1`` on it and sends its SDP offer; *B* answers; both
send ICE candidates; ICE (with a STUN server for each side's public mapping) finds a path
and DTLS secures it. There is no Noise handshake on the WebRTC connection: the offer and the
answer carry each side's certificate fingerprint, they came over the authenticated relayed
connection, and DTLS checks them, so the WebRTC peer is the relayed connection's peer.
Every data channel after that is one libp2p stream (the spec's framing, as WebRTC-Direct).

py-libp2p 0.8.1 registers a ``/webrtc`` transport whose dial raises ``NotImplementedError``;
this module is ucsdk's. It uses aiortc (on py-libp2p's asyncio bridge thread) and
py-libp2p's data-channel connection (``WebRTCConnection``). aiortc gathers every candidate
before the description is set, so ucsdk's descriptions carry their candidates; ones that
arrive as ``ICE_CANDIDATE`` messages (js-libp2p trickles) are added too, up to a bound.

A hostile peer gets bounded work: one session per peer and :attr:`max_sessions` in total,
signalling messages of at most 16 KiB, 32 candidates, :attr:`timeout` seconds to connect;
candidates are used only when their address is public (or loopback/private with
``allow_private``, as for DCUtR's punches): ucsdk sends connectivity checks nowhere else on
a peer's word. Refusals are counted (``dropped``; ``webrtc_signaling_<reason>`` in the
node's metrics).

Example (no relay needed to build one):
    >>> from ucsdk.identity import new_key_pair
    >>> from ucsdk.transports.webrtc import webrtc_certificate
    >>> key = new_key_pair()
    >>> service = WebRTCPrivate(None, webrtc_certificate(key.private_key.to_bytes()))
    >>> service.max_sessions, dict(service.dropped)
    (16, {})
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.transport.webrtc._asyncio_bridge import AsyncioBridge
from libp2p.transport.webrtc.certificate import WebRTCCertificate
from libp2p.transport.webrtc.config import WebRTCTransportConfig
from libp2p.transport.webrtc.connection import WebRTCConnection
from multiaddr import Multiaddr

from ucsdk._conn import is_relayed
from ucsdk._service import Service
from ucsdk._wire import FramingError, close_quietly, read_delimited, write_delimited
from ucsdk.addresses import punch_target_allowed
from ucsdk.proto import SignalingMessage
from ucsdk.transports import webrtc as _webrtc  # noqa: F401  (its fixes to py-libp2p's WebRTC)

logger = logging.getLogger("UniversalConnectivity")

SIGNALING_PROTOCOL = TProtocol("/webrtc-signaling/0.0.1")
MAX_MESSAGE = 16 * 1024
"""Bytes in one signalling message (an SDP with its candidates is 1–3 KB)."""
MAX_CANDIDATES = 32
"""Candidates taken from one peer, in its description and in messages together."""

RELAYED_GRACE = 1.0
"""Seconds the relayed connection stays after the WebRTC one is up (streams on it finish)."""
INIT_CHANNEL_ID = 1023
"""The ``init`` data channel's SCTP stream id (streams count up from 0 and 1)."""

_CANDIDATE_LINE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$")


@dataclass
class WebRTCSession:
    """One private-to-private attempt, as :meth:`WebRTCPrivate.sessions` reports it."""

    peer_id: str
    role: str  # "initiator" (A, dialled through the relay) or "responder" (B)
    outcome: str = "pending"  # "connected" or "failed"
    reason: str = ""
    started: float = field(default_factory=time.monotonic)
    time_to_connected_ms: float | None = None
    remote_candidates: int = 0
    selected: str = ""  # local -> remote address of the pair ICE chose


async def _read_message(stream: INetStream) -> SignalingMessage:
    """One uvarint-length-prefixed ``Message``; :class:`FramingError` when too long or cut."""
    msg = SignalingMessage()
    msg.ParseFromString(await read_delimited(stream, MAX_MESSAGE))
    return msg


async def _write_message(stream: INetStream, kind: int, data: str) -> None:
    body = SignalingMessage(type=kind, data=data.encode()).SerializeToString()
    await write_delimited(stream, body)


class WebRTCPrivate(Service):
    """``/webrtc`` for a node: answers ``/webrtc-signaling/0.0.1`` and dials with it.

    ``host`` is the node's host; ``certificate`` its DTLS certificate (the WebRTC-Direct
    one, derived from the host key); ``stun_servers`` ``host:port`` texts (no STUN server:
    only host candidates, enough on one network); ``on_connection`` is called with each
    new WebRTC connection (``(peer_id, direction)``).
    """

    def __init__(
        self,
        host: IHost | None,
        certificate: WebRTCCertificate,
        *,
        stun_servers: list[str] | tuple[str, ...] = (),
        allow_private: bool = False,
        max_sessions: int = 16,
        timeout: float = 20.0,
        on_connection: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__()
        self.host = host
        self.certificate = certificate
        self.stun_servers = [f"stun:{s}" for s in stun_servers]
        self.allow_private = allow_private
        self.max_sessions = max_sessions
        self.timeout = timeout
        self.on_connection = on_connection
        self.dropped: collections.Counter[str] = collections.Counter()
        """Signalling refused or failed, by reason (``webrtc_signaling_<reason>`` in the
        node's metrics)."""
        self._sessions: collections.deque[WebRTCSession] = collections.deque(maxlen=256)
        self._active: dict[str, WebRTCSession] = {}
        self._bridge: AsyncioBridge | None = None
        self._bridge_lock = trio.Lock()
        self._config = WebRTCTransportConfig(
            certificate=certificate, handshake_timeout=timeout, ice_servers=[]
        )

    # ------------------------------------------------------------------ life cycle
    async def _on_start(self) -> None:
        assert self.host is not None
        self.host.set_stream_handler(SIGNALING_PROTOCOL, self._handle)

    async def _on_stop(self) -> None:
        if self.host is not None:
            with contextlib.suppress(Exception):
                self.host.remove_stream_handler(SIGNALING_PROTOCOL)
        async with self._bridge_lock:
            if self._bridge is not None:
                await self._bridge.stop()
                self._bridge = None

    def sessions(self) -> list[WebRTCSession]:
        """The newest 256 attempts, oldest first."""
        return list(self._sessions)

    async def _ensure_bridge(self) -> AsyncioBridge:
        async with self._bridge_lock:
            if self._bridge is None:
                self._bridge = AsyncioBridge()
                await self._bridge.start()
            return self._bridge

    # ------------------------------------------------------------------ the two roles
    async def dial(self, peer: ID) -> None:
        """Reach ``peer`` over WebRTC through the relayed connection the node holds to it
        (as *A*); raises :class:`ConnectionError` with the reason when it fails."""
        assert self.host is not None
        session = self._begin(peer.to_base58(), "initiator")
        stream: INetStream | None = None
        try:
            with trio.fail_after(self.timeout):
                stream = await self.host.new_stream(peer, [SIGNALING_PROTOCOL])
                await self._session(stream, peer, session)
        except BaseException as exc:
            self._fail(session, exc)
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.reset()
            # The session's reason says what went wrong; the chain below it (a stream the
            # other side reset as it gave up) would only hide that.
            raise ConnectionError(f"WebRTC to {peer}: {session.reason}") from None
        finally:
            self._active.pop(session.peer_id, None)

    async def _handle(self, stream: INetStream) -> None:
        """*B*: a peer sent its offer on a relayed connection."""
        peer = stream.muxed_conn.peer_id
        try:
            session = self._begin(peer.to_base58(), "responder")
        except ConnectionRefusedError:
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        try:
            with trio.fail_after(self.timeout):
                await self._session(stream, peer, session)
        except BaseException as exc:
            self._fail(session, exc)
            with contextlib.suppress(Exception):
                await stream.reset()
            if not isinstance(exc, Exception):
                raise
        finally:
            self._active.pop(session.peer_id, None)

    def _begin(self, peer: str, role: str) -> WebRTCSession:
        if peer in self._active:
            self.dropped["busy_with_peer"] += 1
            raise ConnectionRefusedError(f"a WebRTC session with {peer} is under way")
        if len(self._active) >= self.max_sessions:
            self.dropped["sessions_full"] += 1
            raise ConnectionRefusedError("too many WebRTC sessions under way")
        session = WebRTCSession(peer, role)
        self._active[peer] = session
        self._sessions.append(session)
        return session

    def _fail(self, session: WebRTCSession, exc: BaseException) -> None:
        usable = f"{session.remote_candidates} usable remote candidate(s)"
        detail = str(exc)
        if isinstance(exc, trio.TooSlowError):
            reason, detail = "timeout", f"no direct path within {self.timeout:g} s ({usable})"
        elif isinstance(exc, FramingError):
            reason = "malformed"
        elif isinstance(exc, _Refused):
            reason = exc.reason
        elif "ICE connection failed" in detail or isinstance(exc, TimeoutError):
            reason = "ice_failed"
            detail = f"ICE found no candidate pair that works between the two ({usable})"
        else:
            reason = "failed"
        self.dropped[reason] += 1
        session.outcome = "failed"
        session.reason = f"{reason}: {detail}".strip()[:200] if detail else reason

    async def _session(self, stream: INetStream, peer: ID, session: WebRTCSession) -> None:
        from aiortc import RTCSessionDescription
        from libp2p.transport.webrtc._aiortc_helpers import (
            close_peer_connection,
            create_peer_connection,
            wait_for_connected,
            wire_pc_to_connection,
        )

        bridge = await self._ensure_bridge()
        rtc_cert = self.certificate._rtc_certificate  # type: ignore[attr-defined]
        initiator = session.role == "initiator"
        conn = WebRTCConnection(
            peer_id=peer, bridge=bridge, is_initiator=initiator, config=self._config
        )

        async def make() -> Any:
            pc = await create_peer_connection(rtc_cert, ice_servers=self.stun_servers)
            # Streams the peer opens must find the connection wired from the start.
            wire_pc_to_connection(pc, conn)
            return pc

        pc = await bridge.run_coro(make())
        init: list[Any] = []
        try:
            if initiator:

                async def offer() -> str:
                    # An "init" channel makes the offer carry the data-channel section;
                    # it is closed once the connection is up (spec step 8). Negotiated, on an
                    # id streams never use: the peer never sees it as a stream, and its
                    # closing cannot collide with a stream opened on a recycled id.
                    init.append(pc.createDataChannel("init", negotiated=True, id=INIT_CHANNEL_ID))
                    await pc.setLocalDescription(await pc.createOffer())
                    return str(pc.localDescription.sdp)

                await _write_message(
                    stream, SignalingMessage.SDP_OFFER, await bridge.run_coro(offer())
                )
                answer = await self._expect(stream, SignalingMessage.SDP_ANSWER)
                remote = self._filter_sdp(answer, session)
                await bridge.run_coro(
                    pc.setRemoteDescription(RTCSessionDescription(sdp=remote, type="answer"))
                )
            else:
                offer_sdp = self._filter_sdp(
                    await self._expect(stream, SignalingMessage.SDP_OFFER), session
                )

                async def answer_it() -> str:
                    await pc.setRemoteDescription(
                        RTCSessionDescription(sdp=offer_sdp, type="offer")
                    )
                    await pc.setLocalDescription(await pc.createAnswer())
                    return str(pc.localDescription.sdp)

                await _write_message(
                    stream, SignalingMessage.SDP_ANSWER, await bridge.run_coro(answer_it())
                )
            # Our candidates are in our description; then the end of them, JSON null (the
            # browser's null candidate). Not an empty string: js-libp2p parses each message
            # as JSON, and "" would end its reading with an error and close the stream
            # before its own candidates are through.
            await _write_message(stream, SignalingMessage.ICE_CANDIDATE, "null")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._take_candidates, stream, pc, bridge, session)
                await bridge.run_coro(wait_for_connected(pc, timeout=self.timeout))
                nursery.cancel_scope.cancel()
            if init:

                async def close_init() -> None:
                    for channel in init:
                        channel.close()

                await bridge.run_coro(close_init())
            session.selected, where = _selected_pair(pc)
            if where is not None:
                conn._remote_addrs = [where]
            await conn.start()
            await self.host.get_network().add_conn(  # type: ignore[union-attr, attr-defined]
                conn, direction="outbound" if initiator else "inbound"
            )
        except BaseException:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(5),
                contextlib.suppress(Exception),
            ):
                await bridge.run_coro(close_peer_connection(pc))
            raise
        session.outcome = "connected"
        session.time_to_connected_ms = (time.monotonic() - session.started) * 1000
        if initiator:
            self.spawn(self._close_relayed_later, peer, conn)
        with contextlib.suppress(Exception):
            await stream.close()
        if self.on_connection is not None:
            self.on_connection(session.peer_id, "outbound" if initiator else "inbound")

    async def _close_relayed_later(self, peer: ID, direct: WebRTCConnection) -> None:
        """As after a DCUtR upgrade: once the WebRTC connection has held for a grace
        period, the relayed one (with its relay's time and data limits) is closed."""
        await trio.sleep(RELAYED_GRACE)
        if direct.is_closed or self.host is None:
            return
        for conn in list(self.host.get_network().connections.get(peer, [])):
            if is_relayed(conn):
                await close_quietly(conn, 3)

    async def _expect(self, stream: INetStream, kind: int) -> str:
        while True:
            msg = await _read_message(stream)
            if not msg.HasField("type"):  # would read as SDP_OFFER (0)
                raise _Refused("unexpected_message", "a message without a type")
            if msg.type == kind:
                return bytes(msg.data).decode("utf-8", "replace")
            if msg.type != SignalingMessage.ICE_CANDIDATE:
                raise _Refused("unexpected_message", f"message type {msg.type}")
            # A candidate before the description: nothing to add it to yet; dropped.
            self.dropped["early_candidate"] += 1

    async def _take_candidates(
        self, stream: INetStream, pc: Any, bridge: AsyncioBridge, session: WebRTCSession
    ) -> None:
        """Trickled candidates (js-libp2p sends each in a message), until the empty one."""
        from aiortc.sdp import candidate_from_sdp

        while True:
            try:
                msg = await _read_message(stream)
            except Exception:
                return  # the stream ended (or framing broke): the description had them all
            text = bytes(msg.data).decode("utf-8", "replace")
            if not msg.HasField("type") or msg.type != SignalingMessage.ICE_CANDIDATE:
                return
            if text in ("", "null", '""'):
                return
            line = _candidate_of_json(text)
            if line is None or not self._allowed(line, session):
                continue
            candidate = candidate_from_sdp(line.split(":", 1)[1])
            candidate.sdpMid = "0"
            with contextlib.suppress(Exception):
                await bridge.run_coro(pc.addIceCandidate(candidate))

    # ------------------------------------------------------------------ candidates
    def _allowed(self, line: str, session: WebRTCSession) -> bool:
        """Whether a ``a=candidate:`` line may be used (within the bound, allowed scope)."""
        match = _CANDIDATE_LINE.match(line.strip())
        if match is None:
            self.dropped["candidate_malformed"] += 1
            return False
        if session.remote_candidates >= MAX_CANDIDATES:
            self.dropped["candidates_full"] += 1
            return False
        protocol, ip, port = match.group(3).lower(), match.group(5), match.group(6)
        if protocol != "udp":
            self.dropped["candidate_not_udp"] += 1
            return False
        addr = f"/ip6/{ip}/udp/{port}" if ":" in ip else f"/ip4/{ip}/udp/{port}"
        if not punch_target_allowed(addr, self.allow_private):
            self.dropped["candidate_refused"] += 1
            return False
        session.remote_candidates += 1
        return True

    def _filter_sdp(self, sdp: str, session: WebRTCSession) -> str:
        """``sdp`` with only the candidates :meth:`_allowed` lets through."""
        if len(sdp) > MAX_MESSAGE:
            raise _Refused("malformed", "description too long")
        lines = sdp.replace("\r\n", "\n").split("\n")
        kept = [
            line
            for line in lines
            if not line.startswith("a=candidate:") or self._allowed(line, session)
        ]
        return "\r\n".join(kept)


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _candidate_of_json(text: str) -> str | None:
    """The ``a=candidate:...`` line in a trickled ``RTCIceCandidate.toJSON()`` text."""
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return None
    candidate = value.get("candidate") if isinstance(value, dict) else None
    if not isinstance(candidate, str) or not candidate.startswith("candidate:"):
        return None
    return "a=" + candidate


def _selected_pair(pc: Any) -> tuple[str, Multiaddr | None]:
    """``local -> remote`` of the pair ICE nominated, and the remote as a ``/webrtc``
    multiaddr (read from aioice's nominated pair; empty when it cannot be read)."""
    try:
        connection = pc.sctp.transport.transport._connection
        pair = next(iter(connection._nominated.values()))
        local, remote = pair.local_candidate, pair.remote_candidate
    except Exception:
        return "", None
    text = (
        f"{local.host}:{local.port} ({local.type}) -> {remote.host}:{remote.port} ({remote.type})"
    )
    ip = ipaddress.ip_address(remote.host)
    return text, Multiaddr(f"/ip{ip.version}/{ip}/udp/{remote.port}/webrtc")
