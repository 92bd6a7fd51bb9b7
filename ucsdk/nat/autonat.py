"""AutoNAT v1 (``/libp2p/autonat/1.0.0``): am I reachable from the internet?

The module is ~530 lines: the client, the server and its separate dial-back host.

The client asks peers that run the service to dial it back. The server dials back on a
**fresh connection from a separate dialer host** (its own identity, so the existing
connection can never answer for it), only to addresses whose IP is the requester's observed
IP, never for a request that came over a relayed connection, and within rate limits per
peer and in total. The server caps its streams (in total and per peer) *before* reading a
request and gives the request ``read_timeout`` seconds to arrive; what it turns away is
counted in ``dropped``. The client asks several servers, ignores refusals and internal
errors, and changes its verdict only when ``min_agreement`` servers from at least
``min_groups`` distinct IP groups (IPv4 /16, IPv6 /56: :func:`ucsdk.addresses.ip_group`)
agree, so that identities from one network, however many, cannot decide it alone.

Wire format (libp2p specs, autonat-v1): uvarint-length-prefixed protobuf ``Message``;
the client sends ``DIAL{peer{id, addrs}}``, the server answers
``DIAL_RESPONSE{status, statusText, addr}`` with status ``OK`` (0), ``E_DIAL_ERROR`` (100),
``E_DIAL_REFUSED`` (101), ``E_BAD_REQUEST`` (200) or ``E_INTERNAL_ERROR`` (300).

Example (two nodes on loopback; the server dials the client back over a new connection):
    >>> import trio, multiaddr
    >>> from libp2p import new_host
    >>> from ucsdk.nat.autonat import AutoNAT
    >>> async def main():
    ...     server, client = new_host(), new_host()
    ...     loop = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    ...     async with server.run(loop), client.run(loop):
    ...         served = AutoNAT(server, min_agreement=1)
    ...         asking = AutoNAT(client, min_agreement=1, serve=False)
    ...         await served.start(); await asking.start()
    ...         await client.connect(info_of(server))
    ...         report = await asking.ask(server.get_id())
    ...         await asking.stop(); await served.stop()
    ...         return report.status_name, asking.nat_status
    >>> def info_of(host):
    ...     from libp2p.peer.peerinfo import PeerInfo
    ...     return PeerInfo(host.get_id(), host.get_addrs())
    >>> trio.run(main)
    ('OK', 'public')
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
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
from ucsdk.addresses import ip_group
from ucsdk.proto import AutoNATMessage

logger = logging.getLogger("UniversalConnectivity.autonat")

AUTONAT_PROTOCOL = TProtocol("/libp2p/autonat/1.0.0")
MAX_MESSAGE = 4096
MAX_ADDRS = 16
MAX_DIALBACK_ADDRS = 4  # addresses dialled back per request (each up to dial_timeout)
MAX_CONCURRENT_DIALBACKS = 8

DIAL, DIAL_RESPONSE = 0, 1
OK, E_DIAL_ERROR, E_DIAL_REFUSED, E_BAD_REQUEST, E_INTERNAL_ERROR = 0, 100, 101, 200, 300
STEADY_MAX_FACTOR = 8
STEADY_LONGEST_WAIT = 900.0
"""Rounds that leave a confident verdict unchanged space the next ones out: the wait
doubles after each, up to ``STEADY_MAX_FACTOR`` times the interval, and not past 15 min
(go-libp2p's refresh interval once confident) unless the interval itself is longer."""


class SteadyBackoff:
    """The wait before the next AutoNAT round: the interval while a verdict is new or
    unsure, doubled after each round that left a confident verdict as it was.

    Example:
        >>> waits = SteadyBackoff(30.0)
        >>> rounds = [("private", "public", True), ("public", "public", True),
        ...           ("public", "public", True), ("public", "public", False)]
        >>> [waits.after_round(*r) for r in rounds]
        [30.0, 60.0, 120.0, 30.0]
        >>> slow = SteadyBackoff(300.0)  # 15 min at most
        >>> [slow.after_round("public", "public", True) for _ in range(3)]
        [600.0, 900.0, 900.0]
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.steady_rounds = 0

    def after_round(self, before: object, after: object, confident: bool) -> float:
        if confident and before == after:
            self.steady_rounds += 1
        else:
            self.steady_rounds = 0
        factor = min(2**self.steady_rounds, STEADY_MAX_FACTOR)
        return min(self.interval * factor, max(self.interval, STEADY_LONGEST_WAIT))


STATUS_NAMES = {
    OK: "OK",
    E_DIAL_ERROR: "E_DIAL_ERROR",
    E_DIAL_REFUSED: "E_DIAL_REFUSED",
    E_BAD_REQUEST: "E_BAD_REQUEST",
    E_INTERNAL_ERROR: "E_INTERNAL_ERROR",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class AutoNATReport:
    """One answer an AutoNAT server gave this node."""

    time: datetime
    server: str
    status: int
    status_text: str
    dialed_addr: str | None
    asked_addrs: tuple[str, ...]
    ms: float
    nat_status_after: str = "unknown"
    confidence_after: int = 0
    server_ip: str | None = None
    """The IP of the connection the server answered on (``None`` if unknown or relayed)."""
    server_group: str | None = None
    """That IP's group (IPv4 /16, IPv6 /56); servers in one group count as one network."""
    vote: str = ""
    """How this answer was counted, and why the verdict after it is what it is."""

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, str(self.status))

    @property
    def counts(self) -> bool:
        """Whether this answer is evidence (refusals and errors on the server's side are not)."""
        return self.status in (OK, E_DIAL_ERROR)

    @property
    def counted(self) -> bool:
        """Whether this answer is a vote: evidence from a server whose IP group is known."""
        return self.counts and self.server_group is not None


