"""Stream protocol negotiation in one round trip, or none.

py-libp2p's multistream-select client spends two round trips on every new stream before
the protocol's first byte: it writes the ``/multistream/1.0.0`` header and waits for the
peer's, then writes the protocol and waits for its echo. Its listener answers in two
writes (header, then echo), each one a Yamux frame and a Noise message of its own. A ping
on a new stream cost about twice js-libp2p's on loopback (bench/facade.py).

Here, for the streams a host opens (``host.new_stream``):

* the header and the first proposal go out in one write (multistream-select allows
  it: the dialer need not wait for the listener's header before it proposes), so a
  negotiation takes one round trip;
* (when :data:`OPTIMISTIC` is on, off by default) when a single protocol is proposed and
  the peer announced it in identify, the stream is
  returned at once (optimistic selection): the caller's first data follows the proposal
  without waiting, and the stream's first read checks the peer's header and echo before
  it returns any data. A refusal (``na``) there raises :class:`ProtocolRejected`, after
  the stream is reset; anything else than the echo raises :class:`NegotiationGarbage`;
* the listener answers header and echo in one write when the dialer's header and its
  proposal have both arrived when the negotiation starts (otherwise it writes its header
  first, as before, so a dialer that waits for it is not stuck).

Upstream py-libp2p would need the same in ``MultiselectClient.select_one_of`` (pipelined
header and proposal), a lazy mode in ``BasicHost.new_stream``, and a listener that reads
what is already there before it writes its header.

Example:
    >>> encode_messages(["/multistream/1.0.0", "/ipfs/ping/1.0.0"])[:1]
    b'\\x13'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio
from libp2p.abc import IMultiselectCommunicator, IPeerStore
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.protocol_muxer.exceptions import (
    MultiselectClientError,
    MultiselectCommunicatorError,
    ProtocolNotSupportedError,
)
from libp2p.protocol_muxer.multiselect import DEFAULT_NEGOTIATE_TIMEOUT, Multiselect
from libp2p.protocol_muxer.multiselect_client import MultiselectClient
from libp2p.utils import encode_delim

logger = logging.getLogger(__name__)

HEADER = "/multistream/1.0.0"
NOT_SUPPORTED = "na"
MAX_MESSAGE = 1024
"""Longest negotiation message read (the specs bound protocol names far below)."""

OPTIMISTIC = False
"""Whether a single announced protocol is proposed optimistically (see the module doc).

