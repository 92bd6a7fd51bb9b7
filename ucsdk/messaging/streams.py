"""Streams for users: serve a protocol, open a stream to a peer, read and write bytes.

:class:`Stream` wraps one libp2p stream for code on the node's event loop (``async``);
:class:`BlockingStream` gives the same methods to plain Python code in another thread.
Both speak raw bytes, and length-prefixed messages (unsigned-varint length, then the
bytes: the framing of most libp2p protocols) with a size cap checked before reading.

:class:`StreamService` holds the user's protocol handlers. A handler written with
``async def`` runs on the event loop and gets a :class:`Stream`; a plain function runs
in a worker thread, only while it runs, and gets a :class:`BlockingStream` (at most
``max_blocking_handlers`` at once; streams beyond wait without a thread). Inbound streams
are capped per peer and in total: beyond the caps a stream is reset and counted.

Example (two nodes; ``b`` echoes one length-prefixed message):
    >>> from ucsdk import Node
    >>> a, b = Node.development(enable_mdns=False), Node.development(enable_mdns=False)
    >>> def echo(stream):
    ...     with stream:
    ...         stream.write_msg(stream.read_msg())
    >>> b.handle("/echo/1.0.0", echo)
    >>> _ = a.connect(b.addrs[0])
    >>> with a.open_stream(b.peer_id, "/echo/1.0.0") as s:
    ...     s.write_msg(b"hello")
    ...     s.read_msg()
    b'hello'
    >>> a.stop(); b.stop()
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID

from ucsdk import errors
from ucsdk._service import Service
from ucsdk._wire import encode_uvarint

logger = logging.getLogger("UniversalConnectivity")

T = TypeVar("T")

DEFAULT_MAX_MESSAGE = 4 << 20
"""Bytes: the default cap of :meth:`Stream.read_msg` (4 MiB)."""
MAX_PROTOCOL_LENGTH = 256
READ_CHUNK = 65536


def check_protocol(protocol: Any) -> str:
    """``protocol`` as a protocol id (``/name/version``), or ``InvalidInput``."""
    if (
        not isinstance(protocol, str)
        or not protocol.startswith("/")
        or len(protocol) > MAX_PROTOCOL_LENGTH
        or any(c.isspace() for c in protocol)
    ):
        raise errors.InvalidInput(
            "protocol", protocol, "a protocol id such as /my-app/1.0.0 (no spaces)"
        )
    return protocol


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise errors.InvalidInput(name, value, "a positive number of bytes")
    return value


def _data(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise errors.InvalidInput("data", data, "bytes or str")


class Stream:
    """One libp2p stream, for code on the node's event loop (see the module docstring).

    ``peer_id`` is the remote peer, ``protocol`` the negotiated protocol. Reading at the
    end of the stream returns ``b""`` (:meth:`read`) or raises
    :class:`ucsdk.errors.StreamClosed` (:meth:`read_exactly`, :meth:`read_msg`).
    """

    def __init__(self, stream: INetStream, protocol: str) -> None:
        self._stream = stream
        self.protocol = protocol
        self.peer_id = stream.muxed_conn.peer_id.to_base58()
        self._buffer = bytearray()
        self._eof = False
        self.closed = False

    async def read(self, max_bytes: int = READ_CHUNK) -> bytes:
        """Up to ``max_bytes`` bytes as soon as some arrive; ``b""`` at the end."""
        _check_size("max_bytes", max_bytes)
        if self._buffer:
            out = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return out
        return await self._receive(max_bytes)

    async def _receive(self, max_bytes: int) -> bytes:
        """The next bytes from the wire (not the buffer); ``b""`` at the end."""
        if self._eof:
            return b""
        try:
            data = await self._stream.read(max_bytes)
        except Exception as exc:
            if _is_eof(exc):
                self._eof = True
                return b""
            raise errors.StreamClosed(self.protocol, self.peer_id, _reason(exc)) from exc
        if not data:
            self._eof = True
        return bytes(data)

    async def read_exactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`ucsdk.errors.StreamClosed` if the stream ends first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise errors.InvalidInput("n", n, "a number of bytes >= 0")
        while len(self._buffer) < n:
            chunk = await self._receive(max(READ_CHUNK, n - len(self._buffer)))
            if not chunk:
                got = len(self._buffer)
                raise errors.StreamClosed(
                    self.protocol, self.peer_id, f"ended after {got} of {n} bytes"
                )
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def read_uvarint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            byte = (await self.read_exactly(1))[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise errors.StreamClosed(self.protocol, self.peer_id, "a length prefix over 10 bytes")

    async def read_msg(self, max_size: int = DEFAULT_MAX_MESSAGE) -> bytes:
        """One length-prefixed message; a length over ``max_size`` resets the stream
        before anything more is read (:class:`ucsdk.errors.MessageTooLarge`)."""
        _check_size("max_size", max_size)
        length = await self.read_uvarint()
        if length > max_size:
            await self.reset()
            raise errors.MessageTooLarge(self.protocol, length, max_size)
        return await self.read_exactly(length)

    async def write(self, data: bytes | str) -> None:
        """Send ``data`` (str is sent as UTF-8); waits while the peer's window is full."""
        payload = _data(data)
        try:
            await self._stream.write(payload)
        except Exception as exc:
            raise errors.StreamClosed(self.protocol, self.peer_id, _reason(exc)) from exc

    async def write_msg(self, data: bytes | str) -> None:
        """Send ``data`` as one length-prefixed message."""
        payload = _data(data)
        await self.write(encode_uvarint(len(payload)) + payload)

    async def close(self) -> None:
        """Close the stream (what was written is still delivered). Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._stream.close()
        except Exception as exc:
            logger.debug("closing a %s stream: %r", self.protocol, exc)

    async def reset(self) -> None:
        """Abort the stream at once, in both directions. Idempotent."""
        self.closed = True
        try:
            await self._stream.reset()
        except Exception as exc:
            logger.debug("resetting a %s stream: %r", self.protocol, exc)

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, exc_type: Any, *rest: object) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.reset()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Stream {self.protocol} with {self.peer_id[-8:]} {state}>"


def _is_eof(exc: BaseException) -> bool:
    for error in (exc, exc.__cause__):
        if error is None:
            continue
        name = type(error).__name__
        if "EOF" in name or "StreamClosed" in name or "ClosedResource" in name:
            return True
        # py-libp2p's WebRTC stream raises these, not EOF, on a read at the peer's FIN.
        if any(t in str(error) for t in ("Read side is closed", "Stream closed by remote")):
            return True
    return False


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


Runner = Callable[..., Any]
"""``run(operation, async_fn, *args, timeout=seconds)``: run ``async_fn(*args)`` on the
node's loop from another thread and return its result."""


