"""Framing between a lab and its node processes: 4-byte big-endian length, pickled payload.

Both ends are ucsdk's own code, parent and child, joined by a private pipe.

Example:
    >>> import io
    >>> buf = io.BytesIO()
    >>> write_frame(buf, ("hello", 1))
    >>> _ = buf.seek(0)
    >>> read_frame(buf)
    ('hello', 1)
    >>> read_frame(buf) is None  # end of stream
    True
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

MAX_FRAME = 64 * 1024 * 1024


def write_frame(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("!I", len(data)) + data)
    stream.flush()


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: IO[bytes]) -> Any:
    """The next object, or ``None`` at end of stream."""
    header = _read_exactly(stream, 4)
    if header is None:
        return None
    (size,) = struct.unpack("!I", header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    body = _read_exactly(stream, size)
    if body is None:
        return None
    return pickle.loads(body)
