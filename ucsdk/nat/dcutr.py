"""DCUtR (``/libp2p/dcutr``): upgrade a relayed connection to a direct one by hole punching.

The module is ~650 lines: both roles of the exchange and the TCP and QUIC punches, which
py-libp2p's dialers cannot do (a QUIC handshake from a socket bound for the attempt).

Roles, as in the spec: ``A`` dialled ``B`` through a relay; ``B`` (the inbound side) drives.

1. If ``A`` advertises a public address, ``B`` first dials it directly (unilateral upgrade).
2. Otherwise ``B`` opens ``/libp2p/dcutr`` on the relayed connection and sends ``CONNECT``
   with its addresses, timing the round trip; ``A`` answers ``CONNECT`` with its own;
   ``B`` sends ``SYNC`` and waits half the round trip; ``A`` dials as soon as ``SYNC``
   arrives, ``B`` when its timer ends. Both TCP dials leave at about the same moment, so
   each NAT has a mapping for the other's packets when they arrive (TCP simultaneous open).
3. Up to three attempts, each with a fresh ``CONNECT``/``SYNC`` on the same stream.

Transport: TCP when both sides offered TCP addresses, else QUIC when both offered QUIC.
For QUIC, ``B`` is the QUIC client: its handshake leaves from a UDP socket bound for the
attempt (so its address is predictable), while ``A`` sends random datagrams from its QUIC
listener towards that address, opening its NAT, until ``B``'s connection arrives.

The addresses exchanged are *predicted*: the public IP other peers observe this node at,
with the local port of a socket bound for this attempt. A NAT that maps endpoint
independently and keeps the port (a typical home router) maps that socket to exactly that
public address; a symmetric NAT picks another port per destination, so the prediction is
wrong and the punch fails — which the outcome's ``reason`` says. On success the direct
connection is secured and multiplexed like any other (``B`` is the Noise initiator, as in
go-libp2p), and the relayed connection is closed after a short grace period.

Rules against a hostile peer (any connected peer can name any address in CONNECT): the
responder answers only over a relayed connection (go-libp2p's holepunch service resets
other streams too), one exchange per peer at a time and ``max_inbound`` in total; both
roles punch only towards public addresses (``allow_private`` widens that to loopback and
private ones, for the lab and development); at most ``MAX_ATTEMPTS`` attempts and
``MAX_PUNCH_DATAGRAMS`` QUIC datagrams per attempt. Each refusal is counted in ``dropped``
(``not_relayed``, ``busy_peer``, ``too_many``, ``address_refused``, ``malformed_addr``).

Wire format: uvarint-prefixed ``HolePunch{type: CONNECT=100 | SYNC=300; repeated bytes
ObsAddrs=2}``, at most 4 KiB.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetConn, INetStream
from libp2p.custom_types import TProtocol
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID

from ucsdk import errors
from ucsdk._conn import close_quietly, connection_of, is_relayed
from ucsdk._service import Service
from ucsdk._wire import FramingError, read_delimited, write_delimited
from ucsdk.addresses import punch_target_allowed
from ucsdk.config import transport_of
from ucsdk.proto import HolePunch

logger = logging.getLogger("UniversalConnectivity.dcutr")

DCUTR_PROTOCOL = TProtocol("/libp2p/dcutr")
CONNECT, SYNC = 100, 300
MAX_MESSAGE = 4096
MAX_ATTEMPTS = 3
MAX_UNILATERAL_ADDRS = 4
"""Public addresses of the peer tried, one after another, before the hole punch."""
STREAM_TIMEOUT = 10.0
MAX_INBOUND = 8
"""DCUtR exchanges answered at once, in total (one per peer at a time)."""
MAX_PUNCH_DATAGRAMS = 50
"""Random datagrams sent towards one QUIC punch target per attempt."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class HolePunchResult:
    """One hole-punch attempt series with a peer (what ``hole_punches()`` rows show)."""

    time: datetime
    peer_id: str
    relay_peer_id: str | None
    role: str  # "initiator" (B, drives) or "responder" (A)
    transport: str
    attempts: int
    rtt_ms: float | None
    time_to_direct_ms: float | None
    outcome: str  # "direct_dial" | "success" | "failed" | "no_addresses" | "error"
    reason: str
    remote_addrs: tuple[str, ...] = ()
    local_addrs: tuple[str, ...] = ()

    @property
    def success(self) -> bool:
        return self.outcome in ("success", "direct_dial")


