"""A peer of libp2p's universal-connectivity app: chat, direct messages and files.

The app's go, rust, js and nim peers chat over GossipSub; the js peers also send direct
messages and share files. :class:`Chat` speaks the same protocols on a :class:`ucsdk.Node`
(the facts, each with its source file in the app's repository, are in the project's
``uc-app-protocol.md``):

- chat: raw UTF-8 text on the topic ``universal-connectivity`` (:data:`CHAT_TOPIC`);
- files: the file id (a UUID) announced on ``universal-connectivity-file``
  (:data:`FILE_TOPIC`), the bytes served and fetched on ``/universal-connectivity-file/1``
  (:data:`FILE_PROTOCOL`: request ``uvarint(len) + id``, answer ``uvarint(len) + bytes``);
- direct messages on ``/universal-connectivity/dm/1.0.0`` (:data:`DM_PROTOCOL`): one
  length-prefixed ``DirectMessageRequest`` protobuf, one ``DirectMessageResponse``;
- peer discovery on ``universal-connectivity-browser-peer-discovery``
  (:data:`DISCOVERY_TOPIC`), done by the node's pubsub discovery when its
  ``pubsub_discovery_topics`` include it (:data:`UC_SETTINGS` does that).

What a hostile peer can do, and what happens (each counted in :attr:`Chat.dropped`):

- a chat message over :attr:`Chat.max_message_size` bytes: ignored (not shown, not
  forwarded), ``oversized``; text that is not UTF-8 is shown escaped (``invalid_utf8``);
- a flood of direct messages: at most :data:`DM_RATE` per peer per :data:`DM_WINDOW`
  seconds are accepted, the rest answered ``ERROR`` (``dm_rate_limited``); a request over
  :data:`MAX_DM_BYTES` resets the stream (``dm_oversized``), one that is not the protobuf
  (``dm_malformed``) too, and one that does not arrive in :data:`DM_TIMEOUT` s is dropped
  (``dm_timeout``); the rate table holds at most :data:`MAX_TRACKED_PEERS` peers;
- a request for a file this peer does not share: the stream is closed unanswered
  (``file_unknown``); an id over :data:`MAX_FILE_ID_BYTES` resets it (``file_bad_request``).

Example:
    >>> import ucsdk
    >>> from ucsdk.apps.uc import Chat, UC_SETTINGS
    >>> a = ucsdk.Node.development(enable_mdns=False, **UC_SETTINGS)
    >>> b = ucsdk.Node.development(enable_mdns=False, **UC_SETTINGS)
    >>> alice, bob = Chat(a), Chat(b)
    >>> _ = a.connect(b.addrs[0])
    >>> b.wait_for_subscribers("universal-connectivity", 1)
    True
    >>> _ = bob.send("hello from bob")
    >>> alice.wait_for("chat", timeout=10).text
    'hello from bob'
    >>> bob.dm(a.peer_id, "psst")
    >>> alice.wait_for("dm", timeout=10).text
    'psst'
    >>> file_id = alice.share_file(b"some bytes", name="notes.txt")
    >>> bob.fetch_file(a.peer_id, file_id)
    b'some bytes'
    >>> alice.stop(); bob.stop(); a.stop(); b.stop()
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import trio
from google.protobuf.message import DecodeError

from ucsdk import errors
from ucsdk.config import UNIVERSAL_CONNECTIVITY_TOPIC
from ucsdk.messaging.pubsub import Message, Verdict
from ucsdk.messaging.streams import Stream
from ucsdk.proto import DirectMessageRequest, DirectMessageResponse
from ucsdk.sync import Node

logger = logging.getLogger("UniversalConnectivity")

CHAT_TOPIC = "universal-connectivity"
FILE_TOPIC = "universal-connectivity-file"
DISCOVERY_TOPIC = UNIVERSAL_CONNECTIVITY_TOPIC
DM_PROTOCOL = "/universal-connectivity/dm/1.0.0"
FILE_PROTOCOL = "/universal-connectivity-file/1"
CLIENT_VERSION = "0.0.1"
"""What the js peers put in a direct message's ``Metadata.clientVersion``."""

UC_SETTINGS: dict[str, Any] = {
    "pubsub_message_id": "uc",
    "pubsub_discovery_topics": [DISCOVERY_TOPIC, "_peer-discovery._p2p._pubsub"],
}
"""Node settings of an app peer: the js peers' message ids, and discovery on the app's
topic (``Node(**UC_SETTINGS)``, ``Node.development(**UC_SETTINGS)``)."""

