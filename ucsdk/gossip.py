"""GossipSub as ucsdk runs it: py-libp2p's Pubsub made safe, interoperable and lossless.

One :class:`CheckedPubsub` per node carries both pubsub peer discovery and the user's
topics. What it changes in py-libp2p 0.8.1's ``Pubsub``:

- a ``key`` field that is not a serialized public key no longer ends the whole service
  (dropped and counted ``bad_signature``);
- per-peer tasks end when the peer is gone (no task left behind by peers that leave at
  once);
- sequence numbers do not repeat across restarts or between nodes started in the same
  second (py-libp2p starts at the time in seconds; js UC peers use the sequence number
  alone as the message id, so such repeats are dropped there as duplicates);
- the message id function is chosen by name (:data:`MESSAGE_ID_FUNCTIONS`) or given;
- messages on a topic with a delivery hook go to the hook with the peer that forwarded
  them, instead of py-libp2p's 32-slot queue that drops the rest silently;
- the per-peer outbound queues hold :data:`OUTBOUND_QUEUE_SIZE` RPCs, and what they refuse
  is counted (``outbound_dropped``), not only logged; :meth:`CheckedPubsub.publish_message`
  waits for room (back-pressure) rather than drop, and returns the message;
- a peer's subscriptions stay while the stream it announced them on lives: py-libp2p
  forgot them when *our* stream to the peer failed, and the peer (whose stream was fine)
  never sent them again, so its topics looked empty for good. Seen with js-libp2p dialling
  over ``/webrtc``: our first stream went over the relayed connection, which js refuses
  for pubsub.

Example:
    >>> msg = rpc_pb2.Message(seqno=(42).to_bytes(8, "big"), from_id=b"x", data=b"hi")
    >>> MESSAGE_ID_FUNCTIONS["uc"](msg).hex()[:16]  # sha256 of the text "42"
    '73475cb40a568e8d'
    >>> message_id_function("default")(msg)
    b'x\\x00\\x00\\x00\\x00\\x00\\x00\\x00*'
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.host.exceptions import StreamFailure
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamClosed, StreamReset
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub, ValidationCache
from libp2p.pubsub.pubsub_notifee import PubsubNotifee
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.tools.anyio_service import background_trio_service
from libp2p.tools.timed_cache.last_seen_cache import LastSeenCache

from ucsdk import errors
from ucsdk._wire import encode_uvarint

logger = logging.getLogger("UniversalConnectivity")

PEER_TASK_TIMEOUT = 30.0
"""Seconds; how long py-libp2p's per-peer pubsub tasks (replaying recent messages,
retrying the stream to a new peer) may run before they give up."""

OUTBOUND_QUEUE_SIZE = 1024
"""RPCs queued per peer before new ones are refused (py-libp2p and go: 32)."""

READ_AHEAD = 64 * 1024
"""Bytes asked of a peer's pubsub stream per read."""

WRITE_BATCH = 64 * 1024
"""Bytes of queued RPCs a peer's sending loop writes at once."""

PUBLISH_WAIT = 10.0
"""Seconds :meth:`CheckedPubsub.publish_message` waits for room in a full outbound queue."""

MessageIdFn = Callable[[Any], bytes]

_HELLO_TOPICS: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "ucsdk_hello_topics", default=None
)
"""The topics the hello packet being sent named, in the task sending it (one per peer)."""


def _from_and_seqno(msg: Any) -> bytes:
    return bytes(msg.from_id) + bytes(msg.seqno)


def _uc_seqno_sha256(msg: Any) -> bytes:
    return hashlib.sha256(str(int.from_bytes(msg.seqno, "big")).encode()).digest()


def _content_sha256(msg: Any) -> bytes:
    return hashlib.sha256(msg.data).digest()


MESSAGE_ID_FUNCTIONS: dict[str, MessageIdFn] = {
    "default": _from_and_seqno,
    "uc": _uc_seqno_sha256,
    "content": _content_sha256,
}
"""Message id functions by name: ``default`` is the spec's and go's (``from`` + seqno);
``uc`` is the universal-connectivity js peers' (sha256 of the seqno's decimal text);
``content`` hashes the data (sha256), so equal payloads are one message."""


