"""Identify: ask every new peer who it is, and answer each peer with addresses that suit it.

Asking (``/ipfs/id/1.0.0``) fills the peer table (agent, protocols, listen addresses),
feeds the address book with how the peer sees us (direct connections only: over a relay a
peer sees the relay), and tells the listeners (NAT coordination, the DHT) that a peer was
identified. Answering replaces py-libp2p's handler: the listen addresses in the answer
are the address book's choice for that peer (no loopback address to a remote peer), with
our circuit addresses, and the observed address is the connection's real remote address
(with its real transport: py-libp2p reports QUIC as ``/tcp``).

Example (the service on a host with no peers; it registers and restores the handler):
    >>> import trio
    >>> from ucsdk import ConnectivityConfig
    >>> from ucsdk.host import build_host
    >>> from ucsdk.identity import new_key_pair
    >>> from ucsdk.connectivity.recorder import Recorder
    >>> from ucsdk.connectivity.peertable import PeerTable
    >>> from ucsdk.connectivity.connections import ConnectionTracker
    >>> from ucsdk.connectivity.addressbook import AddressBook
    >>> from ucsdk.connectivity.identify import IdentifyService
    >>> async def main():
    ...     host = build_host(ConnectivityConfig.preset("development"), new_key_pair())
    ...     recorder = Recorder(10, 5)
    ...     peers = PeerTable(recorder, host.get_id().to_base58(), 10)
    ...     tracker = ConnectionTracker(host, peers, recorder)
    ...     service = IdentifyService(host, peers, tracker, AddressBook(host), recorder)
    ...     await service.start()
    ...     await service.stop()
    ...     return service.answered
    >>> trio.run(main)
    0
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable

import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetConn, INetStream
from libp2p.identity.identify.identify import (
    AGENT_VERSION,
    PROTOCOL_VERSION,
    identify_handler_for,
)
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.identity.identify_push.identify_push import (
    ID_PUSH as IDENTIFY_PUSH_PROTOCOL,
)
from libp2p.identity.identify_push.identify_push import (
    identify_push_handler_for,
)
from libp2p.identity.update import update_peerstore_from_identify
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerstore import env_to_send_in_RPC

from ucsdk._conn import close_quietly, connection_of, is_relayed, local_port, remote_address
from ucsdk._service import Service
from ucsdk._wire import FramingError, read_delimited, write_delimited
from ucsdk.config import transport_of
from ucsdk.connectivity.addressbook import AddressBook
from ucsdk.connectivity.connections import ConnectionTracker, OpenConnection
from ucsdk.connectivity.peertable import PeerTable
from ucsdk.connectivity.recorder import Recorder
from ucsdk.peers import PeerRecord
from ucsdk.protocols import IDENTIFY_MAX_SIZE, IDENTIFY_PROTOCOL, query_identify

logger = logging.getLogger("UniversalConnectivity")

IDENTIFY_TIMEOUT = 5.0
MAX_LISTEN_ADDRS = 64
MAX_PROTOCOLS = 256
MAX_PROTOCOL_LENGTH = 128
"""Longer protocol ids are dropped (cut short, one would name another protocol)."""
MAX_STRING = 256
"""Agent and protocol version strings are cut to this many characters."""
PEERSTORE_TTL = 7200

IdentifiedListener = Callable[[ID, PeerRecord], "Awaitable[None] | None"]


class InflightPeers(set[ID]):
    """py-libp2p's set of the peers its host is identifying (``_identify_inflight``),
    telling who waits for one when it leaves the set (ucsdk asked every 20 ms before).

    Example:
        >>> peers = InflightPeers()
        >>> peers.add("a"); peers.discard("a"); "a" in peers
        False
    """

    def __init__(self, peers: Iterable[ID] = ()) -> None:
        super().__init__(peers)
        self._waiters: dict[object, trio.Event] = {}

    def _done(self, peer: object) -> None:
        event = self._waiters.pop(peer, None)
        if event is not None:
            event.set()

    def discard(self, peer: object) -> None:
        super().discard(peer)
        self._done(peer)

    def remove(self, peer: ID) -> None:
        super().remove(peer)
        self._done(peer)

    def clear(self) -> None:
        super().clear()
        for peer in list(self._waiters):
            self._done(peer)

    async def wait_done(self, peer: ID) -> None:
        """Return once ``peer`` is not (or no longer) being identified."""
        while peer in self:
            event = self._waiters.get(peer)
            if event is None:
                event = self._waiters[peer] = trio.Event()
            await event.wait()


def watch_host_identify(host: IHost) -> None:
    """Put :class:`InflightPeers` in place of the host's ``_identify_inflight`` set."""
    inflight = getattr(host, "_identify_inflight", None)
    if isinstance(inflight, set) and not isinstance(inflight, InflightPeers):
        host._identify_inflight = InflightPeers(inflight)  # type: ignore[attr-defined]