MAX_MESSAGE_SIZE = 64 * 1024
"""Bytes of one chat message, sent or shown (the app's UIs show one line of text)."""
MAX_DM_BYTES = 64 * 1024
DM_TIMEOUT = 5.0
"""Seconds for a direct message's request and its answer (the js peers use 5 s)."""
DM_RATE = 20
DM_WINDOW = 10.0
MAX_TRACKED_PEERS = 1024
MAX_FILE_ID_BYTES = 1024
MAX_FILE_SIZE = 64 * 1024 * 1024
"""Bytes of one file, shared or fetched."""
MAX_SHARED_BYTES = 256 * 1024 * 1024
"""Bytes of all shared files kept in memory; the oldest file goes first."""
HISTORY = 1000

MESSAGE_COLUMNS = (
    "time",
    "kind",
    "direction",
    "peer_id",
    "nick",
    "text",
    "file_id",
    "msg_id",
)
PEER_COLUMNS = ("peer_id", "nick", "connected", "chat_messages", "last_seen")


def nick(peer_id: str) -> str:
    """The app's short name for a peer: the last 8 characters of its id."""
    return peer_id[-8:]


@dataclasses.dataclass(frozen=True)
class ChatMessage:
    """One line of the chat: a chat message, a direct message or a file announcement.

    ``kind`` is ``"chat"``, ``"dm"`` or ``"file"``; ``direction`` ``"in"`` or ``"out"``;
    ``peer_id`` the sender (``in``) or the receiver of a DM (``out``; ``None`` for chat);
    ``text`` the text (escaped when the bytes were not UTF-8) or, for a file, its name
    when known; ``file_id`` the id to :meth:`Chat.fetch_file`; ``msg_id`` the pubsub
    message id (hex) of chat and file messages.
    """

    time: datetime
    kind: str
    direction: str
    peer_id: str | None
    text: str
    file_id: str | None = None
    msg_id: str | None = None
    nick: str = ""

    def who(self) -> str:
        """``me`` for our own lines, else the sender's nick."""
        return "me" if self.direction == "out" else self.nick

    def body(self) -> str:
        """The line as the app's UIs show it: ``[dm -> nick] text``, ``[file id] name``."""
        if self.kind == "dm":
            to = f" -> {self.nick}" if self.direction == "out" else ""
            return f"[dm{to}] {self.text}"
        if self.kind == "file":
            return f"[file {self.file_id}] {self.text}"
        return self.text

    def __str__(self) -> str:
        return f"{self.time.strftime('%H:%M:%S')} {self.who()}: {self.body()}"