Off: with it on, the DHT fuzz run (``tests/security/test_fuzz.py``) saw the DHT handler
reset some well-formed requests that arrived with the proposal and the dialer's close
without counting them (3 runs in 8; never with it off). Until that is understood, streams
negotiate in one round trip, not none."""

optimistic_streams = 0
"""Streams returned before the peer confirmed their protocol (a count for tests)."""
coalesced_answers = 0
"""Inbound negotiations answered with header and echo in one write (a count for tests)."""


class ProtocolRejected(StreamError):
    """The peer answered ``na`` to a protocol proposed optimistically."""


class NegotiationGarbage(StreamError):
    """The peer answered an optimistic proposal with something else than its echo."""


def encode_messages(messages: Sequence[str]) -> bytes:
    """Multistream-select messages (varint length, text, newline) in one buffer."""
    return b"".join(encode_delim(m.encode()) for m in messages)


def _parse_messages(data: bytes | bytearray, count: int) -> list[str] | None:
    """The first ``count`` messages in ``data``, or None when they have not all arrived
    (or are not well formed: the ordinary path then reads and rejects them)."""
    out: list[str] = []
    at = 0
    for _ in range(count):
        length = shift = 0
        while True:
            if at >= len(data) or shift > 14:
                return None
            byte = data[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if length == 0 or at + length > len(data) or data[at + length - 1] != 0x0A:
            return None
        out.append(bytes(data[at : at + length - 1]).decode("utf-8", "replace"))
        at += length
    return out


def _buffered(stream: Any) -> bytearray | None:
    """Bytes a Yamux stream has received but nobody has read yet (None: unknown)."""
    muxed = getattr(stream, "muxed_stream", None)
    buffers = getattr(getattr(muxed, "conn", None), "stream_buffers", None)
    if not isinstance(buffers, dict):
        return None
    found = buffers.get(getattr(muxed, "stream_id", None))
    return found if isinstance(found, bytearray) else None


async def _write(stream: Any, data: bytes, what: str) -> None:
    try:
        await stream.write(data)
    except (IOException, AssertionError, ValueError) as error:
        raise MultiselectClientError(f"{what} write failed: {error}") from error


async def _read(communicator: IMultiselectCommunicator, what: str) -> str:
    try:
        return await communicator.read()
    except MultiselectCommunicatorError as error:
        raise MultiselectClientError(f"{what} read failed: {error}") from error


class PipelinedMultiselectClient(MultiselectClient):
    """A multistream-select client that proposes with its header (one round trip), and
    proposes optimistically a single protocol the peer announced (no round trip)."""

    def __init__(self, peerstore: IPeerStore | None = None) -> None:
        self._peerstore = peerstore

    def _announced(self, stream: Any, protocol: TProtocol) -> bool:
        if not OPTIMISTIC or self._peerstore is None:
            return False
        peer = getattr(getattr(stream, "muxed_conn", None), "peer_id", None)
        if peer is None:
            return False
        try:
            return protocol in self._peerstore.get_protocols(peer)
        except Exception:
            return False

    async def select_one_of(
        self,
        protocols: Sequence[TProtocol],
        communicator: IMultiselectCommunicator,
        negotiate_timeout: int = DEFAULT_NEGOTIATE_TIMEOUT,
    ) -> TProtocol:
        choices = list(protocols)
        stream: Any = getattr(communicator, "read_writer", None)
        if not choices or stream is None or any(not p for p in choices):
            return await super().select_one_of(protocols, communicator, negotiate_timeout)
        first = choices[0]
        with trio.move_on_after(negotiate_timeout):
            await _write(stream, encode_messages([HEADER, first]), "handshake")
            if len(choices) == 1 and self._announced(stream, first):
                OptimisticEcho(stream, first).install()
                return first
            header = await _read(communicator, "header")
            if header != HEADER:
                raise MultiselectClientError(f"multiselect protocol ID mismatch: {header!r}")
            answer = await _read(communicator, "proposal")
            if answer == first:
                return first
            if answer != NOT_SUPPORTED:
                raise MultiselectClientError(f"unrecognized response {answer!r} to {first}")
            for protocol in choices[1:]:
                try:
                    return await self.try_select(communicator, protocol)
                except ProtocolNotSupportedError:
                    continue
            raise MultiselectClientError(f"protocols not supported: tried {choices}")
        raise MultiselectClientError(
            f"response timed out after {negotiate_timeout}s, protocols tried: {choices}"
        )


class OptimisticEcho:
    """A stream's ``read`` until the peer's header and echo have been checked.

    Installed as an instance attribute over ``NetStream.read``; removed once the echo is
    there. What it has read so far survives a cancelled read (a timeout around the first
    read resumes where it stopped).
    """

    def __init__(self, stream: Any, protocol: TProtocol) -> None:
        self.stream = stream
        self.protocol = protocol
        self.expected = [HEADER, str(protocol)]
        self.prefix = bytearray()  # varint bytes of the message being read
        self.length: int | None = None
        self.body = bytearray()
        self.lock = trio.Lock()
        self.original = stream.read

    def install(self) -> None:
        global optimistic_streams
        optimistic_streams += 1
        self.stream.read = self

    @property
    def pending(self) -> bool:
        return self.stream.__dict__.get("read") is self

    async def __call__(self, n: int | None = None) -> bytes:
        async with self.lock:
            if self.pending:
                await self._check()
        return await self.original(n)

    async def _check(self) -> None:
        try:
            while self.expected:
                if self.length is None:
                    byte = await self._read_some(1)
                    self.prefix += byte
                    if byte[0] & 0x80:
                        if len(self.prefix) > 2:
                            raise self._garbage("an over-long message length")
                        continue
                    self.length = sum((b & 0x7F) << (7 * i) for i, b in enumerate(self.prefix))
                    if not 0 < self.length <= MAX_MESSAGE:
                        raise self._garbage(f"a message of {self.length} bytes")
                    continue
                self.body += await self._read_some(self.length - len(self.body))
                if len(self.body) < self.length:
                    continue
                self._message(bytes(self.body))
                self.prefix.clear()
                self.body.clear()
                self.length = None
        except (ProtocolRejected, NegotiationGarbage):
            with trio.CancelScope(shield=True):
                try:
                    await self.stream.reset()
                except Exception as exc:
                    logger.debug("reset after a refused optimistic proposal: %r", exc)
            self._uninstall()
            raise
        self._uninstall()

    def _uninstall(self) -> None:
        if self.pending:
            del self.stream.read

    async def _read_some(self, n: int) -> bytes:
        data = await self.original(n)
        if not data:
            raise StreamEOF(f"stream closed before the peer answered the proposal {self.protocol}")
        return data

    def _message(self, body: bytes) -> None:
        if not body.endswith(b"\n"):
            raise self._garbage("a message without its newline")
        text = body[:-1].decode("utf-8", "replace")
        wanted = self.expected.pop(0)
        if text == wanted:
            return
        if wanted != HEADER and text == NOT_SUPPORTED:
            raise ProtocolRejected(f"the peer does not support {self.protocol} (it answered na)")
        raise self._garbage(repr(text[:64]))

    def _garbage(self, what: str) -> NegotiationGarbage:
        return NegotiationGarbage(
            f"the peer answered the proposal {self.protocol} with {what}, not its echo"
        )


async def confirm_protocol(stream: Any) -> None:
    """Wait until the peer has confirmed the protocol of ``stream`` (at once for a stream
    not opened optimistically); raises as the stream's first read would.

    For a caller that times what follows (a ping's round trips) and must not count the
    negotiation's round trip in the first one.
    """
    pending = stream.__dict__.get("read")
    if isinstance(pending, OptimisticEcho):
        async with pending.lock:
            if pending.pending:
                await pending._check()


class _HeldHeader:
    """A listener's communicator whose header write waits for the next write (the answer
    to the dialer's proposal), so both go out as one message."""

    def __init__(self, inner: IMultiselectCommunicator) -> None:
        self.inner = inner
        self.read_writer = getattr(inner, "read_writer", None)
        self.held: str | None = None
        self.flushed = False

    async def write(self, msg_str: str) -> None:
        if self.flushed:
            await self.inner.write(msg_str)
            return
        if self.held is None:
            self.held = msg_str
            return
        global coalesced_answers
        self.flushed = True
        try:
            await self.read_writer.write(encode_messages([self.held, msg_str]))  # type: ignore[union-attr]
        except (IOException, AssertionError, ValueError) as error:
            raise MultiselectCommunicatorError(
                "fail to write to multiselect communicator"
            ) from error
        coalesced_answers += 1

    async def read(self) -> str:
        return await self.inner.read()


class CoalescingMultiselect(Multiselect):
    """py-libp2p's listener, answering header and echo in one write when the dialer's
    header and proposal are both there already."""

    async def negotiate(
        self,
        communicator: IMultiselectCommunicator,
        negotiate_timeout: int = DEFAULT_NEGOTIATE_TIMEOUT,
    ) -> tuple[Any, Any]:
        buffered = _buffered(getattr(communicator, "read_writer", None))
        if buffered is not None:
            messages = _parse_messages(buffered, 2)
            if messages is not None and messages[0] == HEADER and messages[1] not in ("", "ls"):
                communicator = _HeldHeader(communicator)  # type: ignore[assignment]
        return await super().negotiate(communicator, negotiate_timeout)


def pipelined_negotiation(host: Any) -> None:
    """Install the one-round-trip client and the one-write listener on a BasicHost."""
    if not isinstance(host.multiselect_client, PipelinedMultiselectClient):
        host.multiselect_client = PipelinedMultiselectClient(host.get_peerstore())
    if not isinstance(host.multiselect, CoalescingMultiselect):
        host.multiselect = CoalescingMultiselect(host.multiselect.handlers)