@dataclass
class _RateLimit:
    """At most ``per_peer`` requests per peer and ``total`` overall per ``window`` seconds."""

    per_peer: int = 3
    total: int = 30
    window: float = 90.0
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


def _group_of(ip: str | None) -> str | None:
    if ip is None:
        return None
    try:
        return ip_group(ip)
    except ValueError:
        return None


def dialable_for(
    addrs: Iterable[multiaddr.Multiaddr], observed_ip: str
) -> list[multiaddr.Multiaddr]:
    """The addresses a server may dial back: same IP as observed, TCP or QUIC, not relayed.

    Example:
        >>> from multiaddr import Multiaddr as M
        >>> [str(a) for a in dialable_for(
        ...     [M("/ip4/198.51.100.7/tcp/4001"), M("/ip4/203.0.113.9/tcp/4001"),
        ...      M("/ip4/198.51.100.7/tcp/4001/p2p-circuit")], "198.51.100.7")]
        ['/ip4/198.51.100.7/tcp/4001']
    """
    out = []
    for addr in addrs:
        text = str(addr)
        if "/p2p-circuit" in text or ip_of(addr) != observed_ip:
            continue
        if "/tcp/" not in text and "/quic-v1" not in text:
            continue
        if "/ws" in text or "/webtransport" in text or "/webrtc" in text:
            continue
        out.append(addr)
    return out