def _public_ip(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast:
        return False
    # RFC 1918/6598 ranges are private; documentation ranges count as public (the lab).
    private = ("10.", "192.168.", "172.16.", "100.64.")
    return not (str(ip).startswith(private) or (str(ip).startswith("172.") and ip.is_private))


def _targets(addrs: Sequence[str], kind: str) -> list[tuple[str, int]]:
    """``(ip, port)`` of the direct IPv4 addresses of one transport (``tcp`` or ``quic``).

    Example:
        >>> _targets(["/ip4/198.51.100.7/udp/4001/quic-v1", "/ip4/198.51.100.7/tcp/9"], "quic")
        [('198.51.100.7', 4001)]
    """
    out = []
    for addr in addrs:
        parts = addr.split("/")
        if len(parts) < 5 or parts[1] != "ip4" or "/p2p-circuit" in addr:
            continue
        is_tcp = parts[3] == "tcp"
        is_quic = parts[3] == "udp" and len(parts) >= 6 and parts[5] == "quic-v1"
        if (kind == "tcp" and is_tcp) or (kind == "quic" and is_quic):
            with contextlib.suppress(ValueError):
                out.append((parts[2], int(parts[4])))
    return out


def _tcp_targets(addrs: Sequence[str]) -> list[tuple[str, int]]:
    return _targets(addrs, "tcp")


def _quic_targets(addrs: Sequence[str]) -> list[tuple[str, int]]:
    return _targets(addrs, "quic")


def _quic_transport(host: IHost) -> Any:
    """py-libp2p's QUIC transport of this host, if it has one."""
    manager = getattr(host.get_network(), "transport_manager", None)
    for transport in manager.get_transports() if manager is not None else []:
        if type(transport).__name__ == "QUICTransport":
            return transport
    return None


async def _quic_dial_from(
    host: IHost, sock: Any, target: tuple[str, int], peer: ID, timeout: float
) -> INetConn:
    """A QUIC connection to ``peer`` at ``target`` sent from ``sock`` (bound already, so the
    peer knows which address to punch towards). py-libp2p's own dialer always binds a new
    random port, so the connection is built here from its parts."""
    import copy

    from libp2p.transport.quic.connection import QUICConnection
    from libp2p.transport.quic.utils import multiaddr_to_quic_version

    try:
        from aioquic.quic.connection import QuicConnection as NativeQUICConnection
    except ImportError as exc:  # pragma: no cover - aioquic comes with libp2p
        raise errors.DialError(peer.to_base58(), [], "QUIC support is missing") from exc

    transport = _quic_transport(host)
    if transport is None:
        raise errors.DialError(peer.to_base58(), [], "this node has no QUIC transport")
    maddr = multiaddr.Multiaddr(f"/ip4/{target[0]}/udp/{target[1]}/quic-v1/p2p/{peer}")
    config = copy.copy(
        transport._quic_configs[TProtocol(f"{multiaddr_to_quic_version(maddr)}_client")]
    )
    config.is_client = True
    conn = QUICConnection(
        quic_connection=NativeQUICConnection(configuration=config),
        remote_addr=target,
        remote_peer_id=peer,
        local_peer_id=transport._peer_id,
        is_initiator=True,
        maddr=maddr,
        transport=transport,
        security_manager=transport._security_manager,
        listener_socket=sock,
    )
    conn._owns_socket = True  # closed with the connection

    async def initiate() -> None:  # the socket is bound already: no second bind
        conn._quic.connect(conn._remote_addr, now=time.time())
        await conn._transmit()

    conn._initiate_connection = initiate  # type: ignore[method-assign]
    try:
        with trio.fail_after(timeout):
            await conn.connect(transport._background_nursery)
    except BaseException:
        await close_quietly(conn)
        raise
    swarm: Any = host.get_network()
    result: INetConn = await swarm.add_conn(conn, direction="outbound")
    return result


async def _udp_socket() -> Any:
    """A UDP socket on a fresh port: a QUIC dial leaves from it, so its port is predictable."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("0.0.0.0", 0))
    return sock


class _Punch:
    """A TCP socket bound to a fresh local port, for one attempt."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.owned = True  # until a connection takes the socket over

    @classmethod
    async def open(cls) -> _Punch:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind(("0.0.0.0", 0))
        return cls(sock)

    async def connect(self, target: tuple[str, int], timeout: float) -> trio.SocketStream:
        with trio.fail_after(timeout):
            await self.sock.connect(target)
        return trio.SocketStream(self.sock)

    def close(self) -> None:
        if self.owned:
            with contextlib.suppress(Exception):
                self.sock.close()


class DCUtR(Service):
    """Direct Connection Upgrade through Relay, over TCP or QUIC.

    ``attempt_hole_punch(remote_peer_id, relay_peer_id)`` drives an upgrade (as ``B``);
    the stream handler answers one (as ``A``). ``public_ips`` returns the IPs other peers
    observe this node at (the manager passes identify's observations); ``results`` keeps
    every outcome; ``on_result`` is called with each.
    """

    def __init__(
        self,
        host: IHost,
        *,
        public_ips: Callable[[], Sequence[str]] | None = None,
        dial_timeout: float = 5.0,
        grace_period: float = 1.0,
        on_result: Callable[[HolePunchResult], None] | None = None,
        max_results: int = 1000,
        transports: Sequence[str] = ("tcp", "quic"),
        allow_private: bool = False,
        max_inbound: int = MAX_INBOUND,
    ) -> None:
        super().__init__()
        self.host = host
        self.transports = tuple(transports)
        self.public_ips = public_ips
        self.dial_timeout = dial_timeout
        self.grace_period = grace_period
        self.on_result = on_result
        self.results: collections.deque[HolePunchResult] = collections.deque(maxlen=max_results)
        self.dropped: collections.Counter[str] = collections.Counter()
        self._active: set[str] = set()
        self.allow_private = allow_private
        """Punch towards loopback and private addresses too (the lab, development)."""
        self.max_inbound = max_inbound
        self._answering: set[str] = set()

    async def _on_start(self) -> None:
        self.host.set_stream_handler(DCUTR_PROTOCOL, self._handle)

    async def _on_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.host.remove_stream_handler(DCUTR_PROTOCOL)

    # ---------------------------------------------------------------- helpers
    def _ips(self) -> list[str]:
        ips = list(self.public_ips()) if self.public_ips is not None else []
        for addr in self.host.get_addrs():
            if "/p2p-circuit" in str(addr):
                continue  # the relay's address, not ours
            parts = str(addr).split("/")
            if len(parts) > 2 and parts[1] == "ip4" and _public_ip(parts[2]):
                ips.append(parts[2])
        return list(dict.fromkeys(ip for ip in ips if _public_ip(ip)))

    def _obs_addrs(self, port: int) -> list[str]:
        return [f"/ip4/{ip}/tcp/{port}" for ip in self._ips()]

    def _quic_listen_port(self) -> int | None:
        transport = _quic_transport(self.host) if "quic" in self.transports else None
        sock = transport.get_listener_socket() if transport is not None else None
        return int(sock.getsockname()[1]) if sock is not None else None

    def _offer(self, tcp_port: int | None, quic_port: int | None) -> list[str]:
        """Our predicted addresses for this attempt: TCP on the punch socket's port, QUIC on
        the port the QUIC packets will leave from."""
        out = self._obs_addrs(tcp_port) if tcp_port is not None else []
        if quic_port is not None:
            out += [f"/ip4/{ip}/udp/{quic_port}/quic-v1" for ip in self._ips()]
        return out

    @staticmethod
    def _choose(local: Sequence[str], remote: Sequence[str]) -> str | None:
        """The transport both sides offered: TCP when both did, else QUIC (both sides
        apply the same rule to the same two offers)."""
        if _tcp_targets(local) and _tcp_targets(remote):
            return "tcp"
        if _quic_targets(local) and _quic_targets(remote):
            return "quic"
        return None

    def _direct(self, peer: ID) -> list[INetConn]:
        conns = self.host.get_network().connections.get(peer, [])
        return [c for c in conns if not is_relayed(c)]

    def _relayed(self, peer: ID) -> list[INetConn]:
        conns = self.host.get_network().connections.get(peer, [])
        return [c for c in conns if is_relayed(c)]

    def _record(self, result: HolePunchResult) -> HolePunchResult:
        self.results.append(result)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                logger.exception("hole-punch callback raised")
        return result

    async def _close_relayed_later(self, peer: ID) -> None:
        await trio.sleep(self.grace_period)
        if not self._direct(peer):
            return
        for conn in self._relayed(peer):
            await close_quietly(conn, 3)

    def _after_success(self, peer: ID) -> None:
        self.spawn(self._close_relayed_later, peer)

    async def _send(self, stream: INetStream, kind: int, addrs: Sequence[str] = ()) -> None:
        message = HolePunch(type=kind)
        for addr in addrs:
            message.ObsAddrs.append(multiaddr.Multiaddr(addr).to_bytes())
        await write_delimited(stream, message.SerializeToString())

    async def _receive(self, stream: INetStream, *, end_ok: bool = False) -> Any:
        """The next HolePunch on ``stream``; the stream ending (or stalling) first is
        counted unless ``end_ok`` (the peer may stop between attempts)."""
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                return HolePunch.FromString(await read_delimited(stream, MAX_MESSAGE))
        except (DecodeError, FramingError):
            self.dropped["malformed"] += 1  # over 4 KiB, or not a HolePunch
            raise
        except trio.TooSlowError:
            self.dropped["timeout"] += 1
            raise
        except Exception:
            if not end_ok:
                self.dropped["truncated"] += 1  # the stream ended (or was reset) mid-protocol
            raise

    def _addrs_of(self, message: Any) -> list[str]:
        """The addresses in a peer's message that a punch may go to: public ones (and
        loopback/private ones with ``allow_private``); each other one is counted in
        ``dropped["address_refused"]`` and never dialled."""
        out = []
        for raw in list(message.ObsAddrs)[:16]:
            try:
                addr = str(multiaddr.Multiaddr(raw))
            except Exception:
                self.dropped["malformed_addr"] += 1
                continue
            if punch_target_allowed(addr, self.allow_private):
                out.append(addr)
            else:
                self.dropped["address_refused"] += 1
        return out

    async def _upgrade(self, stream: trio.SocketStream, peer: ID, initiator: bool) -> INetConn:
        raw = RawConnection(TrioTCPStream(stream), initiator)
        swarm: Any = self.host.get_network()
        if initiator:
            conn: INetConn = await swarm.upgrade_outbound_raw_conn(raw, peer)
            return conn
        remote = stream.socket.getpeername()
        await swarm.upgrade_inbound_raw_conn(
            raw, multiaddr.Multiaddr(f"/ip4/{remote[0]}/tcp/{remote[1]}")
        )
        direct = self._direct(peer)
        if not direct:
            raise errors.DialError(
                peer.to_base58(), [], "the upgraded connection is not from the peer"
            )
        return direct[-1]

    # ---------------------------------------------------------------- B: drive
    async def attempt_hole_punch(
        self, remote_peer_id: str | ID, relay_peer_id: str | ID | None = None
    ) -> bool:
        """Upgrade the relayed connection with ``remote_peer_id`` to a direct one; True when a
        direct connection exists afterwards. Outcomes are in ``results``."""
        peer = remote_peer_id if isinstance(remote_peer_id, ID) else ID.from_base58(remote_peer_id)
        relay = relay_peer_id.to_base58() if isinstance(relay_peer_id, ID) else relay_peer_id
        key = peer.to_base58()
        if self._direct(peer):
            return True
        if key in self._active:
            return False
        self._active.add(key)
        started = time.perf_counter()
        try:
            return await self._drive(peer, key, relay, started)
        finally:
            self._active.discard(key)

    async def _drive(self, peer: ID, key: str, relay: str | None, started: float) -> bool:
        """The hole punch, and beside it a plain dial of the peer's public addresses: a
        peer that is public (or port-forwarded) is reached by that dial at once, even when
        this node's NAT would defeat the punch; a NATed one costs the dial nothing but a
        refused or unanswered connection while the punch goes on."""
        known = [str(a) for a in self.host.get_peerstore().addrs(peer)]
        public = [
            a
            for a in known
            if "/p2p-circuit" not in a and _tcp_targets([a]) and _public_ip(a.split("/")[2])
        ][:MAX_UNILATERAL_ADDRS]
        dialled: list[str] = []
        punched = False
        async with trio.open_nursery() as nursery:
            punch_scope = trio.CancelScope()

            async def unilateral() -> None:
                addr = await self._dial_public(peer, key, public)
                if addr is not None:
                    dialled.append(addr)
                    punch_scope.cancel()

            if public:
                nursery.start_soon(unilateral)
            with punch_scope:
                punched = await self._punch(peer, key, relay, started)
            nursery.cancel_scope.cancel()
        if punched or not dialled:
            return punched
        self._record(
            HolePunchResult(
                utcnow(),
                key,
                relay,
                "initiator",
                transport_of(dialled[0]) or "tcp",
                0,
                None,
                round((time.perf_counter() - started) * 1000, 1),
                "direct_dial",
                f"the peer was reachable directly at {dialled[0]}",
                tuple(public),
                (),
            )
        )
        self._after_success(peer)
        return True

    async def _dial_public(self, peer: ID, key: str, public: list[str]) -> str | None:
        """Dial ``public`` one after another, each on a new connection (py-libp2p's
        ``dial_peer`` hands back the relayed connection instead); the address that
        connected, or ``None`` within ``dial_timeout``."""
        network: Any = self.host.get_network()
        with trio.move_on_after(self.dial_timeout):
            for addr in public:
                unblock = getattr(network, "unblock_peer", None)
                if callable(unblock):
                    unblock(peer)
                try:
                    await network.dial_addr(multiaddr.Multiaddr(addr), peer)
                except Exception as exc:
                    logger.debug("DCUtR: direct dial to %s at %s failed: %s", key, addr, exc)
                    continue
                return addr
        return None

    async def _punch(self, peer: ID, key: str, relay: str | None, started: float) -> bool:
        used = "tcp" if "tcp" in self.transports else "quic"

        def done(
            outcome: str,
            reason: str,
            attempts: int,
            rtt: float | None = None,
            remote: Sequence[str] = (),
            local: Sequence[str] = (),
        ) -> bool:
            ok = outcome in ("success", "direct_dial")
            self._record(
                HolePunchResult(
                    utcnow(),
                    key,
                    relay,
                    "initiator",
                    used,
                    attempts,
                    None if rtt is None else round(rtt * 1000, 2),
                    round((time.perf_counter() - started) * 1000, 1) if ok else None,
                    outcome,
                    reason,
                    tuple(remote),
                    tuple(local),
                )
            )
            if ok:
                self._after_success(peer)
            return ok

        # 2. The protocol, on the relayed connection.
        if not self._relayed(peer):
            return done("error", "no relayed connection to upgrade", 0)
        if not self._ips():
            return done(
                "no_addresses",
                "this node knows no public address of its own (no observations yet)",
                0,
            )
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                stream = await self.host.new_stream(peer, [DCUTR_PROTOCOL])
        except Exception as exc:
            return done("error", f"could not open the DCUtR stream: {type(exc).__name__} {exc}", 0)
        reasons = []
        rtt = None
        remote: list[str] = []
        local: list[str] = []
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                punch = await _Punch.open() if "tcp" in self.transports else None
                udp = await _udp_socket() if self._quic_listen_port() is not None else None
                try:
                    local = self._offer(
                        punch.port if punch else None,
                        int(udp.getsockname()[1]) if udp is not None else None,
                    )
                    sent = time.perf_counter()
                    await self._send(stream, CONNECT, local)
                    reply = await self._receive(stream)
                    rtt = time.perf_counter() - sent
                    if reply.type != CONNECT:
                        self.dropped["unexpected"] += 1
                        return done(
                            "error", "the peer did not answer CONNECT", attempt, rtt, remote, local
                        )
                    remote = self._addrs_of(reply)
                    kind = self._choose(local, remote)
                    if kind is None:
                        return done(
                            "no_addresses",
                            "no transport both sides offered addresses for (TCP or QUIC)",
                            attempt,
                            rtt,
                            remote,
                            local,
                        )
                    used = kind
                    targets = _tcp_targets(remote) if kind == "tcp" else _quic_targets(remote)
                    await self._send(stream, SYNC)
                    await trio.sleep(rtt / 2)
                    try:
                        if kind == "tcp":
                            assert punch is not None
                            sock_stream = await punch.connect(targets[0], self.dial_timeout)
                            await self._upgrade(sock_stream, peer, initiator=True)
                            punch.owned = False  # the connection owns the socket now
                        else:
                            await _quic_dial_from(
                                self.host, udp, targets[0], peer, self.dial_timeout
                            )
                            udp = None  # the connection owns the socket now
                    except trio.TooSlowError:
                        host_, port_ = targets[0]
                        reasons.append(
                            f"attempt {attempt}: no answer from {host_}:{port_}"
                            f" within {self.dial_timeout:g} s"
                        )
                        continue
                    except OSError as exc:
                        reasons.append(f"attempt {attempt}: {exc.strerror or exc}")
                        continue
                    return done(
                        "success",
                        f"direct {kind.upper()} connection on attempt {attempt}",
                        attempt,
                        rtt,
                        remote,
                        local,
                    )
                except (trio.TooSlowError, Exception) as exc:
                    if self._direct(peer):
                        return done(
                            "success",
                            f"direct connection (attempt {attempt})",
                            attempt,
                            rtt,
                            remote,
                            local,
                        )
                    reasons.append(f"attempt {attempt}: {type(exc).__name__} {exc}".strip())
                finally:
                    if punch is not None:
                        punch.close()
                    if udp is not None:
                        udp.close()
            hint = ""
            if len(reasons) == MAX_ATTEMPTS and all("no answer" in r for r in reasons):
                hint = (
                    " (no packet got through: a NAT that maps each destination to a new"
                    " port, a symmetric NAT, is suspected)"
                )
            return done("failed", "; ".join(reasons) + hint, MAX_ATTEMPTS, rtt, remote, local)
        finally:
            await close_quietly(stream)

    async def _punch_quic(self, peer: ID, target: tuple[str, int]) -> bool:
        """QUIC, as the side being dialled: send random datagrams from the QUIC listener's
        socket to the dialler's predicted address (opening our NAT for it) until its
        connection arrives on the listener."""
        transport = _quic_transport(self.host)
        sock = transport.get_listener_socket() if transport is not None else None
        if sock is None:
            return False
        sent = 0
        with trio.move_on_after(self.dial_timeout):
            while not self._direct(peer):
                if sent < MAX_PUNCH_DATAGRAMS:
                    with contextlib.suppress(OSError):
                        await sock.sendto(os.urandom(64), target)
                    sent += 1
                # Quickly at first (the NAT mapping is needed now), then slower.
                await trio.sleep(0.02 if sent < MAX_PUNCH_DATAGRAMS // 2 else 0.2)
        return bool(self._direct(peer))

    # ---------------------------------------------------------------- A: answer
    async def _handle(self, stream: INetStream) -> None:
        """Answer one exchange, if the rules allow it: only over a relayed connection (as
        go-libp2p's holepunch service does), one per peer at a time, ``max_inbound`` in
        total. A refused stream is reset and counted."""
        peer = stream.muxed_conn.peer_id
        key = peer.to_base58()
        reason = None
        if not is_relayed(connection_of(self.host, stream)):
            reason = "not_relayed"
        elif key in self._answering:
            reason = "busy_peer"
        elif len(self._answering) >= self.max_inbound:
            reason = "too_many"
        if reason is not None:
            self.dropped[reason] += 1
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        self._answering.add(key)
        try:
            await self._answer(stream, peer, key)
        finally:
            self._answering.discard(key)

    async def _answer(self, stream: INetStream, peer: ID, key: str) -> None:
        started = time.perf_counter()
        attempts = 0
        remote: list[str] = []
        local: list[str] = []
        reasons = []
        used = "tcp" if "tcp" in self.transports else "quic"
        try:
            while attempts < MAX_ATTEMPTS:
                try:
                    message = await self._receive(stream, end_ok=attempts > 0)
                except Exception:
                    break  # B is done (or gone)
                if message.type != CONNECT:
                    self.dropped["unexpected"] += 1
                    break
                attempts += 1
                remote = self._addrs_of(message)
                punch = await _Punch.open() if "tcp" in self.transports else None
                try:
                    local = self._offer(punch.port if punch else None, self._quic_listen_port())
                    await self._send(stream, CONNECT, local)
                    sync = await self._receive(stream)
                    if sync.type != SYNC:
                        self.dropped["unexpected"] += 1
                        break
                    kind = self._choose(local, remote)
                    if kind is None:
                        reasons.append("no transport both sides offered addresses for")
                        continue
                    used = kind
                    if kind == "tcp":
                        assert punch is not None
                        try:
                            target = _tcp_targets(remote)[0]
                            sock_stream = await punch.connect(target, self.dial_timeout)
                        except (trio.TooSlowError, OSError) as exc:
                            reasons.append(f"attempt {attempts}: {type(exc).__name__}")
                            continue
                        await self._upgrade(sock_stream, peer, initiator=False)
                        punch.owned = False
                    elif not await self._punch_quic(peer, _quic_targets(remote)[0]):
                        reasons.append(f"attempt {attempts}: no QUIC connection arrived")
                        continue
                    self._record(
                        HolePunchResult(
                            utcnow(),
                            key,
                            None,
                            "responder",
                            kind,
                            attempts,
                            None,
                            round((time.perf_counter() - started) * 1000, 1),
                            "success",
                            f"direct {kind.upper()} connection on attempt {attempts}",
                            tuple(remote),
                            tuple(local),
                        )
                    )
                    self._after_success(peer)
                    return
                except Exception as exc:
                    reasons.append(f"attempt {attempts}: {type(exc).__name__} {exc}".strip())
                finally:
                    if punch is not None:
                        punch.close()
            if attempts:
                self._record(
                    HolePunchResult(
                        utcnow(),
                        key,
                        None,
                        "responder",
                        used,
                        attempts,
                        None,
                        None,
                        "failed",
                        "; ".join(reasons) or "the initiator gave up",
                        tuple(remote),
                        tuple(local),
                    )
                )
        finally:
            await close_quietly(stream)


__all__ = ["DCUTR_PROTOCOL", "DCUtR", "HolePunchResult"]