class Chat:
    """A universal-connectivity app peer on ``node`` (see the module docstring).

    Making one subscribes to the chat and file topics and serves the direct-message and
    file protocols; :meth:`stop` (or leaving a ``with`` block) undoes that, the node runs
    on. Every call but :meth:`send` blocks: call them from your code, not from a callback
    on the node's loop.

    Example:
        >>> import ucsdk
        >>> from ucsdk.apps.uc import Chat
        >>> with ucsdk.Node.development(enable_mdns=False) as node, Chat(node) as chat:
        ...     _ = chat.send("anyone there?")
        ...     list(chat.messages()["text"])
        ['anyone there?']
    """

    def __init__(
        self,
        node: Node,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_file_size: int = MAX_FILE_SIZE,
    ) -> None:
        for name, value in (
            ("max_message_size", max_message_size),
            ("max_file_size", max_file_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise errors.InvalidInput(name, value, "a number of bytes >= 1")
        self.node = node
        self.max_message_size = max_message_size
        self.max_file_size = max_file_size
        self.dropped: Counter[str] = Counter()
        """What peers sent that was refused, by reason (see the module docstring)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._history: deque[ChatMessage] = deque(maxlen=HISTORY)
        self.version = 0
        """Grows by one with every new line (views poll it)."""
        self._files: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._dm_times: OrderedDict[str, deque[float]] = OrderedDict()
        self._running = False
        self._listeners: list[Callable[[ChatMessage], Any]] = []
        self.listener_errors = 0
        """Calls of :meth:`on_line` callbacks that raised (each logged)."""
        if node.config.pubsub_message_id != "uc":
            logger.info(
                "chat on a node whose pubsub_message_id is %r: js app peers compute other "
                "message ids (UC_SETTINGS has the app's)",
                node.config.pubsub_message_id,
            )
        self.start()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Join the chat and file topics and serve the app's protocols (done by the
        constructor; again after :meth:`stop`)."""
        if self._running:
            return
        self.node.subscribe(CHAT_TOPIC, self._on_chat, validator=self._check_chat)
        self.node.subscribe(FILE_TOPIC, self._on_file, validator=self._check_file)
        self.node.handle(DM_PROTOCOL, self._serve_dm)
        self.node.handle(FILE_PROTOCOL, self._serve_file)
        self._running = True

    def stop(self) -> None:
        """Leave the topics and stop serving (idempotent; the node runs on)."""
        if not self._running:
            return
        self._running = False
        if not self.node.running:
            return
        for topic in (CHAT_TOPIC, FILE_TOPIC):
            try:
                self.node.unsubscribe(topic)
            except errors.NodeStopped:
                return
        for protocol in (DM_PROTOCOL, FILE_PROTOCOL):
            self.node.unhandle(protocol)

    @property
    def running(self) -> bool:
        return self._running

    def __enter__(self) -> Chat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ucsdk Chat of {self.node.peer_id}: {len(self._history)} lines>"

    # ---------------------------------------------------------------------- chat
    def send(self, text: str) -> str:
        """Send ``text`` to the chat; the message id (hex)."""
        data = self._text_bytes("text", text, self.max_message_size)
        msg_id = self.node.publish(CHAT_TOPIC, data)
        self._record(ChatMessage(_now(), "chat", "out", self.node.peer_id, text, None, msg_id))
        return msg_id

    def _check_chat(self, message: Message) -> Verdict:
        if message.size > self.max_message_size:
            self.dropped["oversized"] += 1
            return Verdict.IGNORE
        return Verdict.ACCEPT

    def _on_chat(self, message: Message) -> None:
        if message.local:
            return
        text = message.text
        if text is None:
            self.dropped["invalid_utf8"] += 1
            text = message.data.decode("utf-8", "backslashreplace")
        self._record(
            ChatMessage(message.time, "chat", "in", message.from_peer, text, None, message.msg_id)
        )

    # ---------------------------------------------------------- direct messages
    def dm(self, peer_id: str, text: str, *, timeout: float | None = None) -> None:
        """Send ``text`` to ``peer_id`` only; returns when the peer answered OK.

        Raises :class:`ucsdk.errors.OperationFailed` when the peer answers an error (or
        nothing), :class:`ucsdk.errors.DialError` when it cannot be reached.
        """
        self._text_bytes("text", text, MAX_DM_BYTES - 64)
        request = DirectMessageRequest(content=text, type="text/plain")
        request.metadata.clientVersion = CLIENT_VERSION
        request.metadata.timestamp = int(time.time() * 1000)
        limit = DM_TIMEOUT if timeout is None else timeout
        what = f"send a direct message to {peer_id}"
        with self.node.open_stream(peer_id, DM_PROTOCOL, timeout=limit) as stream:
            stream.write_msg(request.SerializeToString(), timeout=limit)
            try:
                raw = stream.read_msg(MAX_DM_BYTES, timeout=limit)
            except errors.StreamClosed as exc:
                raise errors.OperationFailed(what, f"no answer ({exc.reason})") from exc
        try:
            response = DirectMessageResponse.FromString(raw)
        except DecodeError as exc:
            raise errors.OperationFailed(what, "the answer is not a DirectMessageResponse") from exc
        if response.status != 200 or not response.HasField("metadata"):
            said = response.statusText or "no reason given"
            raise errors.OperationFailed(what, f"the peer answered {response.status}: {said}")
        self._record(ChatMessage(_now(), "dm", "out", peer_id, text))

    def _dm_allowed(self, peer: str) -> bool:
        now = time.monotonic()
        with self._lock:
            times = self._dm_times.pop(peer, None) or deque()
            while times and now - times[0] > DM_WINDOW:
                times.popleft()
            allowed = len(times) < DM_RATE
            if allowed:
                times.append(now)
            self._dm_times[peer] = times
            while len(self._dm_times) > MAX_TRACKED_PEERS:
                self._dm_times.popitem(last=False)
        return allowed

    async def _serve_dm(self, stream: Stream) -> None:
        with trio.move_on_after(DM_TIMEOUT) as deadline:
            try:
                raw = await stream.read_msg(MAX_DM_BYTES)
            except errors.MessageTooLarge:
                self.dropped["dm_oversized"] += 1
                return
            except errors.StreamClosed:
                self.dropped["dm_truncated"] += 1
                return
            try:
                request = DirectMessageRequest.FromString(raw)
            except DecodeError:
                self.dropped["dm_malformed"] += 1
                await stream.reset()
                return
            response = DirectMessageResponse()
            response.metadata.clientVersion = CLIENT_VERSION
            response.metadata.timestamp = int(time.time() * 1000)
            allowed = self._dm_allowed(stream.peer_id)
            if allowed:
                response.status = 200  # type: ignore[assignment]
            else:
                self.dropped["dm_rate_limited"] += 1
                response.status = 500  # type: ignore[assignment]
                response.statusText = "too many direct messages"
            await stream.write_msg(response.SerializeToString())
            if allowed:
                self._record(ChatMessage(_now(), "dm", "in", stream.peer_id, request.content))
        if deadline.cancelled_caught:
            self.dropped["dm_timeout"] += 1
            await stream.reset()

    # ---------------------------------------------------------------------- files
    def share_file(self, source: str | Path | bytes, *, name: str | None = None) -> str:
        """Share a file (a path, or the bytes themselves): it is kept in memory, served to
        whoever asks, and its new id announced to the chat. Returns the id."""
        if isinstance(source, bytes | bytearray):
            data = bytes(source)
            label = name or "bytes"
        elif isinstance(source, str | Path):
            path = Path(source)
            if not path.is_file():
                raise errors.InvalidInput("source", str(source), "a readable file")
            if path.stat().st_size > self.max_file_size:
                raise errors.InvalidInput(
                    "source", str(source), f"a file of at most {self.max_file_size} bytes"
                )
            data = path.read_bytes()
            label = name or path.name
        else:
            raise errors.InvalidInput("source", source, "a path or bytes")
        if len(data) > self.max_file_size:
            raise errors.InvalidInput("source", label, f"at most {self.max_file_size} bytes")
        if not data:
            raise errors.InvalidInput("source", label, "a file that is not empty")
        file_id = str(uuid.uuid4())
        with self._lock:
            self._files[file_id] = (label, data)
            while sum(len(d) for _, d in self._files.values()) > MAX_SHARED_BYTES:
                self._files.popitem(last=False)
        msg_id = self.node.publish(FILE_TOPIC, file_id)
        self._record(ChatMessage(_now(), "file", "out", self.node.peer_id, label, file_id, msg_id))
        return file_id

    def shared_files(self) -> pd.DataFrame:
        """The files this peer serves: ``file_id, name, size``."""
        with self._lock:
            rows = [(fid, label, len(data)) for fid, (label, data) in self._files.items()]
        return pd.DataFrame(rows, columns=["file_id", "name", "size"])

    def fetch_file(
        self,
        peer_id: str,
        file_id: str,
        dest: str | Path | None = None,
        *,
        timeout: float | None = None,
    ) -> bytes:
        """Fetch the file ``file_id`` from ``peer_id`` (who announced it); its bytes, also
        written to ``dest`` when given (a directory: ``dest/<file_id>``)."""
        if not isinstance(file_id, str) or not file_id or len(file_id) > MAX_FILE_ID_BYTES:
            raise errors.InvalidInput("file_id", file_id, "a file id from the chat")
        what = f"fetch file {file_id} from {peer_id}"
        with self.node.open_stream(peer_id, FILE_PROTOCOL, timeout=timeout) as stream:
            stream.write_msg(file_id, timeout=timeout)
            try:
                data = stream.read_msg(self.max_file_size, timeout=timeout)
            except errors.StreamClosed as exc:
                raise errors.OperationFailed(
                    what, f"the peer has no file with that id ({exc.reason})"
                ) from exc
        if not data:
            raise errors.OperationFailed(what, "the peer has no file with that id (empty answer)")
        if dest is not None:
            target = Path(dest)
            if target.is_dir():
                target = target / file_id
            target.write_bytes(data)
        return data

    def _check_file(self, message: Message) -> Verdict:
        if message.size > MAX_FILE_ID_BYTES:
            self.dropped["file_bad_announcement"] += 1
            return Verdict.IGNORE
        return Verdict.ACCEPT

    def _on_file(self, message: Message) -> None:
        if message.local:
            return
        file_id = message.data.decode("utf-8", "backslashreplace")
        self._record(
            ChatMessage(
                message.time, "file", "in", message.from_peer, file_id, file_id, message.msg_id
            )
        )

    async def _serve_file(self, stream: Stream) -> None:
        try:
            raw = await stream.read_msg(MAX_FILE_ID_BYTES)
        except errors.MessageTooLarge:
            self.dropped["file_bad_request"] += 1
            return
        with self._lock:
            found = self._files.get(raw.decode("utf-8", "replace"))
        if found is None:
            self.dropped["file_unknown"] += 1
            return
        await stream.write_msg(found[1])

    # -------------------------------------------------------------------- reading
    def _record(self, line: ChatMessage) -> None:
        if line.peer_id is not None and not line.nick:
            line = dataclasses.replace(line, nick=nick(line.peer_id))
        with self._changed:
            self._history.append(line)
            self.version += 1
            self._changed.notify_all()
        for listener in list(self._listeners):
            try:
                listener(line)
            except Exception:
                self.listener_errors += 1
                logger.exception("a chat listener raised")

    def on_line(self, callback: Callable[[ChatMessage], Any]) -> None:
        """Call ``callback(line)`` with every new line, ours too (on the node's loop for
        what arrives, on the caller's thread for what we send; keep it short)."""
        if not callable(callback):
            raise errors.InvalidInput("callback", callback, "a function of one line")
        self._listeners.append(callback)

    def lines(self) -> list[ChatMessage]:
        """The newest :data:`HISTORY` lines, oldest first."""
        with self._lock:
            return list(self._history)

    def messages(self) -> pd.DataFrame:
        """The chat so far, one row per line (columns :data:`MESSAGE_COLUMNS`)."""
        rows = [{c: getattr(line, c) for c in MESSAGE_COLUMNS} for line in self.lines()]
        frame = pd.DataFrame(rows, columns=list(MESSAGE_COLUMNS))
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame

    def wait_for(
        self,
        kind: str = "chat",
        predicate: Callable[[ChatMessage], bool] | None = None,
        *,
        timeout: float | None = None,
    ) -> ChatMessage:
        """The first incoming line of ``kind`` (``chat``, ``dm``, ``file``) that
        ``predicate`` accepts, waiting up to ``timeout`` s (default ``node.timeout``)."""
        if kind not in ("chat", "dm", "file"):
            raise errors.InvalidInput("kind", kind, "'chat', 'dm' or 'file'")
        limit = self.node.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit

        def match() -> ChatMessage | None:
            for line in self._history:
                wanted = line.kind == kind and line.direction == "in"
                if wanted and (predicate is None or predicate(line)):
                    return line
            return None

        with self._changed:
            while (found := match()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise errors.Timeout(f"wait for a {kind} message", limit)
                self._changed.wait(remaining)
        return found

    def peers(self) -> pd.DataFrame:
        """Peers of the chat: those connected now and those who wrote (columns
        :data:`PEER_COLUMNS`)."""
        counts: Counter[str] = Counter()
        last: dict[str, datetime] = {}
        for line in self.lines():
            if line.direction == "in" and line.peer_id:
                counts[line.peer_id] += 1
                last[line.peer_id] = line.time
        connected = set(self.node.connections()["peer_id"])
        rows = [
            (p, nick(p), p in connected, counts.get(p, 0), last.get(p))
            for p in sorted(connected | set(counts))
        ]
        frame = pd.DataFrame(rows, columns=list(PEER_COLUMNS))
        frame["last_seen"] = pd.to_datetime(frame["last_seen"], utc=True)
        return frame

    def show(self, **options: Any) -> Any:
        """Display a chat widget (messages, an input box, peers) in this cell; returns
        it (see :class:`ucsdk.apps.chat_widget.ChatWidget`)."""
        from ucsdk.apps.chat_widget import ChatWidget

        view = ChatWidget(self, **options)
        try:
            from IPython.display import display

            display(view)
        except ImportError:  # pragma: no cover - IPython comes with ipywidgets
            pass
        return view

    def widget(self, **options: Any) -> Any:
        """The chat widget, not displayed (display it yourself)."""
        from ucsdk.apps.chat_widget import ChatWidget

        return ChatWidget(self, **options)

    # ------------------------------------------------------------------- helpers
    @staticmethod
    def _text_bytes(name: str, text: Any, limit: int) -> bytes:
        if not isinstance(text, str):
            raise errors.InvalidInput(name, text, "a str")
        data = text.encode()
        if len(data) > limit:
            raise errors.InvalidInput(
                name, f"{text[:20]}... ({len(data)} bytes)", f"at most {limit} bytes"
            )
        return data


def _now() -> datetime:
    return datetime.now(timezone.utc)


__all__ = [
    "CHAT_TOPIC",
    "DISCOVERY_TOPIC",
    "DM_PROTOCOL",
    "FILE_PROTOCOL",
    "FILE_TOPIC",
    "UC_SETTINGS",
    "Chat",
    "ChatMessage",
    "nick",
]
