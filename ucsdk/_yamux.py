"""Yamux receive-window credit as go-yamux gives it: in batches, not on every read.

py-libp2p 0.8.1's ``YamuxStream`` sends a WINDOW_UPDATE frame after nearly every read
(its ``RELEASE_ON_READ`` default, and a "partial slack" branch that credits even more
than was read): reading a 32-byte ping cost an extra Yamux frame, Noise message and
socket write each way, and multistream-select's small reads (a varint byte, then the
text) two of them. About a third of a new-stream ping's CPU time went there
(py-spy, bench/facade.py).

go-yamux (and the Yamux spec's intent) sends an update only once the window the sender
may still use has fallen by at least half of the target window; reads smaller than that
add up until then. :func:`batched_window_updates` makes py-libp2p's streams do that
(keeping its window auto-tuning, which grows the target when updates come fast).
Upstream would need ``RELEASE_ON_READ`` off by default and the partial-slack branch
removed.

Example:
    >>> batched_window_updates()
    >>> from libp2p.stream_muxer.yamux.yamux import YamuxStream
    >>> YamuxStream._auto_tune_and_send_window_update is _batched_window_update
    True
"""

from __future__ import annotations

from typing import Any

from libp2p.stream_muxer.yamux.yamux import YamuxStream

batched_updates = 0
"""Window updates sent by the batched rule (a count for tests and diagnostics)."""


async def _batched_window_update(self: Any, *, bytes_read: int = 0) -> None:
    global batched_updates
    increment = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta > 0 and delta >= self._grow_threshold():
            increment = self._grow_to_delta(buffered)
            increment += self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
    if increment > 0:
        batched_updates += 1
        await self.send_window_update(increment, skip_lock=True)


def batched_window_updates() -> None:
    """Make every Yamux stream's window credit batched (idempotent; process-wide, as
    py-libp2p makes its Yamux streams itself)."""
    YamuxStream._auto_tune_and_send_window_update = _batched_window_update  # type: ignore[method-assign]
