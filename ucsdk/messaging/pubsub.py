"""Publish/subscribe for users: topics, messages, validators, over the node's GossipSub.

One :class:`PubsubService` per node runs the GossipSub router (``ucsdk.gossip``) that
pubsub peer discovery shares. Users subscribe to topics with a callback, publish bytes or
text, and read what arrived as :class:`Message` snapshots in a bounded history.

What a hostile peer can do, and what happens:

- a message over ``max_message_size`` bytes: rejected before any validator, counted
  ``oversized`` (py-libp2p also refuses RPC frames over that size before parsing);
- a message a user's validator rejects or ignores: not delivered, not forwarded, counted
  per topic (``rejected``, ``ignored``); a validator that raises counts as a rejection
  (``validator_error``) and is logged once per topic;
- a flood faster than a callback consumes it: each topic queues up to
  :data:`CALLBACK_QUEUE` messages for its callbacks, then counts ``slow_callback`` drops
  (the history still records every message);
- topics: at most ``max_topics`` user subscriptions; remote peers' subscriptions are
  capped by py-libp2p (100 per peer).

Example (inside trio, with a running host):
    service = PubsubService(host)
    await service.start()
    await service.subscribe("chat", on_message=print)
    msg_id = await service.publish("chat", "hello")
    await service.stop()
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.exceptions import ValidationError
from libp2p.peer.id import ID

from ucsdk import errors
from ucsdk._service import Service
from ucsdk.gossip import CheckedPubsub, MessageIdFn, build_gossipsub, build_pubsub, run_pubsub
from ucsdk.metrics import utcnow

logger = logging.getLogger("UniversalConnectivity")

CALLBACK_QUEUE = 4096
"""Messages queued per topic for its callbacks before new ones are dropped and counted."""
MAX_TOPIC_LENGTH = 256


class Verdict(str, enum.Enum):
    """What a topic validator answers: ``ACCEPT`` delivers and forwards the message;
    ``REJECT`` drops it as invalid (the sender is at fault); ``IGNORE`` drops it quietly
    (e.g. a duplicate the application already has). A validator may also return
    ``True``/``False`` or the strings ``"accept"``, ``"reject"``, ``"ignore"``."""

    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


@dataclass(frozen=True)
class Message:
    """One pubsub message this node saw (a snapshot, safe to keep).

    ``from_peer`` signed it; ``received_from`` is the peer that forwarded it to us (this
    node's own id for messages it published). ``msg_id`` is the hex of the message id
    under the node's message id function.

    Example:
        >>> m = Message(utcnow(), "chat", "12D3KooWA", "12D3KooWB", 7, "ab", b"hi", False)
        >>> m.text, m.size
        ('hi', 2)
        >>> Message(utcnow(), "t", "a", "a", 1, "cd", b"\\xff", True).text is None
        True
    """

    time: datetime
    topic: str
    from_peer: str
    received_from: str
    seqno: int
    msg_id: str
    data: bytes
    local: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def text(self) -> str | None:
        """The data as UTF-8 text, or ``None`` when it is not valid UTF-8."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass(frozen=True)
class TopicInfo:
    """One row of ``node.topics()``: a topic this node knows of and its counters.

    ``mesh_peers`` are the peers GossipSub forwards to; ``known_peers`` every peer
    that said it is subscribed and that a message can reach now (our stream to it open).
    """

    topic: str
    subscribed: bool
    mesh_peers: int
    known_peers: int
    received: int
    published: int
    rejected: int
    ignored: int
    dropped: int


@dataclass
class _Topic:
    name: str
    callbacks: list[Callable[[Message], Any]] = field(default_factory=list)
    validator: Callable[[Message], Any] | None = None
    owned: bool = True
    counts: Counter[str] = field(default_factory=Counter)
    send: trio.MemorySendChannel[Message] | None = None
    receive: trio.MemoryReceiveChannel[Message] | None = None
    validator_failed: bool = False


def check_topic(topic: Any) -> str:
    """``topic`` as a topic name, or :class:`ucsdk.errors.InvalidInput`."""
    if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LENGTH:
        raise errors.InvalidInput(
            "topic", topic, f"a non-empty string of at most {MAX_TOPIC_LENGTH} characters"
        )
    return topic


def as_bytes(data: Any, limit: int) -> bytes:
    """``data`` (bytes-like or str, UTF-8 encoded) as bytes of at most ``limit``."""
    if isinstance(data, str):
        raw = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise errors.InvalidInput("data", data, "bytes or str")
    if len(raw) > limit:
        raise errors.InvalidInput(
            "data", f"<{len(raw)} bytes>", f"at most {limit} bytes (max_message_size)"
        )
    return raw


@functools.lru_cache(maxsize=4096)
def _base58(raw: bytes) -> str:
    return ID(raw).to_base58()


def _verdict(answer: Any) -> Verdict:
    if answer is True:
        return Verdict.ACCEPT
    if answer is False or answer is None:
        return Verdict.REJECT
    return Verdict(answer)


class PubsubService(Service):
    """The node's GossipSub router and the user's topics (see the module docstring).

    ``pubsub`` is the running :class:`ucsdk.gossip.CheckedPubsub` (shared with pubsub peer
    discovery), replaced when the service restarts; user subscriptions carry over.
    """

    def __init__(
        self,
        host: IHost,
        *,
        message_id: str | MessageIdFn = "default",
        history: int = 1000,
        max_message_size: int = 1 << 20,
        max_topics: int = 64,
    ) -> None:
        super().__init__()
        self.service_name = "pubsub"
        self.host = host
        self.message_id = message_id
        self.max_message_size = max_message_size
        self.max_topics = max_topics
        self.local_peer_id = host.get_id().to_base58()
        self.history: deque[Message] = deque(maxlen=history)
        self._dropped: Counter[str] = Counter()
        self.published = 0
        self.received = 0
        self._topics: dict[str, _Topic] = {}
        self.pubsub: CheckedPubsub | None = None
        self._ran = False
        self._outbound_before = 0

    # ---------------------------------------------------------------- life cycle
    def _build(self) -> None:
        if self.pubsub is not None:
            self._outbound_before += self.pubsub.outbound_dropped
        self.router = build_gossipsub()
        self.pubsub = build_pubsub(
            self.host,
            self.router,
            on_reject=self._count,
            message_id=self.message_id,
            max_message_size=self.max_message_size,
        )

    async def _on_start(self) -> None:
        self._build()

    async def _run(self, nursery: trio.Nursery) -> None:
        if self._ran:
            self._build()
        self._ran = True
        pubsub, router = self.pubsub, self.router
        assert pubsub is not None
        async with run_pubsub(self.host, pubsub, router):
            for topic in list(self._topics.values()):
                await self._join(topic)
            await pubsub.manager.wait_finished()
        raise RuntimeError("py-libp2p's pubsub service ended")

    async def _on_stop(self) -> None:
        for topic in self._topics.values():
            if topic.send is not None:
                topic.send.close()
                topic.send = topic.receive = None

    def _count(self, reason: str) -> None:
        self._dropped[reason] += 1

    # ------------------------------------------------------------------ topics
    async def subscribe(
        self,
        topic: str,
        on_message: Callable[[Message], Any] | None = None,
        validator: Callable[[Message], Any] | None = None,
    ) -> None:
        """Subscribe to ``topic``; ``on_message(message)`` is called for every new
        message (more callbacks may be added by subscribing again); ``validator`` decides
        (see :class:`Verdict`) before a message is delivered or forwarded.

        Callbacks run on the node's event loop: keep them short (a plain function may
        call ``node.publish``; other blocking calls belong in your own thread).
        """
        check_topic(topic)
        for name, fn in (("on_message", on_message), ("validator", validator)):
            if fn is not None and not callable(fn):
                raise errors.InvalidInput(name, fn, "a callable or None")
        entry = self._topics.get(topic)
        if entry is None:
            if len(self._topics) >= self.max_topics:
                raise errors.InvalidInput(
                    "topic", topic, f"at most {self.max_topics} subscribed topics (max_topics)"
                )
            entry = self._topics[topic] = _Topic(topic)
        if on_message is not None and on_message not in entry.callbacks:
            entry.callbacks.append(on_message)
        if validator is not None:
            entry.validator = validator
        if self.running and self.pubsub is not None:
            await self._join(entry)

    async def _join(self, entry: _Topic) -> None:
        pubsub = self.pubsub
        assert pubsub is not None
        await pubsub.wait_until_ready()
        if entry.callbacks and entry.send is None:
            entry.send, entry.receive = trio.open_memory_channel[Message](CALLBACK_QUEUE)
            self.spawn(self._dispatch, entry, entry.receive)
        if entry.name not in pubsub.deliver:
            previous = pubsub.topic_validators.get(entry.name)
            entry.owned = entry.name not in pubsub.topic_ids
            pubsub.set_topic_validator(
                entry.name, self._validator_for(entry, previous), is_async_validator=False
            )
            pubsub.deliver[entry.name] = lambda fwd, msg: self._on_message(entry, fwd, msg)
            await pubsub.subscribe(entry.name)

    async def unsubscribe(self, topic: str) -> None:
        """Leave ``topic`` (its callbacks and validator are dropped; history stays)."""
        check_topic(topic)
        entry = self._topics.pop(topic, None)
        if entry is None:
            raise errors.InvalidInput("topic", topic, "a topic this node subscribed to")
        if entry.send is not None:
            entry.send.close()
        pubsub = self.pubsub
        if pubsub is not None and self.running:
            pubsub.deliver.pop(topic, None)
            pubsub.remove_topic_validator(topic)
            if entry.owned:
                await pubsub.unsubscribe(topic)

    def subscribed(self) -> list[str]:
        return list(self._topics)

    # ---------------------------------------------------------------- messages
    def _snapshot(self, forwarder: ID, msg: Any, topic: str) -> Message:
        pubsub = self.pubsub
        assert pubsub is not None
        sender = _base58(bytes(msg.from_id))
        return Message(
            time=utcnow(),
            topic=topic,
            from_peer=sender,
            received_from=_base58(forwarder.to_bytes()),
            seqno=int.from_bytes(msg.seqno, "big"),
            msg_id=pubsub.get_message_id(msg).hex(),
            data=bytes(msg.data),
            local=sender == self.local_peer_id,
        )

    def _validator_for(self, entry: _Topic, previous: Any) -> Callable[[ID, Any], bool]:
        def validate(forwarder: ID, msg: Any) -> bool:
            if len(msg.data) > self.max_message_size:
                entry.counts["rejected"] += 1
                self._count("oversized")
                return False
            if (
                previous is not None
                and not previous.is_async
                and not previous.validator(forwarder, msg)
            ):
                return False
            if entry.validator is None:
                return True
            try:
                verdict = _verdict(entry.validator(self._snapshot(forwarder, msg, entry.name)))
            except Exception as exc:
                entry.counts["rejected"] += 1
                self._count("validator_error")
                if not entry.validator_failed:
                    entry.validator_failed = True
                    logger.warning("validator of topic %s raised: %r", entry.name, exc)
                return False
            if verdict is Verdict.ACCEPT:
                return True
            key = "rejected" if verdict is Verdict.REJECT else "ignored"
            entry.counts[key] += 1
            self._count(key)
            return False

        return validate

    def _on_message(self, entry: _Topic, forwarder: ID, msg: Any) -> None:
        message = self._snapshot(forwarder, msg, entry.name)
        self.history.append(message)
        entry.counts["published" if message.local else "received"] += 1
        if not message.local:
            self.received += 1
        if entry.send is not None:
            try:
                entry.send.send_nowait(message)
            except trio.WouldBlock:
                entry.counts["dropped"] += 1
                self._count("slow_callback")
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

    async def _dispatch(self, entry: _Topic, receive: trio.MemoryReceiveChannel[Message]) -> None:
        """Run the topic's callbacks on each message, draining whatever is queued between
        two waits: one trip through trio's scheduler per batch, not per message (per
        message, the callbacks fell behind a fast sender)."""
        async with receive:
            async for first in receive:
                message: Message | None = first
                while message is not None:
                    await self._run_callbacks(entry, message)
                    try:
                        message = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        message = None

    @staticmethod
    async def _run_callbacks(entry: _Topic, message: Message) -> None:
        for callback in list(entry.callbacks):
            try:
                result = callback(message)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                entry.counts["callback_errors"] += 1
                logger.warning("on_message callback of %s raised: %r", entry.name, exc)

    def _prepare(self, topic: str, data: Any) -> tuple[CheckedPubsub, bytes]:
        check_topic(topic)
        raw = as_bytes(data, self.max_message_size)
        if self.pubsub is None or not self.running:
            raise errors.NodeStopped(f"publish on {topic}")
        return self.pubsub, raw

    async def publish(self, topic: str, data: bytes | str) -> str:
        """Sign and publish ``data`` on ``topic``; return the message id (hex).

        Publishing needs no subscription (as js peers allow), and waits for room when a
        subscriber's outbound queue is full rather than drop the message.
        """
        pubsub, raw = self._prepare(topic, data)
        try:
            msg = await pubsub.publish_message(topic, raw)
        except ValidationError:
            raise errors.InvalidInput(
                "data", f"<{len(raw)} bytes>", f"a message the validator of {topic} accepts"
            ) from None
        return self._published(pubsub, topic, msg)

    def publish_nowait(self, topic: str, data: bytes | str) -> str:
        """Like :meth:`publish`, for code on the event loop that cannot wait (callbacks):
        the message is signed now and sent in the background; returns its id."""
        pubsub, raw = self._prepare(topic, data)
        msg = pubsub.make_message(topic, raw)
        if not self.spawn(self._push_quietly, pubsub, msg):
            raise errors.NodeStopped(f"publish on {topic}")
        return self._published(pubsub, topic, msg)

    async def _push_quietly(self, pubsub: CheckedPubsub, msg: Any) -> None:
        try:
            await pubsub.push_own(msg)
        except ValidationError:
            self._count("rejected")

    def _published(self, pubsub: CheckedPubsub, topic: str, msg: Any) -> str:
        self.published += 1
        entry = self._topics.get(topic)
        if entry is None:
            # Not subscribed: no delivery hook records it; the history still shows it.
            self.history.append(self._snapshot(pubsub.my_id, msg, topic))
        return pubsub.get_message_id(msg).hex()

    def messages(self, topic: str | None = None) -> list[Message]:
        """The history (oldest first), of one topic or all."""
        if topic is None:
            return list(self.history)
        check_topic(topic)
        return [m for m in self.history if m.topic == topic]

    def topics(self) -> list[TopicInfo]:
        """Every topic this node subscribed to or heard of from its peers."""
        pubsub = self.pubsub
        names: list[str] = list(self._topics)
        if pubsub is not None:
            for name in [*pubsub.topic_ids, *pubsub.peer_topics]:
                if name not in names:
                    names.append(name)
        mesh: dict[str, Any] = getattr(getattr(self, "router", None), "mesh", {}) or {}
        rows = []
        for name in names:
            entry = self._topics.get(name)
            counts = entry.counts if entry is not None else Counter()
            rows.append(
                TopicInfo(
                    topic=name,
                    subscribed=entry is not None
                    or (pubsub is not None and name in pubsub.topic_ids),
                    mesh_peers=len(mesh.get(name, ())),
                    known_peers=_reachable(pubsub, name),
                    received=counts["received"],
                    published=counts["published"],
                    rejected=counts["rejected"],
                    ignored=counts["ignored"],
                    dropped=counts["dropped"],
                )
            )
        return rows

    @property
    def dropped(self) -> Counter[str]:
        """Messages dropped, by reason (``oversized``, ``rejected``, ``ignored``,
        ``validator_error``, ``slow_callback``, ``bad_signature``, ``outbound_full``,
        ``pending_overflow``: more than 100 for a peer whose stream was not ready yet)."""
        out = Counter(self._dropped)
        outbound = self._outbound_before + (self.pubsub.outbound_dropped if self.pubsub else 0)
        if outbound:
            out["outbound_full"] = outbound
        return out


AsyncCallback = Callable[[Message], Awaitable[Any]]


def _reachable(pubsub: Any, topic: str) -> int:
    """Peers subscribed to ``topic`` that a message can go to now: ones with our stream
    open (a peer's subscriptions outlive our stream to it while it is reopened)."""
    if pubsub is None:
        return 0
    return sum(1 for peer in pubsub.peer_topics.get(topic, ()) if peer in pubsub.peers)


__all__ = ["Message", "PubsubService", "TopicInfo", "Verdict", "check_topic"]
