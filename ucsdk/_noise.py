"""Noise writes that a cancellation cannot cut in two.

py-libp2p's Noise session encrypts a message (which uses up one nonce of the sending
cipher) and then writes it to the connection. A task cancelled in between (a timeout
around a dial or a stream write, a nursery ending while one of its tasks writes) raised
at the write's first checkpoint: the nonce was spent but nothing was sent, or part of the
message was sent. Either way the peer can decrypt nothing after it and closes the
connection, and every stream on it dies, those of other tasks too. On a relay connection
that is every circuit through it. A cancellation landing in that window broke the
connection every time (``tests/test_host.py``).

:func:`whole_noise_writes` makes a transport message's write whole: a task that is
already cancelled gives up before it encrypts anything; once it has encrypted, the write
finishes (shielded) and the cancellation takes effect just after. A write that cannot
finish within :data:`WRITE_GRACE` seconds (the peer stopped reading) leaves the stream
broken, so the connection is closed.

Example:
    >>> from libp2p.security.noise.io import NoiseTransportReadWriter
    >>> whole_noise_writes()
    >>> NoiseTransportReadWriter.write_msg is _whole_write_msg
    True
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio
from libp2p.io.exceptions import IOException
from libp2p.security.noise.io import NoiseTransportReadWriter

logger = logging.getLogger("UniversalConnectivity")

WRITE_GRACE = 10.0
"""Seconds a Noise message's write may take once it has started."""

_original_write_msg = NoiseTransportReadWriter.write_msg

finished_after_cancel = 0
"""Writes a cancellation reached while they were under way, finished before it took
effect (a count for tests and diagnostics)."""


async def _whole_write_msg(self: Any, msg: bytes, prefix_encoded: bool = False) -> None:
    global finished_after_cancel
    await trio.lowlevel.checkpoint_if_cancelled()
    with trio.CancelScope(shield=True):
        with trio.move_on_after(WRITE_GRACE) as grace:
            await _original_write_msg(self, msg, prefix_encoded)
        if grace.cancelled_caught:
            with trio.move_on_after(1), contextlib.suppress(Exception):
                await self.read_writer.close()
    if grace.cancelled_caught:
        raise IOException(f"a Noise write did not finish in {WRITE_GRACE} s: connection closed")
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except trio.Cancelled:
        finished_after_cancel += 1
        raise


def whole_noise_writes() -> None:
    """Make every Noise transport message's write whole (idempotent; process-wide, as
    py-libp2p builds its Noise sessions itself)."""
    NoiseTransportReadWriter.write_msg = _whole_write_msg  # type: ignore[method-assign]