_DIAL_BACK_LOCKS: weakref.WeakKeyDictionary[IHost, dict[ID, trio.Lock]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def dial_back_to(dialer: IHost, peer: ID) -> AsyncIterator[None]:
    """Hold the dial-back host's line to ``peer``: one dial-back at a time (AutoNAT v1 and
    v2 share the host), no connection to ``peer`` before or after, no address remembered.

    py-libp2p's ``connect`` reuses any open connection to the peer: without this, a
    dial-back to one address could ride on a connection another dial-back opened to a
    different one, and report an address reachable that was never dialled.
    """
    locks = _DIAL_BACK_LOCKS.setdefault(dialer, {})
    lock = locks.setdefault(peer, trio.Lock())
    network = dialer.get_network()

    async def forget() -> None:
        for conn in list(network.connections.get(peer, [])):
            await close_quietly(conn, 3)
        with contextlib.suppress(Exception):
            dialer.get_peerstore().clear_addrs(peer)

    try:
        async with lock:
            await forget()
            # py-libp2p refuses to redial a peer for a while after a failure; every
            # dial-back must be a real attempt.
            unblock = getattr(network, "unblock_peer", None)
            if callable(unblock):
                unblock(peer)
            try:
                yield
            finally:
                with trio.CancelScope(shield=True):
                    await forget()
    finally:
        if not lock.locked() and not lock.statistics().tasks_waiting:
            locks.pop(peer, None)


async def dial_fresh(dialer: IHost, peer: ID, addr: multiaddr.Multiaddr) -> None:
    """Dial ``peer`` at ``addr`` with a new connection (never one already open or still
    closing, as ``host.connect`` would reuse); hold :func:`dial_back_to` around it."""
    await dialer.get_network().dial_addr(addr, peer)


class AutoNAT(Service):
    """AutoNAT v1 client and (unless ``serve=False``) server on one host.

    ``nat_status`` is ``"public"``, ``"private"`` or ``"unknown"``; ``confidence`` (0-3)
    is how many of the latest answers agree with it. ``reports`` lists every answer
    (which server said what), newest last. ``query_interval`` seconds between rounds;
    each round asks up to ``servers_per_round`` connected peers that speak AutoNAT.
    """

    def __init__(
        self,
        host: IHost,
        query_interval: float = 300.0,
        *,
        serve: bool = True,
        min_agreement: int = 3,
        min_groups: int = 2,
        servers_per_round: int = 4,
        boot_delay: float = 15.0,
        dial_timeout: float = 10.0,
        candidate_addrs: Callable[[], Sequence[str]] | None = None,
        on_status_change: Callable[[str, str, int], None] | None = None,
        rate_limit_per_peer: int = 3,
        rate_limit_total: int = 30,
        rate_limit_window: float = 90.0,
        max_reports: int = 1000,
        max_streams: int = 16,
        max_streams_per_peer: int = 2,
        read_timeout: float = 5.0,
        on_report: Callable[[AutoNATReport], None] | None = None,
    ) -> None:
        super().__init__()
        if (
            query_interval <= 0
            or min_agreement < 1
            or min_groups < 1
            or servers_per_round < 1
            or max_streams < 1
            or max_streams_per_peer < 1
            or not 0 < read_timeout < float("inf")
        ):
            from ucsdk import errors

            raise errors.InvalidInput(
                "AutoNAT setting",
                {
                    "query_interval": query_interval,
                    "min_agreement": min_agreement,
                    "min_groups": min_groups,
                    "servers_per_round": servers_per_round,
                    "max_streams": max_streams,
                    "max_streams_per_peer": max_streams_per_peer,
                    "read_timeout": read_timeout,
                },
                "query_interval > 0, min_agreement, min_groups, servers_per_round, "
                "max_streams and max_streams_per_peer >= 1, 0 < read_timeout < inf",
            )
        self.host = host
        self.query_interval = float(query_interval)
        self.serve = serve
        self.min_agreement = min_agreement
        # More groups than agreeing servers could never be met: at most one group each.
        self.min_groups = min(min_groups, min_agreement)
        self.servers_per_round = servers_per_round
        self.boot_delay = boot_delay
        self.dial_timeout = dial_timeout
        self.candidate_addrs = candidate_addrs
        self.on_status_change = on_status_change
        self.on_report = on_report
        self.max_streams = max_streams
        self.max_streams_per_peer = max_streams_per_peer
        self.read_timeout = float(read_timeout)
        self._open: collections.Counter[str] = collections.Counter()
        """Server streams being handled now, by requesting peer (zero entries removed)."""
        self.nat_status = "unknown"
        self.confidence = 0
        self.reports: collections.deque[AutoNATReport] = collections.deque(maxlen=max_reports)
        self.served: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_reports)
        self.dropped: collections.Counter[str] = collections.Counter()
        """Requests dropped, by kind: bad input (``malformed``, ``wrong_type``,
        ``spoofed_peer``), streams refused before reading (``busy``: ``max_streams`` in
        total, ``peer_busy``: ``max_streams_per_peer``), requests that did not arrive within
        ``read_timeout`` (``read_timeout``) and dial-backs refused by the rate limit
        (``rate_limited``)."""
        self._limit = _RateLimit(rate_limit_per_peer, rate_limit_total, rate_limit_window)
        self._dialer: IHost | None = None
        self._dialer_ready: trio.Event | None = None
        self._dialer_started = False
        self._dial_slots: trio.CapacityLimiter | None = None
        self._wake: trio.Event | None = None

    # ------------------------------------------------------------ life cycle
    async def _on_start(self) -> None:
        self._dialer_ready = trio.Event()
        self._dial_slots = trio.CapacityLimiter(MAX_CONCURRENT_DIALBACKS)
        self._wake = trio.Event()
        if self.serve:
            self.host.set_stream_handler(AUTONAT_PROTOCOL, self._handle)

    async def _run(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._probe_loop)

    async def _on_stop(self) -> None:
        if self.serve:
            try:
                self.host.remove_stream_handler(AUTONAT_PROTOCOL)
            except Exception as exc:
                logger.debug("removing the AutoNAT handler failed: %s", exc)

    async def _run_dialer(self) -> None:
        """The dial-back host: own identity, no listener, TCP and QUIC (started lazily)."""
        from ucsdk.config import ConnectivityConfig
        from ucsdk.host import build_host

        config = ConnectivityConfig(
            transports=["tcp", "quic"],
            listen_addrs=["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"],
            enable_mdns=False,
        )
        dialer = build_host(config, create_new_key_pair())
        try:
            async with dialer.run([]):
                from ucsdk.host import disable_auto_dial

                await disable_auto_dial(dialer)
                self._dialer = dialer
                assert self._dialer_ready is not None
                self._dialer_ready.set()
                await trio.sleep_forever()
        finally:
            self._dialer = None
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await dialer.close()

    async def dial_back_host(self) -> IHost | None:
        """The host dial-backs come from (its own identity and ports), started with the
        first request a server has to serve; ``None`` if it could not start within 10 s.
        AutoNAT v2's server on the same node dials from this host too."""
        assert self._dialer_ready is not None
        if not self._dialer_started:
            self._dialer_started = self.spawn(self._run_dialer)
        with trio.move_on_after(10):
            await self._dialer_ready.wait()
        return self._dialer

    # ------------------------------------------------------------ server
    def _request_timeout(self) -> float:
        """Longest a request may take: every address dialled back in turn, plus queueing."""
        return self.dial_timeout * (MAX_DIALBACK_ADDRS + 1) + 10

    async def _handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        key = peer.to_base58()
        # Caps first, before a byte of the request is read: a refused stream is reset.
        refused = None
        if sum(self._open.values()) >= self.max_streams:
            refused = "busy"
        elif self._open[key] >= self.max_streams_per_peer:
            refused = "peer_busy"
        if refused is not None:
            self.dropped[refused] += 1
            logger.debug("AutoNAT: %s stream from %s refused (%s)", refused, peer, refused)
            await close_quietly(stream, 2, reset=True)
            return
        self._open[key] += 1
        try:
            await self._handle_admitted(stream, peer)
        finally:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

    async def _handle_admitted(self, stream: INetStream, peer: ID) -> None:
        try:
            with trio.fail_after(self._request_timeout()):
                try:
                    with trio.fail_after(self.read_timeout):
                        raw = await read_delimited(stream, MAX_MESSAGE)
                    request = AutoNATMessage.FromString(raw)
                except trio.TooSlowError:
                    self.dropped["read_timeout"] += 1
                    logger.debug("AutoNAT: no request from %s within the read deadline", peer)
                    await close_quietly(stream, 2, reset=True)
                    return
                except (FramingError, Exception) as exc:
                    self.dropped["malformed"] += 1
                    logger.debug("AutoNAT: malformed request from %s: %s", peer, exc)
                    await self._respond(
                        stream, E_BAD_REQUEST, "malformed message", None, peer, None
                    )
                    return
                status, text, dialed, observed = await self._serve(stream, peer, request)
                await self._respond(stream, status, text, dialed, peer, observed)
        except Exception as exc:
            logger.debug("AutoNAT: serving %s failed: %s", peer, exc)
        finally:
            await close_quietly(stream, 2)

    async def _serve(
        self, stream: INetStream, peer: ID, request: Any
    ) -> tuple[int, str, multiaddr.Multiaddr | None, str | None]:
        if request.type != DIAL or not request.HasField("dial"):
            self.dropped["wrong_type"] += 1
            return E_BAD_REQUEST, "expected a DIAL message", None, None
        conn = connection_of(self.host, stream)
        remote = remote_address(conn)
        if remote is None or "/p2p-circuit" in str(remote) or is_relayed(conn):
            return E_DIAL_REFUSED, "request over a relayed connection", None, None
        observed_ip = ip_of(remote)
        if observed_ip is None:
            return E_DIAL_REFUSED, "no observed IP for this connection", None, None
        claimed = request.dial.peer.id
        if claimed and claimed != peer.to_bytes():
            self.dropped["spoofed_peer"] += 1
            return E_BAD_REQUEST, "peer id is not the requester's", None, observed_ip
        addrs = []
        for raw in list(request.dial.peer.addrs)[:MAX_ADDRS]:
            try:
                addr = multiaddr.Multiaddr(raw)
                str(addr)  # py-multiaddr decodes lazily: a bad protocol code raises here
            except Exception:
                continue
            addrs.append(addr)
        candidates = dialable_for(addrs, observed_ip)[:MAX_DIALBACK_ADDRS]
        if not candidates:
            return (
                E_DIAL_REFUSED,
                f"no dialable address with your IP {observed_ip}",
                None,
                observed_ip,
            )
        if not self._limit.allow(peer.to_base58()):
            self.dropped["rate_limited"] += 1
            return E_DIAL_REFUSED, "rate limited", None, observed_ip
        ok, text, dialed = await self._dial_back(peer, candidates)
        return (OK if ok else E_DIAL_ERROR), text, dialed, observed_ip

    async def _dial_back(
        self, peer: ID, candidates: list[multiaddr.Multiaddr]
    ) -> tuple[bool, str, multiaddr.Multiaddr | None]:
        assert self._dial_slots is not None
        dialer = await self.dial_back_host()
        if dialer is None:
            return False, "dial-back host not running", None
        errors_seen = []
        async with self._dial_slots:  # bounded work however many ask at once
            for addr in candidates:
                async with dial_back_to(dialer, peer):
                    try:
                        with trio.fail_after(self.dial_timeout):
                            await dial_fresh(dialer, peer, addr)
                    except trio.TooSlowError:
                        errors_seen.append(f"{addr}: no answer within {self.dial_timeout:g} s")
                        continue
                    except Exception as exc:
                        errors_seen.append(f"{addr}: {type(exc).__name__} {exc}".strip()[:200])
                        continue
                return True, "dial back succeeded", addr
        return False, "; ".join(errors_seen) or "dial back failed", None

    async def _respond(
        self,
        stream: INetStream,
        status: int,
        text: str,
        dialed: multiaddr.Multiaddr | None,
        peer: ID,
        observed_ip: str | None,
    ) -> None:
        reply = AutoNATMessage(type=DIAL_RESPONSE)
        reply.dialResponse.status = status
        reply.dialResponse.statusText = text
        if dialed is not None:
            reply.dialResponse.addr = dialed.to_bytes()
        self.served.append(
            {
                "time": utcnow(),
                "client": peer.to_base58(),
                "observed_ip": observed_ip,
                "status": STATUS_NAMES.get(status, str(status)),
                "status_text": text,
                "dialed_addr": str(dialed) if dialed is not None else None,
            }
        )
        await write_delimited(stream, reply.SerializeToString())

    # ------------------------------------------------------------ client
    def own_addrs(self) -> list[str]:
        """Addresses to ask about: the callback's, else the host's own listen addresses.

        The server dials only those with the IP it sees us coming from, so a node behind a
        NAT should also offer its observed IP with its listen ports (the manager's
        callback does: see ``UniversalConnectivityManager.autonat_candidates``).
        """
        if self.candidate_addrs is not None:
            return list(self.candidate_addrs())[:MAX_ADDRS]
        return [str(a).split("/p2p/")[0] for a in self.host.get_addrs()][:MAX_ADDRS]

    async def ask(self, server: ID, addrs: Sequence[str] | None = None) -> AutoNATReport:
        """Ask ``server`` to dial us back at ``addrs`` (default :meth:`own_addrs`)."""
        asked = tuple(addrs if addrs is not None else self.own_addrs())
        started = time.perf_counter()
        request = AutoNATMessage(type=DIAL)
        request.dial.peer.id = self.host.get_id().to_bytes()
        for addr in asked:
            request.dial.peer.addrs.append(multiaddr.Multiaddr(addr).to_bytes())
        status, text, dialed = E_INTERNAL_ERROR, "", None
        server_ip: str | None = None
        try:
            with trio.fail_after(self._request_timeout() + 5):
                stream = await self.host.new_stream(server, [AUTONAT_PROTOCOL])
                conn = connection_of(self.host, stream)
                if not is_relayed(conn):
                    server_ip = ip_of(remote_address(conn))
                try:
                    await write_delimited(stream, request.SerializeToString())
                    reply = AutoNATMessage.FromString(await read_delimited(stream, MAX_MESSAGE))
                finally:
                    await close_quietly(stream, 2)
            if reply.type != DIAL_RESPONSE or not reply.HasField("dialResponse"):
                text = "the server answered with something other than DIAL_RESPONSE"
            else:
                status = reply.dialResponse.status
                text = reply.dialResponse.statusText
                if reply.dialResponse.addr:
                    try:
                        dialed = str(multiaddr.Multiaddr(reply.dialResponse.addr))
                    except Exception:
                        dialed = None
        except Exception as exc:
            text = f"no answer: {type(exc).__name__} {exc}".strip()
        report = AutoNATReport(
            utcnow(),
            server.to_base58(),
            status,
            text,
            dialed,
            asked,
            round((time.perf_counter() - started) * 1000, 1),
            server_ip=server_ip,
            server_group=_group_of(server_ip),
        )
        return self._record(report)

    def _record(self, report: AutoNATReport) -> AutoNATReport:
        self.reports.append(report)
        before = self.nat_status
        verdict = self._decide()
        if not report.counts:
            vote = f"not counted: {report.status_name} is no evidence; {verdict}"
        elif report.server_group is None:
            vote = "not counted: no IP for the server's connection (relayed or gone); " + verdict
        else:
            vote = f"counted for group {report.server_group}; {verdict}"
        report = AutoNATReport(
            **{
                **report.__dict__,
                "nat_status_after": self.nat_status,
                "confidence_after": self.confidence,
                "vote": vote,
            }
        )
        self.reports[-1] = report
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:
                logger.exception("AutoNAT report callback raised")
        if self.nat_status != before and self.on_status_change is not None:
            try:
                self.on_status_change(before, self.nat_status, self.confidence)
            except Exception:
                logger.exception("AutoNAT status callback raised")
        return report

    def _decide(self) -> str:
        """Update the verdict from the latest vote of each server; say why it is what it is.

        A server's vote counts only with a known IP group. A verdict needs ``min_agreement``
        servers from ``min_groups`` distinct IP groups agreeing, and more groups for it
        than against it (each group's say is the newest vote from any server in it).
        """
        latest: dict[str, AutoNATReport] = {}
        for report in self.reports:
            if report.counted:
                latest[report.server] = report
        servers = {OK: 0, E_DIAL_ERROR: 0}
        for report in latest.values():
            servers[report.status] += 1
        by_group: dict[str, int] = {}
        for report in sorted(latest.values(), key=lambda r: r.time):
            assert report.server_group is not None
            by_group[report.server_group] = report.status
        groups = {OK: 0, E_DIAL_ERROR: 0}
        for status in by_group.values():
            groups[status] += 1
        for status, name in ((OK, "public"), (E_DIAL_ERROR, "private")):
            other = E_DIAL_ERROR if status == OK else OK
            if (
                servers[status] >= self.min_agreement
                and groups[status] >= self.min_groups
                and groups[status] > groups[other]
            ):
                self.nat_status = name
        agreeing = {"public": servers[OK], "private": servers[E_DIAL_ERROR]}
        self.confidence = min(3, agreeing.get(self.nat_status, 0))
        return (
            f"{self.nat_status}: public {servers[OK]} server(s) in {groups[OK]} group(s), "
            f"private {servers[E_DIAL_ERROR]} in {groups[E_DIAL_ERROR]}; a verdict needs "
            f"{self.min_agreement} in {self.min_groups} group(s)"
        )

    def servers(self) -> list[ID]:
        """Connected peers that speak AutoNAT (from identify), excluding relayed ones."""
        found = []
        peerstore = self.host.get_peerstore()
        for peer, conns in list(self.host.get_network().connections.items()):
            if not conns or all(is_relayed(c) for c in conns):
                continue
            try:
                if peerstore.supports_protocols(peer, [str(AUTONAT_PROTOCOL)]):
                    found.append(peer)
            except Exception:
                continue
        return found

    async def probe(self) -> list[AutoNATReport]:
        """One round: ask up to ``servers_per_round`` servers now, in parallel."""
        servers = self.servers()[: self.servers_per_round]
        results: list[AutoNATReport] = []

        async def one(server: ID) -> None:
            results.append(await self.ask(server))

        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(one, server)
        return results

    def poke(self) -> None:
        """Run the next round soon (e.g. after a new connection to a server)."""
        if self._wake is not None:
            self._wake.set()

    async def _probe_loop(self) -> None:
        await trio.sleep(self.boot_delay)
        waits = SteadyBackoff(self.query_interval)
        while True:
            if self.servers():
                before = self.nat_status
                await self.probe()
                confident = self.nat_status != "unknown" and self.confidence >= 3
                wait = waits.after_round(before, self.nat_status, confident)
            else:
                wait = min(self.query_interval, 5.0)  # wait for a server to appear
            assert self._wake is not None
            with trio.move_on_after(wait):
                await self._wake.wait()
            self._wake = trio.Event()


__all__ = [
    "AUTONAT_PROTOCOL",
    "AutoNAT",
    "AutoNATReport",
    "SteadyBackoff",
    "dial_back_to",
    "dial_fresh",
    "dialable_for",
]
