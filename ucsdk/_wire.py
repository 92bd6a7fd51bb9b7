"""Small helpers to read and write libp2p stream framing with hard size limits."""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from libp2p.abc import INetStream


class FramingError(Exception):
    """The remote sent something that does not fit the framing (too long, truncated)."""


async def read_exactly(stream: INetStream, size: int) -> bytes:
    """Read exactly ``size`` bytes or raise :class:`FramingError` when the stream ends."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = await stream.read(size - len(buffer))
        if not chunk:
            raise FramingError(f"stream ended after {len(buffer)} of {size} bytes")
        buffer.extend(chunk)
    return bytes(buffer)


def encode_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


async def read_uvarint(stream: INetStream) -> int:
    value = 0
    for shift in range(0, 63, 7):
        byte = (await read_exactly(stream, 1))[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise FramingError("uvarint longer than 9 bytes")


async def read_delimited(stream: INetStream, max_size: int) -> bytes:
    """Read one uvarint-length-prefixed message of at most ``max_size`` bytes."""
    size = await read_uvarint(stream)
    if size > max_size:
        raise FramingError(f"message of {size} bytes exceeds the limit of {max_size}")
    return await read_exactly(stream, size)


async def write_delimited(stream: INetStream, payload: bytes) -> None:
    """Write one uvarint-length-prefixed message."""
    await stream.write(encode_uvarint(len(payload)) + payload)


async def close_quietly(thing: Any, timeout: float = 2.0, *, reset: bool = False) -> None:
    """Close (or reset) a stream or connection even while cancelled, within ``timeout``;
    failing to close something the remote already tore down is not news."""
    with trio.CancelScope(shield=True), trio.move_on_after(timeout), contextlib.suppress(Exception):
        await (thing.reset() if reset else thing.close())