def message_id_function(choice: str | MessageIdFn) -> MessageIdFn:
    """The function for ``choice``: a name from :data:`MESSAGE_ID_FUNCTIONS` or a callable
    taking the raw message (``.data``, ``.from_id``, ``.seqno``) and returning bytes."""
    if callable(choice):
        return choice
    try:
        return MESSAGE_ID_FUNCTIONS[choice]
    except (KeyError, TypeError):
        raise errors.ConfigError(
            "pubsub_message_id", choice, f"one of {', '.join(MESSAGE_ID_FUNCTIONS)} or a callable"
        ) from None


def initial_seqno() -> int:
    """Where a node's sequence numbers start: the time in microseconds times 2,048, plus
    11 random bits. A restart starts above everything the previous run used unless that
    run published more than 2,048 messages per microsecond between the two starts; nodes
    started a millisecond apart are two million numbers apart (go-libp2p starts at the
    time in nanoseconds; py-libp2p at the time in seconds, so restarts and nodes started
    in the same second reused numbers)."""
    return ((time.time_ns() // 1000) << 11) | secrets.randbits(11)


class CheckedPubsub(Pubsub):
    """py-libp2p's Pubsub with the changes listed in the module docstring.

    ``on_reject(reason)`` is told of every message dropped before validation.
    ``deliver[topic]`` (set by the owner) receives ``(forwarder, message)`` for each new,
    valid message on ``topic``, on the event loop; it must not block.
    """

    def __init__(
        self,
        *args: Any,
        on_reject: Callable[[str], None],
        outbound_queue_size: int = OUTBOUND_QUEUE_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_reject = on_reject
        self.counter = initial_seqno()
        self.deliver: dict[str, Callable[[ID, Any], None]] = {}
        self.outbound_queue_size = outbound_queue_size
        self.outbound_dropped = 0
        self._reading: dict[ID, int] = {}
        """Per peer, its streams to us being read (where its subscriptions came from)."""
        self._forwarders: dict[int, ID] = {}
        self._write_locks: dict[ID, trio.Lock] = {}
        """One per peer with a stream: the sending loop's batched writes and py-libp2p's
        direct writes (pending messages flushed, recent messages replayed) take turns."""
        # Its seen-message cache runs a sweeper thread per Pubsub; the same cache swept
        # inline adds no thread.
        original = self.seen_messages
        original.stop()
        self.seen_messages = InlineSweptSeenCache(original.ttl, original.sweep_interval)
        cache = self.validation_cache
        self.validation_cache = LruValidationCache(cache.ttl, cache.max_size)
        self.peer_queues = _SizedQueues(self._size_queue)

    # ------------------------------------------------------------- peers' tasks
    def get_hello_packet(self) -> rpc_pb2.RPC:
        packet = super().get_hello_packet()
        _HELLO_TOPICS.set(frozenset(sub.topicid for sub in packet.subscriptions))
        return packet

    async def _handle_new_peer(self, peer_id: ID) -> None:
        _HELLO_TOPICS.set(None)
        try:
            await super()._handle_new_peer(peer_id)
        except StreamFailure as exc:
            # py-libp2p retries a failed stream open only for SwarmException and
            # StreamClosed. A negotiation cut short (the stream reset because a duplicate
            # connection was being closed) came as StreamFailure and left the peer without
            # a pubsub stream for good, while it stayed connected: retried now, unless the
            # peer said it speaks no pubsub protocol.
            if self._peer_is_connected(peer_id) and not _refused_protocol(exc):
                raise SwarmException(f"pubsub stream to {peer_id}: {exc}") from exc
            raise
        self._announce_missed(peer_id, _HELLO_TOPICS.get())
        if peer_id in self.peers and not self._peer_is_connected(peer_id):
            # The peer left while py-libp2p was adding it: its dead-peer handling ran
            # before the peer was in ``peers`` and did nothing, and the peer's sending task
            # would wait on its queue for ever. Handle the departure again, now.
            self._handle_dead_peer(peer_id)

    def _size_queue(self, queue: Any) -> None:
        """Give a peer's outbound queue ucsdk's size, and count what it drops. Done as
        py-libp2p registers the queue: it then still flushes pending messages and replays
        recent ones before ``_handle_new_peer`` returns, and messages published meanwhile
        overflowed its default 32 slots without a count (1 of 3,000 lost in CI once)."""
        queue._queue.max_size = self.outbound_queue_size
        push = queue.push

        def counted_push(rpc: Any, priority: bool = False) -> bool:
            ok = push(rpc, priority)
            if not ok and not queue.closed:
                self.outbound_dropped += 1
            return ok

        queue.push = counted_push

    def _announce_missed(self, peer_id: ID, hello: frozenset[str] | None) -> None:
        """py-libp2p writes the hello (this node's topics) before it adds the peer to
        ``peers``; a topic joined or left during that write was announced to every peer
        but this one, which then never learnt of it. Tell it now."""
        queue = self.peer_queues.get(peer_id)
        if hello is None or queue is None:
            return
        now = set(self.topic_ids)
        changes = [(t, True) for t in sorted(now - hello)]
        changes += [(t, False) for t in sorted(hello - now)]
        for topic, subscribe in changes:
            packet, subopt = self._build_announce_rpc(topic, subscribe=subscribe)
            self._enqueue_or_retry_announce(peer_id, queue, packet, subopt)

    async def _replay_recent_messages(self, peer_id: ID, topic: str) -> None:
        # A replay writes to the peer's stream; to a peer that stopped reading, it would
        # wait for ever (one task per peer and topic).
        with trio.move_on_after(PEER_TASK_TIMEOUT):
            await super()._replay_recent_messages(peer_id, topic)

    async def _peer_stream_retry_task(self, peer_id: ID) -> None:
        # py-libp2p retries without end while the peer looks connected; a connection
        # whose muxer never came up looks connected for ever.
        try:
            await self._handle_new_peer_with_retry(peer_id, timeout=PEER_TASK_TIMEOUT)
        finally:
            self._peer_stream_retries_pending.discard(peer_id)

    async def continuously_read_stream(self, stream: Any) -> None:
        # py-libp2p reads each RPC's length prefix a byte at a time, every read a trip
        # through yamux (and a window update): read ahead instead.
        peer_id = stream.muxed_conn.peer_id
        self._reading[peer_id] = self._reading.get(peer_id, 0) + 1
        try:
            await super().continuously_read_stream(ReadAhead(stream))  # type: ignore[arg-type]
        finally:
            left = self._reading.pop(peer_id, 1) - 1
            if left > 0:
                self._reading[peer_id] = left

    def _write_lock(self, peer_id: ID) -> trio.Lock:
        lock = self._write_locks.get(peer_id)
        if lock is None:
            lock = self._write_locks[peer_id] = trio.Lock()
        return lock

    def _handle_dead_peer(self, peer_id: ID) -> None:
        # Our stream to the peer ended; while the peer's stream to us is still read and it
        # is connected, what it subscribed to still holds (py-libp2p reopens our stream).
        keep = self._reading.get(peer_id, 0) > 0 and self._peer_is_connected(peer_id)
        topics = [t for t, peers in self.peer_topics.items() if peer_id in peers] if keep else []
        count = self._peer_subscription_count.get(peer_id)
        super()._handle_dead_peer(peer_id)
        for topic in topics:
            self.peer_topics.setdefault(topic, set()).add(peer_id)
        if topics and count is not None:
            self._peer_subscription_count[peer_id] = count
        if peer_id not in self.peers:
            self._write_locks.pop(peer_id, None)

    async def write_msg(self, stream: Any, rpc_msg: Any) -> bool:
        """py-libp2p's direct writes, in turn with the sending loop's: a write that
        yamux splits into frames (waiting for window between them) must not have another
        RPC's bytes land in the middle (the receiver then fails to parse, resets the
        stream, and every later message to that peer is lost)."""
        async with self._write_lock(stream.muxed_conn.peer_id):
            return await super().write_msg(stream, rpc_msg)

    async def handle_sending_messages(self, peer_id: ID, stream: Any, queue: Any) -> None:
        """The per-peer sending loop, writing every RPC already queued in one write (up
        to :data:`WRITE_BATCH` bytes): py-libp2p wrote each RPC alone, one Noise frame and
        one yamux frame per message."""
        try:
            while True:
                rpc = await queue.pop()
                if rpc is None:
                    return
                parts: list[bytes] = []
                size = 0
                while rpc is not None:
                    body = rpc.SerializeToString()
                    parts.append(encode_uvarint(len(body)))
                    parts.append(body)
                    size += len(body)
                    if size >= WRITE_BATCH:
                        break
                    rpc = queue._queue.pop()
                try:
                    async with self._write_lock(peer_id):
                        await stream.write(b"".join(parts))
                except (StreamClosed, StreamReset):
                    self._handle_dead_peer(peer_id)
                    return
        except Exception:
            logger.debug("pubsub sending loop for %s ended", peer_id)
            self._handle_dead_peer(peer_id)

    # ---------------------------------------------------------------- messages
    async def push_msg(self, msg_forwarder: ID, msg: Any) -> None:
        if self.strict_signing and _key_would_raise(msg):
            self._on_reject("bad_signature")
            return
        key = id(msg)
        self._forwarders[key] = msg_forwarder
        try:
            await super().push_msg(msg_forwarder, msg)
        finally:
            self._forwarders.pop(key, None)

    def notify_subscriptions(self, publish_message: Any) -> None:
        forwarder = self._forwarders.get(id(publish_message), self.my_id)
        for topic in publish_message.topicIDs:
            hook = self.deliver.get(topic)
            if hook is not None:
                hook(forwarder, publish_message)
            elif topic in self.subscribed_topics_send:
                try:
                    self.subscribed_topics_send[topic].send_nowait(publish_message)
                except trio.WouldBlock:
                    logger.debug("subscription queue of %s full: message dropped", topic)

    def _queues_full(self, topic: str) -> bool:
        margin = max(1, self.outbound_queue_size // 8)
        for peer_id in self.peer_topics.get(topic, ()):
            queue = self.peer_queues.get(peer_id)
            if queue is not None and len(queue) >= self.outbound_queue_size - margin:
                return True
        return False

    async def publish_message(self, topic: str, data: bytes) -> Any:
        """Sign and publish ``data`` on ``topic``; return the message (its id is
        ``get_message_id(message)``). Waits, up to :data:`PUBLISH_WAIT` seconds, while a
        subscriber's outbound queue is nearly full, rather than have it dropped."""
        with trio.move_on_after(PUBLISH_WAIT):
            while self._queues_full(topic):
                await trio.sleep(0.002)
        msg = self.make_message(topic, data)
        await self.push_own(msg)
        return msg

    async def push_own(self, msg: Any) -> None:
        """Deliver and send a message this node just made and signed: py-libp2p's
        ``push_msg`` also checked its signature again (about 100 us a message). Topic
        validators still run; a rejection raises ``ValidationError``."""
        await self.validate_msg(self.my_id, msg)
        self._mark_msg_seen(msg)
        self.notify_subscriptions(msg)
        await self.router.publish(self.my_id, msg)

    def make_message(self, topic: str, data: bytes) -> Any:
        """A new message from this node on ``topic``, with the next seqno, signed."""
        self.counter += 1
        msg = rpc_pb2.Message(
            data=data,
            topicIDs=[topic],
            from_id=self.my_id.to_bytes(),
            seqno=self.counter.to_bytes(8, "big"),
        )
        if self.strict_signing:
            assert self.sign_key is not None
            msg.signature = self.sign_key.sign(
                PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString()
            )
            msg.key = self.host.get_public_key().serialize()
        return msg

    async def publish(self, topic_id: str | list[str], data: bytes) -> None:
        topics = [topic_id] if isinstance(topic_id, str) else list(topic_id)
        for topic in topics:
            await self.publish_message(topic, data)

    def _next_seqno(self) -> bytes:
        self.counter += 1
        return self.counter.to_bytes(8, "big")


class _SizedQueues(dict[ID, Any]):
    """``Pubsub.peer_queues`` that hands each queue to ``configure`` as it is added."""

    def __init__(self, configure: Callable[[Any], None]) -> None:
        super().__init__()
        self._configure = configure

    def __setitem__(self, peer_id: ID, queue: Any) -> None:
        self._configure(queue)
        super().__setitem__(peer_id, queue)


class ReadAhead:
    """A stream whose reads are served from :data:`READ_AHEAD`-byte reads of ``stream``;
    everything else is the stream's own."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        if not self._buffer:
            chunk = await self._stream.read(READ_AHEAD)
            if not chunk:
                return b""
            self._buffer += chunk
        if n is None or n >= len(self._buffer):
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


def _refused_protocol(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the peer supports none of the protocols
    offered (py-libp2p's multistream client says ``protocols not supported``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if "protocols not supported" in str(seen):
            return True
        seen = seen.__cause__
    return False


def _key_would_raise(msg: Any) -> bool:
    """Whether py-libp2p's signature check would raise on ``msg`` rather than answer.

    It raises in one place only: a ``key`` field that does not deserialize, for a sender
    whose id does not hold its key. Checking just that (not the whole signature, which
    py-libp2p checks next) keeps the cost per message where it was.
    """
    if not msg.signature or not msg.key:
        return False  # py-libp2p rejects these itself, without raising
    try:
        if ID(msg.from_id).extract_public_key() is not None:
            return False  # the key comes from the id; msg.key is not read
    except Exception:
        pass
    try:
        deserialize_public_key(msg.key)
    except Exception:
        return True
    return False


IDONTWANT_THRESHOLD = 1024
"""Bytes: IDONTWANT is sent for received messages this large or larger (go-libp2p's
``IDontWantMessageThreshold``); py-libp2p sent one to every mesh peer for every message,
the node's own included, which doubled the frames of small messages."""


class LeanGossipSub(GossipSub):
    """py-libp2p's GossipSub without two per-message costs that the spec does not ask for:
    IDONTWANT for small or own messages, and a signed peer record attached to every RPC
    that carries a message (each receiver checked its signature: about 300 us each)."""

    _idontwant_wanted = True

    async def publish(self, msg_forwarder: ID, pubsub_msg: Any) -> None:
        own = self.pubsub is not None and msg_forwarder == self.pubsub.my_id
        # Read by _emit_idontwant_for_message, which publish awaits before anything else.
        self._idontwant_wanted = not own and len(pubsub_msg.data) >= IDONTWANT_THRESHOLD
        await super().publish(msg_forwarder, pubsub_msg)

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Any) -> None:
        if self._idontwant_wanted:
            await super()._emit_idontwant_for_message(msg_id, topic_ids)

    def _prune_pending_messages(self, peer_id: ID) -> None:
        # py-libp2p keeps at most 100 messages for a peer whose subscription arrived
        # before its stream was ready, and drops the oldest with a log line only.
        queue = self._pending_messages.get(peer_id)
        before = len(queue) if queue is not None else 0
        super()._prune_pending_messages(peer_id)
        after = len(self._pending_messages.get(peer_id, ()))
        dropped = before - after
        if dropped > 0 and isinstance(self.pubsub, CheckedPubsub):
            for _ in range(dropped):
                self.pubsub._on_reject("pending_overflow")

    def send_rpc(self, peer_id: ID, rpc: Any, priority: bool = False) -> None:
        if rpc.publish and rpc.HasField("senderRecord"):
            lean = rpc_pb2.RPC()
            lean.CopyFrom(rpc)
            lean.ClearField("senderRecord")
            rpc = lean
        super().send_rpc(peer_id, rpc, priority)


def build_gossipsub(heartbeat_interval: int = 1) -> GossipSub:
    """GossipSub with the mesh settings of js-libp2p and go-libp2p (D=6, Dlo=4, Dhi=12,
    1 s heartbeat; py-libp2p's heartbeat defaults to 120 s, so a mesh would take minutes
    to form). Its per-forwarder rate limit drops messages silently, before any validator
    sees them: it is off here, so every message is validated and what is dropped is
    counted."""
    return LeanGossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=heartbeat_interval,
        time_to_live=60,
        spam_protection_enabled=False,
    )


def build_pubsub(
    host: Any,
    router: GossipSub,
    *,
    on_reject: Callable[[str], None],
    message_id: str | MessageIdFn = "default",
    max_message_size: int = 1 << 20,
) -> CheckedPubsub:
    """A :class:`CheckedPubsub` over ``router`` with strict signing."""
    return CheckedPubsub(
        host,
        router,
        strict_signing=True,
        on_reject=on_reject,
        msg_id_constructor=message_id_function(message_id),
        max_inbound_rpc_size=max(max_message_size + 4096, 64 * 1024),
    )


@asynccontextmanager
async def run_pubsub(host: Any, pubsub: Pubsub, router: GossipSub) -> AsyncIterator[Pubsub]:
    """Run ``pubsub`` and ``router`` for the body of the ``async with``, ready on entry.

    Pubsub registers a notifee for new connections in its constructor and never removes
    it, and never learns of connections that existed before: here it is told of those on
    entry, and its notifee is removed on exit.
    """
    network: Any = host.get_network()
    notifee = next((n for n in reversed(network.notifees) if isinstance(n, PubsubNotifee)), None)
    try:
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            if notifee is not None:
                for connections in list(network.connections.values()):
                    for conn in connections[:1]:
                        await notifee.connected(network, conn)
            yield pubsub
    finally:
        if notifee is not None:
            network.remove_notifee(notifee)


class LruValidationCache(ValidationCache):
    """py-libp2p's validation-result cache with O(1) steps: it kept its LRU order in a
    list and searched it on every message (a scan of up to 1,000 ids per message)."""

    def __init__(self, ttl: int = 300, max_size: int = 1000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self.cache: OrderedDict[bytes, Any] = OrderedDict()  # type: ignore[assignment]
        self.access_order = []

    def get(self, msg_id: bytes) -> Any:
        result = self.cache.get(msg_id)
        if result is None:
            return None
        if time.time() - result.timestamp > self.ttl:
            del self.cache[msg_id]
            return None
        self.cache.move_to_end(msg_id)
        return result

    def put(self, msg_id: bytes, result: Any) -> None:
        self.cache[msg_id] = result
        self.cache.move_to_end(msg_id)
        while len(self.cache) > self.max_size:
            self.cache.popitem(last=False)

    def _remove(self, msg_id: bytes) -> None:
        self.cache.pop(msg_id, None)


class InlineSweptSeenCache(LastSeenCache):
    """py-libp2p's seen-message cache without its background thread.

    Expired entries are swept during ``add`` at most once per ``sweep_interval``.
    """

    def __init__(self, ttl: int, sweep_interval: int = 60) -> None:
        self.ttl = ttl
        self.sweep_interval = sweep_interval
        self.lock = threading.Lock()
        self.cache = {}
        self._next_sweep = time.time() + sweep_interval

    def add(self, key: bytes) -> bool:
        now = time.time()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_interval
            self._sweep()
        return super().add(key)

    def stop(self) -> None:
        """Nothing runs in the background."""


__all__ = [
    "MESSAGE_ID_FUNCTIONS",
    "CheckedPubsub",
    "InlineSweptSeenCache",
    "build_gossipsub",
    "build_pubsub",
    "initial_seqno",
    "message_id_function",
    "run_pubsub",
]