class BlockingStream:
    """A :class:`Stream` for plain (blocking) Python code in a thread other than the
    node's loop: the same methods, each waiting at most ``timeout`` seconds (default
    ``default_timeout``) and raising :class:`ucsdk.errors.Timeout` after.

    Use it as a context manager: a clean exit closes the stream, an exception resets it.
    """

    def __init__(self, stream: Stream, run: Runner, default_timeout: float) -> None:
        self.stream = stream
        self._run = run
        self.default_timeout = default_timeout
        self.peer_id = stream.peer_id
        self.protocol = stream.protocol

    def _do(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, timeout: Any) -> T:
        limit = self.default_timeout if timeout is None else timeout
        return self._run(f"{what} on {self.protocol}", fn, *args, timeout=limit)  # type: ignore[no-any-return]

    def read(self, max_bytes: int = READ_CHUNK, *, timeout: float | None = None) -> bytes:
        return self._do("read", self.stream.read, max_bytes, timeout=timeout)

    def read_exactly(self, n: int, *, timeout: float | None = None) -> bytes:
        return self._do("read", self.stream.read_exactly, n, timeout=timeout)

    def read_msg(
        self, max_size: int = DEFAULT_MAX_MESSAGE, *, timeout: float | None = None
    ) -> bytes:
        return self._do("read a message", self.stream.read_msg, max_size, timeout=timeout)

    def write(self, data: bytes | str, *, timeout: float | None = None) -> None:
        self._do("write", self.stream.write, data, timeout=timeout)

    def write_msg(self, data: bytes | str, *, timeout: float | None = None) -> None:
        self._do("write a message", self.stream.write_msg, data, timeout=timeout)

    def close(self, *, timeout: float | None = None) -> None:
        self._do("close", self.stream.close, timeout=timeout)

    def reset(self, *, timeout: float | None = None) -> None:
        self._do("reset", self.stream.reset, timeout=timeout)

    @property
    def closed(self) -> bool:
        return self.stream.closed

    def __enter__(self) -> BlockingStream:
        return self

    def __exit__(self, exc_type: Any, *rest: object) -> None:
        try:
            if exc_type is None:
                self.close()
            else:
                self.reset()
        except errors.UcsdkError as exc:  # the node stopped meanwhile: nothing to close
            logger.debug("leaving a stream: %r", exc)

    def __repr__(self) -> str:
        return repr(self.stream).replace("<Stream", "<BlockingStream", 1)


