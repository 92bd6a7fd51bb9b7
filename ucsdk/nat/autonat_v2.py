"""AutoNAT v2 (``/libp2p/autonat/2/dial-request``, ``/libp2p/autonat/2/dial-back``): is
*this address* reachable from the internet? WORK IN PROGRESS (branch wip/autonat-v2).

Per the spec (libp2p/specs autonat/autonat-v2.md):

* the client sends ``DialRequest{addrs, nonce}`` (addresses highest priority first, a
  random fixed64 nonce) on a new ``dial-request`` stream;
* the server picks the first address it is willing to dial and dials *only* that one; if its
  IP is not the client's observed IP it first asks for dial data
  (``DialDataRequest{addrIdx, numBytes}``, 30-100 kB) that the client sends as
  ``DialDataResponse{data}`` messages of at most 4096 bytes each, so that asking a server
  to dial a victim costs the asker more bandwidth than the handshake it causes;
* the server dials from a separate host (own identity, not its listen port), opens
  ``dial-back`` and sends ``DialBack{nonce}``; the client checks the nonce, answers
  ``DialBackResponse{OK}`` and closes;
* the server answers ``DialResponse{status, addrIdx, dialStatus}`` on the request stream.

ucsdk's server caps streams in total and per peer before reading, rate-limits dial-backs
per peer and in total, refuses private and relayed addresses (unless ``allow_private``),
bounds dial data it waits for, and counts each refusal in ``dropped``.

The client checks each of the node's candidate addresses (its listen addresses and the
observed-IP guesses the manager makes for v1) with up to ``servers_per_addr`` servers each
round; :meth:`AutoNATv2.reachability` folds the checks into one row per address.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ucsdk._conn import close_quietly, connection_of, ip_of, is_relayed, remote_address
from ucsdk._service import Service
from ucsdk._wire import FramingError, read_delimited, write_delimited
from ucsdk.addresses import punch_target_allowed
from ucsdk.nat.autonat import SteadyBackoff, dial_back_to, dial_fresh
from ucsdk.proto import autonat_v2_pb2 as pb

logger = logging.getLogger("UniversalConnectivity.autonat2")

DIAL_REQUEST_PROTOCOL = TProtocol("/libp2p/autonat/2/dial-request")
DIAL_BACK_PROTOCOL = TProtocol("/libp2p/autonat/2/dial-back")
MAX_MESSAGE = 8192
"""A request with its addresses, or one dial-data message (4096 bytes of data) framed."""
MAX_ADDRS = 16
MAX_TRACKED_ADDRS = 64
"""Addresses whose checks are kept for :meth:`AutoNATv2.reachability` (oldest go first)."""
MAX_SERVERS_PER_ADDR = 8
MIN_ROUND_GAP = 10.0
"""Seconds between two rounds of checks started by a wake-up (a new server appeared)."""
DIAL_DATA_CHUNK = 4096
DIAL_DATA_MIN, DIAL_DATA_MAX = 30_000, 100_000
"""What a server asks for before dialling an IP other than the requester's (spec: 30-100 kB)."""
CLIENT_MAX_DIAL_DATA = 100_000
"""The most dial data a client agrees to send for one request."""

