"""Circuit Relay v2: reservations, relayed connections, limits (libp2p specs, circuit-v2).

The module is ~900 lines: both sides of one protocol (server and client), their shared
message handling and the voucher (a signed envelope), which change together.

A peer behind NAT reserves a slot on a public relay (``hop`` protocol, ``RESERVE``) and then
advertises ``<relay address>/p2p/<relay id>/p2p-circuit``. Another peer dials that address:
it asks the relay to ``CONNECT`` it to the target; the relay opens a ``stop`` stream to the
target, and the two streams are joined. The joined stream is then secured (Noise) and
multiplexed (Yamux) end to end like any connection, so the relay sees only ciphertext.

ucsdk's server grants a reservation only to the peer actually on the stream (a ``peer``
field naming someone else is refused), never over a relayed connection, within limits per
peer, per IP and in total; it signs a voucher (a signed envelope, domain
``libp2p-relay-rsvp``); it closes a circuit cleanly when its duration or data limit is used
up. The client keeps its reservations refreshed, advertises its circuit addresses (identify
and pubsub discovery), accepts relayed connections only through relays it reserved on,
and dials circuit addresses for the manager's dial strategy.

Example (three hosts on loopback: A reaches B through relay R):
    >>> import trio
    >>> from ucsdk.nat.relay import demo_three_hosts
    >>> trio.run(demo_three_hosts)
    ('OK', True, 'relay')
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import ConnectionType, IHost, INetConn, INetStream
from libp2p.crypto.keys import PrivateKey
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.custom_types import TProtocol
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from ucsdk import errors
from ucsdk._conn import (
    close_quietly,
    connection_of,
    ip_of,
    is_relayed,
    remote_address,
    socket_ip,
)
from ucsdk._service import Service
from ucsdk._wire import FramingError, encode_uvarint, read_delimited, write_delimited
from ucsdk.addresses import parse_circuit
from ucsdk.proto import Envelope, HopMessage, StopMessage, Voucher
from ucsdk.protocols import ping_rtts

logger = logging.getLogger("UniversalConnectivity.relay")

HOP_PROTOCOL = TProtocol("/libp2p/circuit/relay/0.2.0/hop")
STOP_PROTOCOL = TProtocol("/libp2p/circuit/relay/0.2.0/stop")
MAX_MESSAGE = 4096
MESSAGE_TIMEOUT = 10.0
UNKNOWN_IP = "unknown"
"""The per-IP group of peers whose IP the relay cannot learn (when they are allowed)."""
CIRCUIT_WATCH_INTERVAL = 0.5
"""Seconds between checks that both sides of a circuit are still connected."""
MAX_RESERVATION_TTL = 365 * 24 * 3600
"""Seconds; a reservation that ends later than this (or has ended) is a malformed reply."""

RESERVE, CONNECT, STATUS = 0, 1, 2  # HopMessage.Type
STOP_CONNECT, STOP_STATUS = 0, 1  # StopMessage.Type
OK = 100
RESERVATION_REFUSED = 200
RESOURCE_LIMIT_EXCEEDED = 201
PERMISSION_DENIED = 202
CONNECTION_FAILED = 203
NO_RESERVATION = 204
MALFORMED_MESSAGE = 400
UNEXPECTED_MESSAGE = 401
STATUS_NAMES = {
    OK: "OK",
    RESERVATION_REFUSED: "RESERVATION_REFUSED",
    RESOURCE_LIMIT_EXCEEDED: "RESOURCE_LIMIT_EXCEEDED",
    PERMISSION_DENIED: "PERMISSION_DENIED",
    CONNECTION_FAILED: "CONNECTION_FAILED",
    NO_RESERVATION: "NO_RESERVATION",
    MALFORMED_MESSAGE: "MALFORMED_MESSAGE",
    UNEXPECTED_MESSAGE: "UNEXPECTED_MESSAGE",
}

VOUCHER_DOMAIN = "libp2p-relay-rsvp"
VOUCHER_PAYLOAD_TYPE = encode_uvarint(0x0302)  # multicodec libp2p-relay-rsvp


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def status_name(code: int) -> str:
    return STATUS_NAMES.get(code, str(code))


class RelayError(errors.DialError):
    """A relay refused or failed a request (``status`` is the relay's status code)."""

    def __init__(self, peer_id: str | None, relay: str, status: int, reason: str = "") -> None:
        self.status = status
        self.relay = relay
        text = f"relay {relay} answered {status_name(status)}"
        super().__init__(peer_id, [], f"{text}: {reason}" if reason else text)


# ---------------------------------------------------------------- vouchers
def _signing_bytes(payload: bytes) -> bytes:
    out = bytearray()
    for part in (VOUCHER_DOMAIN.encode(), VOUCHER_PAYLOAD_TYPE, payload):
        out += encode_uvarint(len(part)) + part
    return bytes(out)


def sign_voucher(private_key: PrivateKey, relay: ID, peer: ID, expiration: int) -> bytes:
    """A reservation voucher: a signed envelope over ``Voucher{relay, peer, expiration}``."""
    payload = Voucher(relay=relay.to_bytes(), peer=peer.to_bytes(), expiration=expiration)
    data = payload.SerializeToString()
    envelope = Envelope(
        public_key=private_key.get_public_key().serialize(),
        payload_type=VOUCHER_PAYLOAD_TYPE,
        payload=data,
        signature=private_key.sign(_signing_bytes(data)),
    )
    return bytes(envelope.SerializeToString())


def open_voucher(data: bytes) -> tuple[ID, ID, int]:
    """``(relay, peer, expiration)`` of a voucher; ``ValueError`` unless the relay signed it."""
    try:
        envelope = Envelope.FromString(data)
        key = deserialize_public_key(envelope.public_key)
        payload = Voucher.FromString(envelope.payload)
    except Exception as exc:
        raise ValueError(f"malformed voucher: {exc}") from None
    if envelope.payload_type != VOUCHER_PAYLOAD_TYPE:
        raise ValueError("not a reservation voucher")
    if not key.verify(_signing_bytes(envelope.payload), envelope.signature):
        raise ValueError("bad signature")
    relay = ID(payload.relay)
    if ID.from_pubkey(key) != relay:
        raise ValueError("signed by someone other than the relay")
    return relay, ID(payload.peer), int(payload.expiration)


# ---------------------------------------------------------------- helpers
async def _read(stream: INetStream, kind: Any) -> Any:
    with trio.fail_after(MESSAGE_TIMEOUT):
        return kind.FromString(await read_delimited(stream, MAX_MESSAGE))


def circuit_addr(relay_addr: str, relay_id: str, target: str | None = None) -> str:
    """``<relay addr>/p2p/<relay>/p2p-circuit[/p2p/<target>]``.

    Example:
        >>> circuit_addr("/ip4/203.0.113.10/tcp/4001", "12D3KooRelay")
        '/ip4/203.0.113.10/tcp/4001/p2p/12D3KooRelay/p2p-circuit'
    """
    base = relay_addr.split("/p2p/")[0]
    out = f"{base}/p2p/{relay_id}/p2p-circuit"
    return f"{out}/p2p/{target}" if target else out


# ---------------------------------------------------------------- server
@dataclass
class ServedReservation:
    peer: str
    ip: str | None
    expire: int
    granted_at: datetime


@dataclass
class Circuit:
    src: str
    dst: str
    opened_at: datetime
    bytes_to_dst: int = 0
    bytes_to_src: int = 0
    ended: str | None = None


class _RelayService(Service):
    """What both relay roles share: counted events, passed on to ``on_event``."""

    on_event: Callable[[str, str | None, str], None] | None
    stats: collections.Counter[str]

    def _event(self, kind: str, peer: str | None, detail: str) -> None:
        self.stats[kind] += 1
        if self.on_event is not None:
            try:
                self.on_event(kind, peer, detail)
            except Exception:
                logger.exception("relay event callback raised")


class CircuitRelayServer(_RelayService):
    """The relay side of Circuit Relay v2 (``hop``), with limits.

    ``max_circuits`` open circuits at most (16 per peer); ``max_reservations`` slots (one per
    peer: a new request refreshes it; ``max_reservations_per_ip`` per IP), each valid for
    ``reservation_ttl`` seconds while the peer stays connected. Each circuit may last
    ``limit_duration`` seconds and carry ``limit_data`` bytes each way; then it is closed,
    and it is closed as soon as either side resets or disconnects. A peer whose IP the
    relay cannot learn (py-libp2p reports none for WebSocket connections) is refused a
    reservation, since the per-IP limit cannot hold for it, unless ``allow_unknown_ip``:
    then all such peers share one per-IP budget. ``stats`` counts outcomes; ``dropped``
    counts refused and bad requests by kind.
    """

    def __init__(
        self,
        host: IHost,
        max_circuits: int = 256,
        *,
        max_reservations: int = 128,
        max_reservations_per_ip: int = 8,
        max_circuits_per_peer: int = 16,
        reservation_ttl: int = 3600,
        limit_duration: int = 120,
        limit_data: int = 1 << 20,
        allow_unknown_ip: bool = False,
        on_event: Callable[[str, str | None, str], None] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("max_circuits", max_circuits),
            ("max_reservations", max_reservations),
            ("reservation_ttl", reservation_ttl),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise errors.InvalidInput(name, value, "a whole number >= 1")
        self.host = host
        self.max_circuits = max_circuits
        self.max_reservations = max_reservations
        self.max_reservations_per_ip = max_reservations_per_ip
        self.max_circuits_per_peer = max_circuits_per_peer
        self.reservation_ttl = reservation_ttl
        self.limit_duration = limit_duration
        self.limit_data = limit_data
        self.allow_unknown_ip = allow_unknown_ip
        self.on_event = on_event
        self.reservations: dict[str, ServedReservation] = {}
        self.circuits: dict[int, Circuit] = {}
        self.closed_circuits: collections.deque[Circuit] = collections.deque(maxlen=1000)
        self.stats: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self._ids = 0

    async def _on_start(self) -> None:
        self.host.set_stream_handler(HOP_PROTOCOL, self._handle_hop)

    async def _run(self, nursery: trio.Nursery) -> None:
        while True:
            await trio.sleep(10)
            self._expire()

    async def _on_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.host.remove_stream_handler(HOP_PROTOCOL)

    def _connected(self, peer: str) -> bool:
        return bool(self.host.get_network().connections.get(ID.from_base58(peer)))

    def _expire(self) -> None:
        now = int(time.time())
        for peer, res in list(self.reservations.items()):
            if res.expire <= now or not self._connected(peer):
                del self.reservations[peer]
                self._event("reservation_ended", peer, "expired or disconnected")

    def relay_addrs(self) -> list[str]:
        """Addresses the relay gives a reserving peer (not loopback, unless that is all)."""
        addrs = [str(a).split("/p2p/")[0] for a in self.host.get_addrs()]
        public = [a for a in addrs if not a.startswith(("/ip4/127.", "/ip6/::1"))]
        return public or addrs

    async def _respond(self, stream: INetStream, status: int, **fields: Any) -> None:
        reply = HopMessage(type=STATUS, status=status)
        for key, value in fields.items():
            getattr(reply, key).CopyFrom(value)
        with trio.move_on_after(MESSAGE_TIMEOUT):
            await write_delimited(stream, reply.SerializeToString())

    def _limit(self) -> Any:
        return HopMessage().limit.__class__(duration=self.limit_duration, data=self.limit_data)

    async def _handle_hop(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        keep_open = False
        try:
            try:
                message = await _read(stream, HopMessage)
            except Exception:
                self.dropped["malformed"] += 1
                await self._respond(stream, MALFORMED_MESSAGE)
                return
            conn = connection_of(self.host, stream)
            if is_relayed(conn):
                self.dropped["over_relayed_connection"] += 1
                await self._respond(stream, PERMISSION_DENIED)
                return
            if message.type == RESERVE:
                await self._reserve(stream, peer, message, conn)
            elif message.type == CONNECT:
                keep_open = await self._connect(stream, peer, message)
            else:
                self.dropped["unexpected"] += 1
                await self._respond(stream, UNEXPECTED_MESSAGE)
        except Exception as exc:
            logger.debug("relay: hop request from %s failed: %s", peer, exc)
        finally:
            if not keep_open:
                await close_quietly(stream)

    async def _reserve(self, stream: INetStream, peer: str, message: Any, conn: Any) -> None:
        if (
            message.HasField("peer")
            and message.peer.id
            and message.peer.id != ID.from_base58(peer).to_bytes()
        ):
            # A reservation is for the peer on this stream, never on someone's behalf.
            self.dropped["spoofed_peer"] += 1
            self._event("reservation_refused", peer, "it asked on behalf of another peer id")
            await self._respond(stream, PERMISSION_DENIED)
            return
        self._expire()
        ip = ip_of(remote_address(conn)) or socket_ip(conn)
        if ip is None:
            if not self.allow_unknown_ip:
                # The per-IP limit cannot hold for a peer whose IP we cannot see.
                self.dropped["unknown_ip"] += 1
                self._event("reservation_refused", peer, "its IP address is unknown")
                await self._respond(stream, RESERVATION_REFUSED)
                return
            ip = UNKNOWN_IP  # all such peers share one per-IP budget
        renewing = peer in self.reservations
        if not renewing:
            if len(self.reservations) >= self.max_reservations:
                self.dropped["reservations_full"] += 1
                self._event("reservation_refused", peer, "relay full")
                await self._respond(stream, RESERVATION_REFUSED)
                return
            same_ip = sum(1 for r in self.reservations.values() if r.ip == ip)
            if same_ip >= self.max_reservations_per_ip:
                self.dropped["per_ip_limit"] += 1
                self._event("reservation_refused", peer, f"too many from {ip}")
                await self._respond(stream, RESERVATION_REFUSED)
                return
        expire = int(time.time()) + self.reservation_ttl
        self.reservations[peer] = ServedReservation(peer, ip, expire, utcnow())
        reservation = HopMessage().reservation.__class__(
            expire=expire,
            addrs=[multiaddr.Multiaddr(a).to_bytes() for a in self.relay_addrs()],
            voucher=sign_voucher(
                self.host.get_private_key(), self.host.get_id(), ID.from_base58(peer), expire
            ),
        )
        self._event("reservation_renewed" if renewing else "reservation_granted", peer, ip or "")
        await self._respond(stream, OK, reservation=reservation, limit=self._limit())

    async def _connect(self, stream: INetStream, src: str, message: Any) -> bool:
        try:
            dst_id = ID(message.peer.id)
            dst = dst_id.to_base58()
        except Exception:
            self.dropped["malformed"] += 1
            await self._respond(stream, MALFORMED_MESSAGE)
            return False
        self._expire()
        if dst not in self.reservations:
            self._event("circuit_refused", src, f"{dst} has no reservation")
            await self._respond(stream, NO_RESERVATION)
            return False
        open_from = sum(1 for c in self.circuits.values() if src in (c.src, c.dst))
        open_to = sum(1 for c in self.circuits.values() if dst in (c.src, c.dst))
        if (
            len(self.circuits) >= self.max_circuits
            or open_from >= self.max_circuits_per_peer
            or open_to >= self.max_circuits_per_peer
        ):
            self._event("circuit_refused", src, f"circuit limit reached (to {dst})")
            await self._respond(stream, RESOURCE_LIMIT_EXCEEDED)
            return False
        # The stop stream goes over the existing connection; never dial the target.
        if not self._connected(dst):
            await self._respond(stream, NO_RESERVATION)
            return False
        stop: INetStream | None = None
        try:
            with trio.fail_after(MESSAGE_TIMEOUT):
                stop = await self.host.new_stream(dst_id, [STOP_PROTOCOL])
            request = StopMessage(type=STOP_CONNECT, limit=self._limit())
            request.peer.id = ID.from_base58(src).to_bytes()
            with trio.fail_after(MESSAGE_TIMEOUT):
                await write_delimited(stop, request.SerializeToString())
            answer = await _read(stop, StopMessage)
        except BaseException as exc:
            # Whatever went wrong (a reset, garbage, no answer, our own stop), the STOP
            # stream is the relay's to end: reset it, or it stays open on the target's
            # connection for as long as that lasts.
            if stop is not None:
                await close_quietly(stop, reset=True)
            if not isinstance(exc, Exception):
                raise
            self.dropped["stop_failed"] += 1
            self._event("circuit_failed", src, f"to {dst}: {type(exc).__name__} {exc}")
            await self._respond(stream, CONNECTION_FAILED)
            return False
        if answer.type != STOP_STATUS or answer.status != OK:
            await close_quietly(stop, reset=True)
            self.dropped["stop_refused"] += 1
            self._event("circuit_failed", src, f"{dst} answered {status_name(answer.status)}")
            await self._respond(stream, CONNECTION_FAILED)
            return False
        await self._respond(stream, OK, limit=self._limit())
        self._ids += 1
        circuit_id = self._ids
        self.circuits[circuit_id] = Circuit(src, dst, utcnow())
        if not self.spawn(self._bridge, circuit_id, stream, stop):
            # The service is stopping: no bridge would ever end this circuit.
            self.circuits.pop(circuit_id, None)
            await close_quietly(stop, reset=True)
            await close_quietly(stream, reset=True)
            return False
        self._event("circuit_opened", src, f"to {dst}")
        return True

    async def _bridge(self, circuit_id: int, src: INetStream, dst: INetStream) -> None:
        circuit = self.circuits[circuit_id]
        reason = "closed"

        async def pump(reader: INetStream, writer: INetStream, to_dst: bool) -> None:
            nonlocal reason
            while True:
                try:
                    data = await reader.read(4096)
                except Exception as exc:
                    # A reset (or a dead connection) on one side ends both directions,
                    # as go-libp2p's relay resets both streams on a copy error.
                    reason = f"{'source' if to_dst else 'target'} ended: {type(exc).__name__}"
                    raise _LimitReached from None
                if not data:
                    # A clean half-close: pass it on, the other direction may go on.
                    with contextlib.suppress(Exception):
                        await writer.close()
                    return
                sent = circuit.bytes_to_dst if to_dst else circuit.bytes_to_src
                if sent + len(data) > self.limit_data:
                    reason = "data limit"
                    raise _LimitReached
                await writer.write(data)
                if to_dst:
                    circuit.bytes_to_dst += len(data)
                else:
                    circuit.bytes_to_src += len(data)

        async def watch() -> None:
            # A side whose connection has gone cannot send an EOF: end the circuit.
            nonlocal reason
            while True:
                await trio.sleep(CIRCUIT_WATCH_INTERVAL)
                for side, stream in (("source", src), ("target", dst)):
                    if _conn_closed(stream):
                        reason = f"{side} disconnected"
                        raise _LimitReached

        try:
            with trio.move_on_after(self.limit_duration) as timer:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(watch)
                    async with trio.open_nursery() as pumps:
                        pumps.start_soon(pump, src, dst, True)
                        pumps.start_soon(pump, dst, src, False)
                    nursery.cancel_scope.cancel()  # both directions are done: stop watching
            if timer.cancelled_caught:
                reason = "duration limit"
        except (_LimitReached, Exception) as exc:
            if not isinstance(exc, _LimitReached) and reason == "closed":
                reason = f"error: {type(exc).__name__}"
        finally:
            limit_hit = reason != "closed"
            await close_quietly(src, reset=limit_hit)
            await close_quietly(dst, reset=limit_hit)
            circuit.ended = reason
            self.circuits.pop(circuit_id, None)
            self.closed_circuits.append(circuit)
            self._event(
                "circuit_closed",
                circuit.src,
                f"to {circuit.dst}: {reason} ({circuit.bytes_to_dst} B out, "
                f"{circuit.bytes_to_src} B back)",
            )


def _conn_closed(stream: INetStream) -> bool:
    """Whether the connection a stream runs on has closed."""
    muxed = getattr(stream, "muxed_conn", None)
    closed = getattr(muxed, "is_closed", False)
    return closed is True


class _LimitReached(Exception):
    pass


# ---------------------------------------------------------------- client
REJOIN_FIRST = 1.0
REJOIN_MAX = 30.0
"""Backoff of the tries to get a lost reservation back: 1 s, doubling up to 30 s."""
RELAY_CHECK_INTERVAL = 5.0
RELAY_CHECK_TIMEOUT = 5.0
RELAY_CHECK_FAILURES = 2
"""A relay we hold a reservation on is pinged every 5 s; two pings in a row unanswered
within 5 s and its connection is closed (the reservation is then lost and rejoined).
Without it a relay that died without a goodbye (SIGKILL, power, a NAT mapping gone) holds
a QUIC connection open until py-libp2p's 600 s idle timeout; go-libp2p's QUIC sends
keep-alives every 15 s and gives up after 30 s idle."""


@dataclass
class _Rejoin:
    """A relay whose reservation was lost, and the state of the tries to get it back."""

    addrs: list[str]
    lost_at: float
    next_try: float
    attempts: int = 0
    busy: bool = False


@dataclass
class Reservation:
    """A slot this node holds on a relay."""

    relay_peer_id: str
    relay_addrs: list[str]
    expire: int
    limit_duration: int | None
    limit_data: int | None
    voucher_valid: bool
    granted_at: datetime = field(default_factory=utcnow)
    refreshed: int = 0

    @property
    def circuit_addrs(self) -> list[str]:
        """Where others can reach this node through the relay."""
        return [circuit_addr(a, self.relay_peer_id) for a in self.relay_addrs]

    @property
    def expires_in(self) -> float:
        return self.expire - time.time()


class CircuitRelayClient(_RelayService):
    """The client side: reservations on relays, accepting and dialling relayed connections.

    ``reservations`` maps relay peer ids to :class:`Reservation`. At most
    ``max_reservations`` are held; each is refreshed before it expires while the relay
    stays connected. Relayed connections are accepted only through relays this node holds
    a reservation on.
    """

    def __init__(
        self,
        host: IHost,
        max_reservations: int = 3,
        *,
        on_event: Callable[[str, str | None, str], None] | None = None,
        rejoin_window: float = 600.0,
    ) -> None:
        super().__init__()
        if (
            isinstance(max_reservations, bool)
            or not isinstance(max_reservations, int)
            or (max_reservations < 0)
        ):
            raise errors.InvalidInput("max_reservations", max_reservations, "a whole number >= 0")
        if (
            isinstance(rejoin_window, bool)
            or not isinstance(rejoin_window, int | float)
            or not 0 <= rejoin_window < float("inf")
        ):
            raise errors.InvalidInput("rejoin_window", rejoin_window, "a number of seconds >= 0")
        self.host = host
        self.max_reservations = max_reservations
        self.rejoin_window = float(rejoin_window)
        # Relays whose reservation was lost (relay gone): tried again until the window ends.
        self.rejoining: dict[str, _Rejoin] = {}
        self._checks: dict[str, tuple[float, int]] = {}  # relay -> (last check, failures)
        self.on_event = on_event
        self.reservations: dict[str, Reservation] = {}
        self.stats: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self._changed: trio.Event | None = None

    async def _on_start(self) -> None:
        # Circuit addresses reach peers through the manager's address book
        # (``circuit_addrs()``), the one place that decides what is advertised.
        self.host.set_stream_handler(STOP_PROTOCOL, self._handle_stop)

    async def _run(self, nursery: trio.Nursery) -> None:
        refreshing: set[str] = set()

        async def refresh(relay: str) -> None:
            try:
                await self._refresh(relay)
            finally:
                refreshing.discard(relay)

        while True:
            lifetimes = [r.expire - r.granted_at.timestamp() for r in self.reservations.values()]
            self._changed = trio.Event()
            # A lost relay is noticed within a second (the check below is a dict lookup).
            with trio.move_on_after(max(0.5, min([1.0, *(t / 4 for t in lifetimes)]))):
                await self._changed.wait()  # a new reservation: plan its refresh now
            for relay, res in list(self.reservations.items()):
                connected = self.host.get_network().connections.get(ID.from_base58(relay))
                if not connected:
                    del self.reservations[relay]
                    self._event("reservation_lost", relay, "the relay disconnected")
                    self._plan_rejoin(relay, res)
                elif (
                    relay not in refreshing
                    and res.expires_in < min(300, res.expire - res.granted_at.timestamp()) / 2
                ):
                    # Refresh in the second half of the reservation's life (at most 5 min
                    # before it ends).
                    refreshing.add(relay)
                    nursery.start_soon(refresh, relay)
            now = time.monotonic()
            for relay in list(self._checks):
                if relay not in self.reservations:
                    del self._checks[relay]
            for relay in self.reservations:
                last, failures = self._checks.setdefault(relay, (now, 0))
                if last >= 0 and now - last >= RELAY_CHECK_INTERVAL:
                    self._checks[relay] = (-1.0, failures)  # -1: a check is running
                    nursery.start_soon(self._check_relay, relay, failures)
            for relay, rejoin in list(self.rejoining.items()):
                if rejoin.busy or rejoin.next_try > now:
                    continue
                if relay in self.reservations:
                    del self.rejoining[relay]  # reserved again by someone else
                elif now - rejoin.lost_at > self.rejoin_window:
                    del self.rejoining[relay]
                    self._event(
                        "reservation_abandoned",
                        relay,
                        f"not back after {rejoin.attempts} tries in {self.rejoin_window:.0f} s",
                    )
                elif len(self.reservations) < self.max_reservations:
                    rejoin.busy = True
                    nursery.start_soon(self._rejoin, relay, rejoin)

    async def _check_relay(self, relay: str, failures: int) -> None:
        """Ping a reserved relay; close its connection after repeated silence."""
        peer = ID.from_base58(relay)
        try:
            with trio.fail_after(RELAY_CHECK_TIMEOUT):
                await ping_rtts(self.host, peer, 1)
            failures = 0
        except Exception as exc:
            failures += 1
            logger.debug("relay %s did not answer a ping: %s", relay, exc)
        if relay not in self.reservations:
            self._checks.pop(relay, None)
            return
        self._checks[relay] = (time.monotonic(), failures)
        if failures >= RELAY_CHECK_FAILURES:
            self._event(
                "relay_unresponsive", relay, f"{failures} pings unanswered; closing its connection"
            )
            with contextlib.suppress(Exception):
                await self.host.get_network().close_peer(peer)

    def _plan_rejoin(self, relay: str, res: Reservation) -> None:
        """Remember a lost reservation's relay so that :meth:`_run` reserves there again.

        Only relays this node held a reservation on (chosen by it, never named by a peer),
        at most ``max_reservations`` of them, at the addresses the relay itself gave.
        """
        if self.rejoin_window <= 0 or not res.relay_addrs:
            return
        if relay not in self.rejoining and len(self.rejoining) >= max(1, self.max_reservations):
            return
        now = time.monotonic()
        self.rejoining[relay] = _Rejoin(list(res.relay_addrs[:4]), now, now + REJOIN_FIRST)

    async def _rejoin(self, relay: str, rejoin: _Rejoin) -> None:
        try:
            for addr in rejoin.addrs:
                if relay in self.reservations:
                    break
                try:
                    with trio.fail_after(MESSAGE_TIMEOUT):
                        await self.make_reservation(relay, f"{addr}/p2p/{relay}")
                    break
                except Exception as exc:
                    logger.debug("rejoining relay %s at %s failed: %s", relay, addr, exc)
        finally:
            rejoin.busy = False
            rejoin.attempts += 1
            if relay in self.reservations:
                if self.rejoining.pop(relay, None) is not None:
                    took = time.monotonic() - rejoin.lost_at
                    self._event(
                        "reservation_restored",
                        relay,
                        f"after {took:.1f} s, {rejoin.attempts} tries",
                    )
            else:
                delay = min(REJOIN_MAX, REJOIN_FIRST * 2**rejoin.attempts)
                rejoin.next_try = time.monotonic() + delay

    async def _on_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.host.remove_stream_handler(STOP_PROTOCOL)
        self.reservations.clear()
        self.rejoining.clear()
        self._checks.clear()

    def circuit_addrs(self) -> list[str]:
        """This node's circuit addresses, one per relay address of each reservation."""
        return [a for res in self.reservations.values() for a in res.circuit_addrs]

    async def _refresh(self, relay: str) -> None:
        try:
            res = await self.make_reservation(relay)
            res.refreshed += 1
        except errors.UcsdkError as exc:
            lost = self.reservations.pop(relay, None)
            self._event("reservation_lost", relay, f"refresh failed: {exc}")
            if lost is not None:
                self._plan_rejoin(relay, lost)
        except Exception as exc:
            # A bug, not the relay: the service crashes (and restarts) without this
            # reservation, so its circuit addresses are not advertised meanwhile.
            self.reservations.pop(relay, None)
            self._event("reservation_lost", relay, f"refresh crashed: {exc!r}")
            raise

    async def make_reservation(
        self, relay_peer_id: str | ID, relay_addr: str | None = None
    ) -> Reservation:
        """Reserve a slot on a relay (connecting to ``relay_addr`` first if given)."""
        relay = relay_peer_id if isinstance(relay_peer_id, ID) else ID.from_base58(relay_peer_id)
        relay_text = relay.to_base58()
        if relay_text not in self.reservations and len(self.reservations) >= self.max_reservations:
            raise RelayError(None, relay_text, RESERVATION_REFUSED, "max_reservations reached")
        if relay_addr is not None:
            target = multiaddr.Multiaddr(relay_addr.split("/p2p/")[0])
            unblock = getattr(self.host.get_network(), "unblock_peer", None)
            if callable(unblock):
                unblock(relay)
            await self.host.connect(PeerInfo(relay, [target]))
        try:
            stream = await self.host.new_stream(relay, [HOP_PROTOCOL])
            try:
                with trio.fail_after(MESSAGE_TIMEOUT):
                    await write_delimited(stream, HopMessage(type=RESERVE).SerializeToString())
                reply = await _read(stream, HopMessage)
            finally:
                await close_quietly(stream)
        except (DecodeError, FramingError) as exc:
            self.dropped["malformed"] += 1
            raise errors.DialError(
                relay_text, [], f"reservation failed: malformed reply: {exc}"
            ) from exc
        except Exception as exc:  # no stream, a reset or closed one, no answer in time
            reason = f"reservation failed: {type(exc).__name__} {exc}".strip()
            raise errors.DialError(relay_text, [], reason) from exc
        if reply.type != STATUS or reply.status != OK:
            self._event("reservation_refused", relay_text, status_name(reply.status))
            raise RelayError(None, relay_text, reply.status, "reservation refused")
        now = time.time()
        if not now < reply.reservation.expire <= now + MAX_RESERVATION_TTL:
            # Kept, it would be advertised long after it ended (or before it ever began).
            self.dropped["bad_expire"] += 1
            reason = f"expire {reply.reservation.expire} is not within a year from now"
            self._event("reservation_refused", relay_text, reason)
            raise errors.DialError(relay_text, [], f"reservation failed: {reason}")
        voucher_valid = False
        if reply.reservation.voucher:
            try:
                signer, peer, expiration = open_voucher(reply.reservation.voucher)
                voucher_valid = (
                    signer == relay
                    and peer == self.host.get_id()
                    and expiration == reply.reservation.expire
                )
            except ValueError as exc:
                logger.debug("relay %s sent a bad voucher: %s", relay_text, exc)
        addrs = []
        for raw in list(reply.reservation.addrs)[:16]:
            with contextlib.suppress(Exception):
                addrs.append(str(multiaddr.Multiaddr(raw)).split("/p2p/")[0])
        if not addrs and relay_addr is not None:
            addrs = [relay_addr.split("/p2p/")[0]]
        res = Reservation(
            relay_text,
            addrs,
            int(reply.reservation.expire),
            int(reply.limit.duration) if reply.HasField("limit") else None,
            int(reply.limit.data) if reply.HasField("limit") else None,
            voucher_valid,
        )
        previous = self.reservations.get(relay_text)
        renewed = previous is not None
        if previous is not None:
            res.refreshed = previous.refreshed
        self.reservations[relay_text] = res
        if self._changed is not None:
            self._changed.set()
        self._event(
            "reservation_renewed" if renewed else "reservation_made",
            relay_text,
            f"until {datetime.fromtimestamp(res.expire, timezone.utc):%H:%M:%S} UTC, "
            f"voucher {'valid' if voucher_valid else 'missing/invalid'}",
        )
        return res

    async def dial(
        self, target: str | ID, relay_peer_id: str | ID, relay_addr: str | None = None
    ) -> INetConn:
        """Connect to ``target`` through ``relay``; the new (relayed) connection."""
        target_id = target if isinstance(target, ID) else ID.from_base58(target)
        relay = relay_peer_id if isinstance(relay_peer_id, ID) else ID.from_base58(relay_peer_id)
        relay_text = relay.to_base58()
        network = self.host.get_network()
        if relay_addr is not None and not network.connections.get(relay):
            unblock = getattr(network, "unblock_peer", None)
            if callable(unblock):
                unblock(relay)
            await self.host.connect(PeerInfo(relay, [multiaddr.Multiaddr(relay_addr)]))
        stream = await self.host.new_stream(relay, [HOP_PROTOCOL])
        try:
            request = HopMessage(type=CONNECT)
            request.peer.id = target_id.to_bytes()
            with trio.fail_after(MESSAGE_TIMEOUT):
                await write_delimited(stream, request.SerializeToString())
            reply = await _read(stream, HopMessage)
            if reply.type != STATUS or reply.status != OK:
                raise RelayError(target_id.to_base58(), relay_text, reply.status)
            remote = multiaddr.Multiaddr(
                circuit_addr(relay_addr or _any_addr(self.host, relay), relay_text)
            )
            raw = RawConnection(stream, True, ConnectionType.RELAYED, [remote])
            swarm: Any = network
            conn: INetConn = await swarm.upgrade_outbound_raw_conn(raw, target_id)
        except BaseException:
            await close_quietly(stream, reset=True)
            raise
        self._event("relayed_out", target_id.to_base58(), f"via {relay_text}")
        return conn

    async def _handle_stop(self, stream: INetStream) -> None:
        relay = stream.muxed_conn.peer_id.to_base58()
        try:
            message = await _read(stream, StopMessage)
        except Exception:
            self.dropped["malformed"] += 1
            await close_quietly(stream, reset=True)
            return
        if message.type != STOP_CONNECT or not message.HasField("peer"):
            self.dropped["unexpected"] += 1
            await self._stop_reply(stream, UNEXPECTED_MESSAGE)
            await close_quietly(stream)
            return
        if relay not in self.reservations:
            # Only relays we asked to relay for us may bring us connections.
            self.dropped["no_reservation"] += 1
            await self._stop_reply(stream, PERMISSION_DENIED)
            await close_quietly(stream)
            return
        try:
            source = ID(message.peer.id)
        except Exception:
            self.dropped["malformed"] += 1
            await self._stop_reply(stream, MALFORMED_MESSAGE)
            await close_quietly(stream)
            return
        await self._stop_reply(stream, OK)
        remote = multiaddr.Multiaddr(
            circuit_addr(_any_addr(self.host, stream.muxed_conn.peer_id), relay)
        )
        raw = RawConnection(stream, False, ConnectionType.RELAYED, [remote])
        swarm: Any = self.host.get_network()
        try:
            muxed = await swarm.upgrade_inbound_raw_conn(raw, remote)
        except Exception as exc:
            self._event("relayed_in_failed", source.to_base58(), f"via {relay}: {exc}")
            await close_quietly(stream, reset=True)
            return
        secured = getattr(muxed, "peer_id", None)
        if secured != source:
            # The relay named one peer (the spec's STOP CONNECT ``peer``: the initiator)
            # and the Noise handshake proved another: the relay lies about who calls.
            self.dropped["peer_mismatch"] += 1
            self._event(
                "relayed_in_refused",
                str(secured),
                f"via {relay}: the relay announced {source.to_base58()}",
            )
            await _close_muxed(swarm, muxed)
            await close_quietly(stream, reset=True)
            return
        self._event("relayed_in", source.to_base58(), f"via {relay}")

    async def _stop_reply(self, stream: INetStream, status: int) -> None:
        with trio.move_on_after(MESSAGE_TIMEOUT), contextlib.suppress(Exception):
            await write_delimited(
                stream, StopMessage(type=STOP_STATUS, status=status).SerializeToString()
            )


async def _close_muxed(swarm: Any, muxed: Any) -> None:
    """Close the swarm connection over ``muxed`` (or ``muxed`` itself if the swarm has none)."""
    peer = getattr(muxed, "peer_id", None)
    for conn in list(swarm.connections.get(peer, [])) if peer is not None else []:
        if getattr(conn, "muxed_conn", None) is muxed:
            await close_quietly(conn)
            return
    await close_quietly(muxed)


def _any_addr(host: IHost, peer: ID) -> str:
    """An address of a connected peer (the first connection's), for labelling."""
    for conn in host.get_network().connections.get(peer, []):
        try:
            addrs = conn.get_transport_addresses()
        except Exception:
            continue
        if addrs:
            return str(addrs[0]).split("/p2p/")[0]
    return "/ip4/0.0.0.0/tcp/0"


async def demo_three_hosts() -> tuple[str, bool, str]:
    """Three loopback hosts: B reserves on R; A connects to B through R; A pings B.

    Returns (reservation status, B's voucher valid, A's connection transport to B).
    """
    from ucsdk.config import ConnectivityConfig
    from ucsdk.host import build_host, describe_connection, disable_auto_dial
    from ucsdk.identity import new_key_pair
    from ucsdk.protocols import ping_rtts

    config = ConnectivityConfig.preset("development", enable_mdns=False)
    hosts = [build_host(config, new_key_pair()) for _ in range(3)]
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    relay_host, a, b = hosts
    async with (
        relay_host.run(listen),
        a.run(listen),
        b.run(listen),
    ):
        for h in hosts:
            await disable_auto_dial(h)
        server = CircuitRelayServer(relay_host)
        client_a, client_b = CircuitRelayClient(a), CircuitRelayClient(b)
        for service in (server, client_a, client_b):
            await service.start()
        relay_addr = str(relay_host.get_addrs()[0])
        res = await client_b.make_reservation(relay_host.get_id(), relay_addr)
        conn = await client_a.dial(b.get_id(), relay_host.get_id(), relay_addr.split("/p2p/")[0])
        await ping_rtts(a, b.get_id(), 1)
        transport = describe_connection(conn)[1] or ""
        for service in (client_a, client_b, server):
            await service.stop()
        for h in hosts:
            await h.close()
        return "OK", res.voucher_valid, transport


__all__ = [
    "HOP_PROTOCOL",
    "STOP_PROTOCOL",
    "CircuitRelayClient",
    "CircuitRelayServer",
    "RelayError",
    "Reservation",
    "circuit_addr",
    "open_voucher",
    "parse_circuit",
    "sign_voucher",
]