class IdentifyService(Service):
    """Identifies every new connection's peer and answers identify per peer."""

    def __init__(
        self,
        host: IHost,
        peers: PeerTable,
        connections: ConnectionTracker,
        addresses: AddressBook,
        recorder: Recorder,
    ) -> None:
        super().__init__()
        self.host = host
        self._peers = peers
        self._connections = connections
        self._addresses = addresses
        self._recorder = recorder
        self.listeners: list[IdentifiedListener] = []
        """Called (and awaited if async) with each peer once identify told us who it is."""
        self.answered = 0

    async def _on_start(self) -> None:
        watch_host_identify(self.host)
        self.host.set_stream_handler(IDENTIFY_PROTOCOL, self._answer)
        self.host.set_stream_handler(IDENTIFY_PUSH_PROTOCOL, self._on_push)
        self._connections.listeners.append(self._on_connection)

    async def _on_stop(self) -> None:
        if self._on_connection in self._connections.listeners:
            self._connections.listeners.remove(self._on_connection)
        self.host.set_stream_handler(IDENTIFY_PROTOCOL, identify_handler_for(self.host, True))
        self.host.set_stream_handler(IDENTIFY_PUSH_PROTOCOL, identify_push_handler_for(self.host))

    def _on_connection(self, conn: INetConn, known: OpenConnection) -> None:
        self.spawn(self.identify, conn.muxed_conn.peer_id)

    # -------------------------------------------------------------------- asking
    async def _wait_for_host_identify(self, peer_id: ID) -> None:
        """Wait until py-libp2p's own identify of ``peer_id`` is over.

        Other implementations allow one inbound identify stream per connection at a time
        (js-libp2p resets the second one), so ours goes after the host's.
        """
        await trio.sleep(0.05)  # the host schedules its identify in its own notifee
        inflight = getattr(self.host, "_identify_inflight", None)
        if not isinstance(inflight, InflightPeers):
            return
        with trio.move_on_after(IDENTIFY_TIMEOUT):
            await inflight.wait_done(peer_id)

    async def identify(self, peer_id: ID) -> None:
        """Ask ``peer_id`` who it is and take in the answer (errors are the peer's)."""
        await self._wait_for_host_identify(peer_id)
        message = None
        for attempt in range(2):
            try:
                with trio.fail_after(IDENTIFY_TIMEOUT):
                    message = await query_identify(self.host, peer_id)
                break
            except (FramingError, DecodeError, StreamEOF) as exc:
                # A malformed answer (over 64 KiB, not an Identify) is the peer's doing:
                # counted, not asked again. One cut off is counted too, and asked once more
                # while the peer stays connected.
                cut = isinstance(exc, StreamEOF) or (
                    isinstance(exc, FramingError) and "exceeds the limit" not in str(exc)
                )
                kind = "truncated" if cut else "malformed"
                self._recorder.count_invalid(f"identify_{kind}", peer_id.to_base58())
                logger.debug(
                    "identify answer of %s: %s (attempt %d): %s", peer_id, kind, attempt, exc
                )
                if not cut:
                    return
                await trio.sleep(0.3)
                if not self.host.get_network().connections.get(peer_id):
                    return
            except Exception as exc:
                logger.debug("identify of %s failed (attempt %d): %s", peer_id, attempt, exc)
                await trio.sleep(0.3)
                # Opening a stream dials a peer that is gone: retry only while connected.
                if not self._peers.is_connected(peer_id.to_base58()) or not (
                    self.host.get_network().connections.get(peer_id)
                ):
                    return
        if message is not None:
            await self._take_in(peer_id, message)

    async def _take_in(self, peer_id: ID, message: Identify) -> None:
        record = self._peers.get(peer_id.to_base58())
        if record is None:
            return
        if record.pending:
            self._peers.confirm(record, "identified")
        message = self._bounded(message, record.peer_id)
        record.agent_version = message.agent_version or None
        record.protocols = tuple(sorted(str(p) for p in message.protocols))
        listen: list[str] = []
        for raw in list(message.listen_addrs)[:MAX_LISTEN_ADDRS]:
            try:
                listen.append(str(multiaddr.Multiaddr(raw)))
            except Exception:
                self._recorder.count_invalid("identify_bad_address", str(peer_id))
        record.add_addrs(listen, None)
        self._trim_peerstore(peer_id, record.protocols, listen)
        if message.HasField("observed_addr") and message.observed_addr:
            try:
                observed = str(multiaddr.Multiaddr(message.observed_addr))
            except Exception:
                self._recorder.count_invalid("identify_bad_observed_addr", str(peer_id))
            else:
                # Over a relay, the peer sees the relay's end of the pipe, not us.
                direct = [c for c in self._connections.of_peer(record.peer_id) if not c.relayed]
                if direct and "/p2p-circuit" not in observed:
                    self._addresses.observe(
                        record.peer_id,
                        direct[0].remote_addr,
                        observed,
                        local_port=self._local_port(peer_id, observed),
                    )
        self._recorder.record("identified", record.peer_id, record.agent_version or "")
        for listener in self.listeners:
            result = listener(peer_id, record)
            if inspect.isawaitable(result):
                await result

    def _local_port(self, peer_id: ID, observed: str) -> int | None:
        """Our port on the direct connection to ``peer_id`` of ``observed``'s transport:
        the port a NAT in between translated into the one the peer saw."""
        kind = transport_of(observed)
        for conn in self.host.get_network().connections.get(peer_id, []):
            if not is_relayed(conn) and transport_of(str(remote_address(conn))) == kind:
                return local_port(conn)
        return None

    def _bounded(self, message: Identify, peer: str) -> Identify:
        """``message`` within bounds: strings cut to ``MAX_STRING``, protocol ids over
        ``MAX_PROTOCOL_LENGTH`` dropped, at most ``MAX_PROTOCOLS`` protocols and
        ``MAX_LISTEN_ADDRS`` addresses; each cut is counted."""
        if len(message.agent_version) > MAX_STRING:
            self._recorder.count_invalid("identify_long_agent", peer)
        if len(message.protocol_version) > MAX_STRING:
            self._recorder.count_invalid("identify_long_protocol_version", peer)
        protocols = [p for p in message.protocols if len(p) <= MAX_PROTOCOL_LENGTH]
        if len(protocols) < len(message.protocols):
            self._recorder.count_invalid("identify_long_protocol", peer)
        if len(protocols) > MAX_PROTOCOLS:
            self._recorder.count_invalid("identify_too_many_protocols", peer)
        if len(message.listen_addrs) > MAX_LISTEN_ADDRS:
            self._recorder.count_invalid("identify_too_many_addrs", peer)
        clean = Identify()
        clean.CopyFrom(message)
        if clean.HasField("agent_version"):
            clean.agent_version = message.agent_version[:MAX_STRING]
        if clean.HasField("protocol_version"):
            clean.protocol_version = message.protocol_version[:MAX_STRING]
        del clean.protocols[:]
        clean.protocols.extend(protocols[:MAX_PROTOCOLS])
        del clean.listen_addrs[:]
        clean.listen_addrs.extend(list(message.listen_addrs)[:MAX_LISTEN_ADDRS])
        return clean

    async def _on_push(self, stream: INetStream) -> None:
        """Identify push (``/ipfs/id/push/1.0.0``): py-libp2p's handler, within bounds."""
        peer_id = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(IDENTIFY_TIMEOUT):
                data = await read_delimited(stream, IDENTIFY_MAX_SIZE)
            message = Identify.FromString(data)
        except Exception as exc:
            self._recorder.count_invalid("identify_push_malformed", peer_id.to_base58())
            logger.debug("identify push from %s refused: %s", peer_id, exc)
            await close_quietly(stream, reset=True)
            return
        clean = self._bounded(message, peer_id.to_base58())
        try:
            await update_peerstore_from_identify(self.host.get_peerstore(), peer_id, clean)
        except Exception as exc:
            logger.debug("identify push from %s not taken in: %s", peer_id, exc)
        self._trim_peerstore(peer_id, tuple(clean.protocols), [])
        await close_quietly(stream)

    def _trim_peerstore(self, peer_id: ID, protocols: tuple[str, ...], listen: list[str]) -> None:
        """Hold py-libp2p's peerstore to the same bounds: its own identify stores every
        protocol (any length) and up to 1000 addresses a peer lists."""
        store = self.host.get_peerstore()
        try:
            if len(store.get_protocols(peer_id)) > len(protocols):
                store.clear_protocol_data(peer_id)
                store.add_protocols(peer_id, list(protocols))
            addrs = store.addrs(peer_id)
            if len(addrs) > MAX_LISTEN_ADDRS:
                keep = [multiaddr.Multiaddr(a) for a in listen] or addrs[:MAX_LISTEN_ADDRS]
                store.clear_addrs(peer_id)
                store.add_addrs(peer_id, keep[:MAX_LISTEN_ADDRS], PEERSTORE_TTL)
        except Exception as exc:  # a peer the peerstore no longer holds
            logger.debug("trimming the peerstore entry of %s failed: %s", peer_id, exc)

    # ----------------------------------------------------------------- answering
    async def _answer(self, stream: INetStream) -> None:
        """Our identify answer, with the addresses that suit the asking peer."""
        try:
            conn = connection_of(self.host, stream)
            known = self._connections.get(conn) if conn is not None else None
            remote = known.remote_addr if known is not None else None
            relayed = known is not None and known.relayed
            # Over a relay we do not know where the peer is: public addresses only.
            listen = self._addresses.advertised(for_remote="" if relayed else remote)
            envelope, _ = env_to_send_in_RPC(self.host)
            message = Identify(
                protocol_version=PROTOCOL_VERSION,
                agent_version=AGENT_VERSION,
                public_key=self.host.get_public_key().serialize(),
                listen_addrs=[
                    multiaddr.Multiaddr(a).to_bytes()
                    for a in [*listen, *self._addresses.circuit_addrs()]
                ],
                protocols=[str(p) for p in self.host.get_mux().get_protocols() if p is not None],
                signedPeerRecord=envelope,
            )
            if remote and not relayed:
                message.observed_addr = multiaddr.Multiaddr(remote).to_bytes()
            await write_delimited(stream, message.SerializeToString())
            self.answered += 1
        except Exception as exc:
            logger.debug("answering identify failed: %s", exc)
            await close_quietly(stream, reset=True)
            return
        await close_quietly(stream)