def _thread_runner(token: trio.lowlevel.TrioToken) -> Runner:
    """A runner for trio worker threads (handlers written as plain functions)."""

    def run(operation: str, fn: Callable[..., Awaitable[T]], *args: Any, timeout: float) -> T:
        async def bounded() -> T:
            with trio.fail_after(timeout) if math.isfinite(timeout) else _nothing():
                return await fn(*args)

        try:
            return trio.from_thread.run(bounded, trio_token=token)
        except trio.TooSlowError:
            raise errors.Timeout(operation, timeout) from None
        except trio.RunFinishedError:
            raise errors.NodeStopped(operation) from None

    return run


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class StreamService(Service):
    """The user's protocol handlers, and outbound streams (see the module docstring)."""

    def __init__(
        self,
        host: IHost,
        *,
        max_streams: int = 256,
        max_streams_per_peer: int = 32,
        max_blocking_handlers: int = 16,
        handler_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.service_name = "streams"
        self.host = host
        self.max_streams = max_streams
        self.max_streams_per_peer = max_streams_per_peer
        self.handler_timeout = handler_timeout
        """Default timeout of each blocking call a plain-function handler makes."""
        self._limiter = trio.CapacityLimiter(max_blocking_handlers)
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.active: Counter[str] = Counter()
        """Inbound user streams open now, by peer."""
        self.dropped: Counter[str] = Counter()
        """``refused_total``, ``refused_peer``, ``handler_errors`` (``streams_`` in the metrics)."""
        self.accepted = 0

    async def _on_stop(self) -> None:
        for protocol in list(self.handlers):
            self._unregister(protocol)

    def handle(self, protocol: str, handler: Callable[..., Any]) -> None:
        """Serve ``protocol``: ``handler(stream)`` is called for each inbound stream."""
        check_protocol(protocol)
        if not callable(handler):
            raise errors.InvalidInput("handler", handler, "a function taking a stream")
        self.handlers[protocol] = handler

        async def serve(raw: INetStream) -> None:
            await self._serve(protocol, raw)

        self.host.set_stream_handler(protocol, serve)  # type: ignore[arg-type]

    def unhandle(self, protocol: str) -> None:
        """Stop serving ``protocol`` (streams already open carry on)."""
        check_protocol(protocol)
        if protocol not in self.handlers:
            raise errors.InvalidInput("protocol", protocol, "a protocol this node handles")
        self._unregister(protocol)

    def _unregister(self, protocol: str) -> None:
        self.handlers.pop(protocol, None)
        self.host.remove_stream_handler(protocol)  # type: ignore[arg-type]

    async def _serve(self, protocol: str, raw: INetStream) -> None:
        handler = self.handlers.get(protocol)
        peer = raw.muxed_conn.peer_id.to_base58()
        if handler is None or not self.running:
            await raw.reset()
            return
        if sum(self.active.values()) >= self.max_streams:
            self.dropped["refused_total"] += 1
            await raw.reset()
            return
        if self.active[peer] >= self.max_streams_per_peer:
            self.dropped["refused_peer"] += 1
            await raw.reset()
            return
        self.active[peer] += 1
        self.accepted += 1
        stream = Stream(raw, protocol)
        try:
            if inspect.iscoroutinefunction(handler):
                await handler(stream)
            else:
                token = trio.lowlevel.current_trio_token()
                blocking = BlockingStream(stream, _thread_runner(token), self.handler_timeout)
                await trio.to_thread.run_sync(handler, blocking, limiter=self._limiter)
        except Exception as exc:
            self.dropped["handler_errors"] += 1
            logger.warning("handler of %s raised: %r", protocol, exc)
            await stream.reset()
        finally:
            self.active[peer] -= 1
            if self.active[peer] <= 0:
                del self.active[peer]
            if not stream.closed:
                await stream.close()

    async def open(self, peer_id: str, protocol: str) -> Stream:
        """A new stream to ``peer_id`` (connected already) speaking ``protocol``."""
        check_protocol(protocol)
        try:
            raw = await self.host.new_stream(ID.from_base58(peer_id), [protocol])  # type: ignore[list-item]
        except Exception as exc:
            raise errors.OperationFailed(
                f"open a {protocol} stream to {peer_id}", _reason(exc)
            ) from exc
        return Stream(raw, protocol)


__all__ = ["BlockingStream", "Stream", "StreamService", "check_protocol"]