OK = 200
E_INTERNAL_ERROR, E_REQUEST_REJECTED, E_DIAL_REFUSED = 0, 100, 101
DIAL_UNUSED, E_DIAL_ERROR, E_DIAL_BACK_ERROR, DIAL_OK = 0, 100, 101, 200
RESPONSE_NAMES = {
    OK: "OK",
    E_INTERNAL_ERROR: "E_INTERNAL_ERROR",
    E_REQUEST_REJECTED: "E_REQUEST_REJECTED",
    E_DIAL_REFUSED: "E_DIAL_REFUSED",
}
DIAL_NAMES = {
    DIAL_UNUSED: "UNUSED",
    E_DIAL_ERROR: "E_DIAL_ERROR",
    E_DIAL_BACK_ERROR: "E_DIAL_BACK_ERROR",
    DIAL_OK: "OK",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Check:
    """One v2 check of one address by one server, as the client saw it."""

    server: str
    addr: str | None
    """The address the server dialled (``None`` when it dialled none)."""
    response: str
    """``OK``, ``E_REQUEST_REJECTED``, ``E_DIAL_REFUSED``, ``E_INTERNAL_ERROR``, or why the
    check failed on our side (``nonce_mismatch``, ``no_dial_back``, ``dial_data_refused``,
    ``malformed``, ``unknown_status``)."""
    dial: str = "UNUSED"
    reachable: bool | None = None
    """True: the server dialled ``addr`` and our dial-back handler got the nonce; False: it
    could not dial; None: no verdict (refused, error, or a claim we could not verify)."""
    dial_data: int = 0
    time: datetime = field(default_factory=utcnow)
    asked: str | None = None
    """The address this check was about (the first one asked)."""


@dataclass
class _RateLimit:
    per_peer: int = 3
    total: int = 30
    window: float = 60.0
    _times: collections.deque[tuple[float, str]] = field(default_factory=collections.deque)

    def allow(self, peer: str) -> bool:
        now = time.monotonic()
        while self._times and now - self._times[0][0] > self.window:
            self._times.popleft()
        if len(self._times) >= self.total:
            return False
        if sum(1 for _, p in self._times if p == peer) >= self.per_peer:
            return False
        self._times.append((now, peer))
        return True


def _dialable(addr: multiaddr.Multiaddr, allow_private: bool) -> bool:
    text = str(addr)
    if "/p2p-circuit" in text or ("/tcp/" not in text and "/quic-v1" not in text):
        return False
    if any(t in text for t in ("/ws", "/webtransport", "/webrtc")):
        return False
    return punch_target_allowed(text, allow_private)


class AutoNATv2(Service):
    """AutoNAT v2 client, and (unless ``serve=False``) server, on one host.

    The client checks each address of ``candidate_addrs()`` (default: the host's listen
    addresses) every ``check_interval`` seconds with up to ``servers_per_addr`` connected
    peers that speak ``dial-request``; :meth:`reachability` says per address whether it is
    reachable (``public``), not (``private``) or not known yet, and how many servers agree.

    Example:
        >>> import trio
        >>> from libp2p import new_host
        >>> async def main() -> list[dict[str, object]]:
        ...     host = new_host()
        ...     checker = AutoNATv2(host, boot_delay=3600)
        ...     await checker.start()
        ...     try:
        ...         return checker.reachability()  # nothing checked yet
        ...     finally:
        ...         await checker.stop()
        >>> trio.run(main)
        []
    """

    def __init__(
        self,
        host: IHost,
        *,
        serve: bool = True,
        allow_private: bool = False,
        dial_timeout: float = 10.0,
        read_timeout: float = 5.0,
        dial_data: int = DIAL_DATA_MIN,
        max_streams: int = 16,
        max_streams_per_peer: int = 2,
        rate_limit_per_peer: int = 12,
        rate_limit_total: int = 60,
        max_checks: int = 1000,
        check_interval: float = 300.0,
        boot_delay: float = 15.0,
        servers_per_addr: int = 3,
        min_agreement: int = 1,
        candidate_addrs: Callable[[], Sequence[str]] | None = None,
        dial_back_host: Callable[[], Awaitable[IHost | None]] | None = None,
        on_check: Callable[[Check], None] | None = None,
    ) -> None:
        super().__init__()
        from ucsdk import errors

        if not DIAL_DATA_MIN <= dial_data <= DIAL_DATA_MAX:
            raise errors.InvalidInput(
                "dial_data", dial_data, f"{DIAL_DATA_MIN} to {DIAL_DATA_MAX} bytes"
            )
        for name, value in (
            ("max_streams", max_streams),
            ("max_streams_per_peer", max_streams_per_peer),
            ("servers_per_addr", servers_per_addr),
            ("min_agreement", min_agreement),
            ("max_checks", max_checks),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise errors.InvalidInput(name, value, "a whole number >= 1")
        if not 0 < check_interval < float("inf"):
            raise errors.InvalidInput("check_interval", check_interval, "seconds > 0")
        self.host = host
        self.serve = serve
        self.allow_private = allow_private
        self.dial_timeout = dial_timeout
        self.read_timeout = read_timeout
        self.dial_data = dial_data
        self.max_streams = max_streams
        self.max_streams_per_peer = max_streams_per_peer
        self.check_interval = float(check_interval)
        self.boot_delay = boot_delay
        self.servers_per_addr = servers_per_addr
        self.min_agreement = min_agreement
        self.candidate_addrs = candidate_addrs
        self.on_check = on_check
        self._borrowed_dialer = dial_back_host
        self._limit = _RateLimit(rate_limit_per_peer, rate_limit_total)
        self._open: collections.Counter[str] = collections.Counter()
        self._pending: dict[int, trio.Event] = {}
        """Nonces of our requests in flight, set when their dial-back arrives."""
        self.checks: collections.deque[Check] = collections.deque(maxlen=max_checks)
        self.served: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_checks)
        self.dropped: collections.Counter[str] = collections.Counter()
        """Refusals and bad input, by kind: server side ``busy``, ``peer_busy``,
        ``read_timeout``, ``incomplete``, ``malformed``, ``wrong_type``, ``rate_limited``,
        ``dial_data_short``; client side ``dial_back_unknown_nonce``,
        ``dial_back_malformed``, ``dial_data_refused``, ``unknown_status``."""
        self._latest: collections.OrderedDict[str, dict[str, Check]] = collections.OrderedDict()
        """Per checked address (at most ``MAX_TRACKED_ADDRS``), each server's latest check."""
        self._dialer: IHost | None = None
        self._dialer_ready: trio.Event | None = None
        self._dialer_started = False
        self._wake: trio.Event | None = None
        self._round_lock = trio.Lock()
        self._rounds = 0

    # ------------------------------------------------------------ life cycle
    async def _on_start(self) -> None:
        self._dialer_ready = trio.Event()
        self._wake = trio.Event()
        self.host.set_stream_handler(DIAL_BACK_PROTOCOL, self._on_dial_back)
        if self.serve:
            self.host.set_stream_handler(DIAL_REQUEST_PROTOCOL, self._handle)

    async def _run(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._check_loop)

    async def _on_stop(self) -> None:
        protocols = [DIAL_BACK_PROTOCOL] + ([DIAL_REQUEST_PROTOCOL] if self.serve else [])
        for protocol in protocols:
            with contextlib.suppress(Exception):
                self.host.remove_stream_handler(protocol)

    async def _run_dialer(self) -> None:
        """The dial-back host: its own identity and ports (started with the first dial)."""
        from ucsdk.config import ConnectivityConfig
        from ucsdk.host import build_host, disable_auto_dial

        config = ConnectivityConfig(
            transports=["tcp", "quic"],
            listen_addrs=["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"],
            enable_mdns=False,
        )
        dialer = build_host(config, create_new_key_pair())
        try:
            async with dialer.run([]):
                await disable_auto_dial(dialer)
                self._dialer = dialer
                assert self._dialer_ready is not None
                self._dialer_ready.set()
                await trio.sleep_forever()
        finally:
            self._dialer = None
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await dialer.close()

    async def _dial_back_host(self) -> IHost | None:
        if self._borrowed_dialer is not None:
            return await self._borrowed_dialer()
        assert self._dialer_ready is not None
        if not self._dialer_started:
            self._dialer_started = self.spawn(self._run_dialer)
        with trio.move_on_after(10):
            await self._dialer_ready.wait()
        return self._dialer

    # ------------------------------------------------------------ checking rounds
    def servers(self) -> list[ID]:
        """Connected peers (over a direct connection) that serve ``dial-request``."""
        found = []
        peerstore = self.host.get_peerstore()
        for peer, conns in list(self.host.get_network().connections.items()):
            if not conns or all(is_relayed(c) for c in conns):
                continue
            with contextlib.suppress(Exception):
                if peerstore.supports_protocols(peer, [str(DIAL_REQUEST_PROTOCOL)]):
                    found.append(peer)
        return found

    def own_addrs(self) -> list[str]:
        """The addresses worth checking: TCP or QUIC, not relayed, public (or private
        with ``allow_private``), at most ``MAX_ADDRS``."""
        if self.candidate_addrs is not None:
            raw = list(self.candidate_addrs())
        else:
            raw = [str(a).split("/p2p/")[0] for a in self.host.get_addrs()]
        out: list[str] = []
        for text in raw:
            try:
                addr = multiaddr.Multiaddr(text)
            except Exception:
                continue
            if _dialable(addr, self.allow_private) and text not in out:
                out.append(text)
        return out[:MAX_ADDRS]

    async def check_all(self) -> list[Check]:
        """One round now: every address of :meth:`own_addrs` with up to
        ``servers_per_addr`` servers (rotating, so that rounds ask different ones).

        One request at a time per server (servers cap streams per peer), servers in
        parallel; a round asked for while one runs waits for it, then runs afresh.
        """
        async with self._round_lock:
            servers = self.servers()
            addrs = self.own_addrs()
            results: list[Check] = []
            if not servers or not addrs:
                return results
            self._rounds += 1
            shift = self._rounds % len(servers)
            chosen = (servers[shift:] + servers[:shift])[: self.servers_per_addr]

            async def ask(server: ID) -> None:
                for addr in addrs:
                    results.append(await self._safe_check(server, addr))

            async with trio.open_nursery() as nursery:
                for server in chosen:
                    nursery.start_soon(ask, server)
            return results

    async def _safe_check(self, server: ID, addr: str) -> Check:
        try:
            return await self.check(server, [addr])
        except Exception as exc:
            return self._keep(
                Check(
                    server=server.to_base58(),
                    addr=None,
                    response=f"no_answer: {type(exc).__name__}",
                    asked=addr,
                )
            )

    def poke(self) -> None:
        """Run the next round soon (a new server, a new observed address)."""
        if self._wake is not None:
            self._wake.set()

    async def _check_loop(self) -> None:
        await trio.sleep(self.boot_delay)
        waits = SteadyBackoff(self.check_interval)
        while True:
            if self.servers():
                before = self._verdicts(self.reachability())
                await self.check_all()
                rows = self.reachability()
                confident = bool(rows) and all(
                    row["status"] != "unknown" and row["confidence"] >= 3 for row in rows
                )
                wait = waits.after_round(before, self._verdicts(rows), confident)
            else:
                wait = min(self.check_interval, 5.0)
            assert self._wake is not None
            with trio.move_on_after(wait):
                await self._wake.wait()
                # Woken early (a new server): not sooner than MIN_ROUND_GAP after the last
                # round. A server that dials back from its own identity makes a new
                # connection, identify and a wake-up per check: without the gap, each
                # round would start the next.
                await trio.sleep(MIN_ROUND_GAP)
            self._wake = trio.Event()

    @staticmethod
    def _verdicts(rows: list[dict[str, Any]]) -> dict[str, str]:
        """Each checked address's status in ``reachability()`` rows (what a round may change)."""
        return {row["addr"]: row["status"] for row in rows}

    def reachability(self) -> list[dict[str, Any]]:
        """One row per checked address: ``addr``, ``status`` (``public``, ``private`` or
        ``unknown``), ``confidence`` (servers agreeing, at most 3), ``servers`` (how many
        gave a verdict), ``last_checked`` and ``protocol`` (``"v2"``).

        ``public`` needs one server whose dial-back carried our nonce (and at least as many
        as said otherwise): that cannot be faked without reaching us. ``private`` needs
        ``min_agreement`` servers that could not dial, and more than could."""
        rows = []
        for addr, by_server in self._latest.items():
            verdicts = [c.reachable for c in by_server.values() if c.reachable is not None]
            yes, no = verdicts.count(True), verdicts.count(False)
            # A verified dial-back is proof (it carried our nonce): one is enough for
            # public. A failed one is only a claim: private takes min_agreement servers.
            if yes and yes >= no:
                status, agreeing = "public", yes
            elif no >= self.min_agreement and no > yes:
                status, agreeing = "private", no
            else:
                status, agreeing = "unknown", 0
            rows.append(
                {
                    "addr": addr,
                    "status": status,
                    "confidence": min(3, agreeing),
                    "servers": len(verdicts),
                    "last_checked": max(c.time for c in by_server.values()),
                    "protocol": "v2",
                }
            )
        return rows

    # ------------------------------------------------------------ client
    async def check(self, server: ID, addrs: Sequence[str]) -> Check:
        """Ask ``server`` to dial one of ``addrs`` (highest priority first) back."""
        nonce = secrets.randbits(64)
        arrived = trio.Event()
        self._pending[nonce] = arrived
        if not addrs:
            from ucsdk import errors

            raise errors.InvalidInput("addrs", list(addrs), "at least one address to check")
        result = Check(
            server=server.to_base58(), addr=None, response="E_INTERNAL_ERROR", asked=str(addrs[0])
        )
        stream = await self.host.new_stream(server, [DIAL_REQUEST_PROTOCOL])
        try:
            request = pb.Message()
            request.dialRequest.addrs.extend(multiaddr.Multiaddr(a).to_bytes() for a in addrs)
            request.dialRequest.nonce = nonce
            await write_delimited(stream, request.SerializeToString())
            with trio.fail_after(self.dial_timeout + 30):
                while True:
                    msg = pb.Message.FromString(await read_delimited(stream, MAX_MESSAGE))
                    kind = msg.WhichOneof("msg")
                    if kind == "dialDataRequest":
                        wanted = msg.dialDataRequest.numBytes
                        # Bounded per check, however many times the server asks.
                        if result.dial_data + wanted > CLIENT_MAX_DIAL_DATA:
                            result.response = "dial_data_refused"
                            await close_quietly(stream, 2, reset=True)
                            return self._keep(result)
                        result.dial_data += await _send_dial_data(stream, wanted)
                        continue
                    if kind != "dialResponse":
                        result.response = "malformed"
                        return self._keep(result)
                    break
            response = msg.dialResponse
            if response.status not in RESPONSE_NAMES:
                result.response = "unknown_status"  # the spec: discard what we do not know
                return self._keep(result)
            result.response = RESPONSE_NAMES[response.status]
            if response.status != OK:
                return self._keep(result)
            if response.addrIdx >= len(addrs):
                result.response = "malformed"
                return self._keep(result)
            result.addr = str(addrs[response.addrIdx])
            result.dial = DIAL_NAMES.get(response.dialStatus, str(response.dialStatus))
            if response.dialStatus == DIAL_OK:
                # Believe it only if our dial-back handler got our nonce.
                with trio.move_on_after(2):
                    await arrived.wait()
                result.reachable = True if arrived.is_set() else None
                if not arrived.is_set():
                    result.response = "no_dial_back"
            elif response.dialStatus == E_DIAL_ERROR:
                result.reachable = False
            return self._keep(result)
        finally:
            self._pending.pop(nonce, None)
            await close_quietly(stream, 2)

    def _keep(self, check: Check) -> Check:
        self.checks.append(check)
        about = check.addr or check.asked
        if about is not None:
            by_server = self._latest.pop(about, {})
            by_server.pop(check.server, None)
            by_server[check.server] = check
            while len(by_server) > MAX_SERVERS_PER_ADDR:
                del by_server[next(iter(by_server))]
            self._latest[about] = by_server
            while len(self._latest) > MAX_TRACKED_ADDRS:
                self._latest.popitem(last=False)
        if check.response in ("dial_data_refused", "unknown_status"):
            self.dropped[check.response] += 1
        if self.on_check is not None:
            try:
                self.on_check(check)
            except Exception:
                logger.exception("AutoNAT v2 check callback raised")
        return check

    async def _on_dial_back(self, stream: INetStream) -> None:
        try:
            with trio.fail_after(self.read_timeout):
                msg = pb.DialBack.FromString(await read_delimited(stream, 64))
            event = self._pending.get(msg.nonce)
            if event is None:
                self.dropped["dial_back_unknown_nonce"] += 1
                await close_quietly(stream, 2, reset=True)
                return
            event.set()
            await write_delimited(stream, pb.DialBackResponse(status=0).SerializeToString())
        except (trio.TooSlowError, FramingError, Exception) as exc:
            self.dropped["dial_back_malformed"] += 1
            logger.debug("AutoNAT v2: bad dial-back: %s", exc)
        finally:
            await close_quietly(stream, 2)

    # ------------------------------------------------------------ server
    async def _handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        key = peer.to_base58()
        if sum(self._open.values()) >= self.max_streams:
            refused = "busy"
        elif self._open[key] >= self.max_streams_per_peer:
            refused = "peer_busy"
        else:
            refused = None
        if refused is not None:
            self.dropped[refused] += 1
            await close_quietly(stream, 2, reset=True)
            return
        self._open[key] += 1
        try:
            with trio.fail_after(self.read_timeout + self.dial_timeout + 30):
                await self._serve(stream, peer)
        except Exception as exc:
            logger.debug("AutoNAT v2: serving %s failed: %s", peer, exc)
        finally:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]
            await close_quietly(stream, 2)

    async def _serve(self, stream: INetStream, peer: ID) -> None:
        try:
            with trio.fail_after(self.read_timeout):
                raw = await read_delimited(stream, MAX_MESSAGE)
        except trio.TooSlowError:
            self.dropped["read_timeout"] += 1
            return
        except FramingError:
            self.dropped["malformed"] += 1
            return
        except Exception:  # reset or closed before a whole message arrived
            self.dropped["incomplete"] += 1
            return
        try:
            msg = pb.Message.FromString(raw)
        except Exception:
            self.dropped["malformed"] += 1
            return
        if msg.WhichOneof("msg") != "dialRequest":
            self.dropped["wrong_type"] += 1
            return
        # A nonce of 0 is not on the wire at all where the sender encodes the spec's
        # proto3 message: an absent nonce is 0.
        conn = connection_of(self.host, stream)
        remote = remote_address(conn)
        if remote is None or is_relayed(conn) or "/p2p-circuit" in str(remote):
            await self._answer(stream, peer, E_REQUEST_REJECTED, 0, DIAL_UNUSED, None)
            return
        observed = ip_of(remote)
        chosen: tuple[int, multiaddr.Multiaddr] | None = None
        for index, raw in enumerate(list(msg.dialRequest.addrs)[:MAX_ADDRS]):
            try:
                addr = multiaddr.Multiaddr(raw)
                str(addr)
            except Exception:
                continue
            if _dialable(addr, self.allow_private):
                chosen = (index, addr)
                break
        if chosen is None:
            await self._answer(stream, peer, E_DIAL_REFUSED, 0, DIAL_UNUSED, None)
            return
        if not self._limit.allow(peer.to_base58()):
            self.dropped["rate_limited"] += 1
            await self._answer(stream, peer, E_REQUEST_REJECTED, 0, DIAL_UNUSED, None)
            return
        index, addr = chosen
        if ip_of(addr) != observed:
            ask = pb.Message()
            ask.dialDataRequest.addrIdx = index
            ask.dialDataRequest.numBytes = self.dial_data
            await write_delimited(stream, ask.SerializeToString())
            if not await self._take_dial_data(stream, self.dial_data):
                self.dropped["dial_data_short"] += 1
                return
        status = await self._dial_back(peer, addr, msg.dialRequest.nonce)
        await self._answer(stream, peer, OK, index, status, addr)

    async def _take_dial_data(self, stream: INetStream, wanted: int) -> bool:
        received = 0
        with trio.move_on_after(self.read_timeout * 4):
            while received < wanted:
                msg = pb.Message.FromString(await read_delimited(stream, MAX_MESSAGE))
                if msg.WhichOneof("msg") != "dialDataResponse":
                    return False
                chunk = len(msg.dialDataResponse.data)
                if chunk > DIAL_DATA_CHUNK:
                    return False
                received += chunk
            return True
        return False

    async def _dial_back(self, peer: ID, addr: multiaddr.Multiaddr, nonce: int) -> int:
        dialer = await self._dial_back_host()
        if dialer is None:
            return E_DIAL_ERROR
        async with dial_back_to(dialer, peer):
            try:
                with trio.fail_after(self.dial_timeout):
                    await dial_fresh(dialer, peer, addr)
            except Exception:
                return E_DIAL_ERROR
            try:
                with trio.fail_after(self.dial_timeout):
                    stream = await dialer.new_stream(peer, [DIAL_BACK_PROTOCOL])
                    await write_delimited(stream, pb.DialBack(nonce=nonce).SerializeToString())
                    pb.DialBackResponse.FromString(await read_delimited(stream, 64))
                    await close_quietly(stream, 2)
                return DIAL_OK
            except Exception as exc:
                logger.warning(
                    "AutoNAT v2: dial-back stream to %s at %s failed: %r", peer, addr, exc
                )
                return E_DIAL_BACK_ERROR

    async def _answer(
        self,
        stream: INetStream,
        peer: ID,
        status: int,
        index: int,
        dial: int,
        addr: multiaddr.Multiaddr | None,
    ) -> None:
        reply = pb.Message()
        reply.dialResponse.status = status
        reply.dialResponse.addrIdx = index
        reply.dialResponse.dialStatus = dial
        self.served.append(
            {
                "time": utcnow(),
                "client": peer.to_base58(),
                "status": RESPONSE_NAMES.get(status, str(status)),
                "dial": DIAL_NAMES.get(dial, str(dial)),
                "addr": str(addr) if addr is not None else None,
            }
        )
        await write_delimited(stream, reply.SerializeToString())


async def _send_dial_data(stream: INetStream, wanted: int) -> int:
    """``wanted`` bytes (at least) as DialDataResponse messages of 4096 bytes."""
    chunk = pb.Message()
    chunk.dialDataResponse.data = bytes(DIAL_DATA_CHUNK)
    framed = chunk.SerializeToString()
    sent = 0
    while sent < wanted:
        await write_delimited(stream, framed)
        sent += DIAL_DATA_CHUNK
    return sent
