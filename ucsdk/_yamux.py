"""Two corrections to py-libp2p's Yamux: window credit in batches, and a close that does
not linger.

**Window credit.**

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

**Close.** ``Yamux.close()`` ends with ``trio.sleep(0.1)`` after the connection is closed
and its ``on_close`` callback has run. The swarm closes its connections one after the
other when the host stops, so a node with 10 peers took over a second to stop
(bench/facade.py, bench/idle.py). :func:`prompt_close` cancels that last sleep (nothing
follows it) while the whole swarm closes; the GO_AWAY frame, the socket's close and
``on_close`` are unchanged. A single connection's close (a disconnect) keeps the sleep:
without it, a peer that disconnected and reconnected at once and then opened hundreds of
streams saw a few of them reset during negotiation (bench/peers.py, 2-5 in 400).
py-libp2p's ``SwarmConn._cleanup`` waits another 100 ms after it resets the streams
(for their handlers to see the reset): :func:`prompt_close` gives them a few scheduler
passes instead. Upstream would need both sleeps removed.

Example:
    >>> batched_window_updates()
    >>> from libp2p.stream_muxer.yamux.yamux import YamuxStream
    >>> YamuxStream._auto_tune_and_send_window_update is _batched_window_update
    True
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import trio
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.network.swarm import Swarm
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

logger = logging.getLogger(__name__)

HANDLER_PASSES = 3
"""Scheduler passes a closed connection's stream handlers get to see their resets."""

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


_original_close = Yamux.close


_original_swarm_close = Swarm.close
_SWARM_CLOSING: ContextVar[bool] = ContextVar("ucsdk_swarm_closing", default=False)
"""Set while a swarm closes all its connections (the host stopping), in that task."""


async def _closing_swarm(self: Any) -> None:
    token = _SWARM_CLOSING.set(True)
    try:
        await _original_swarm_close(self)
    finally:
        _SWARM_CLOSING.reset(token)


async def _prompt_close(self: Any, *args: Any, **kwargs: Any) -> None:
    if not _SWARM_CLOSING.get():
        await _original_close(self, *args, **kwargs)
        return
    callback = self.on_close

    with trio.CancelScope() as linger:

        async def then_stop() -> None:
            try:
                if callback is not None:
                    await callback()
            finally:
                linger.cancel()

        self.on_close = then_stop
        try:
            await _original_close(self, *args, **kwargs)
        finally:
            self.on_close = callback


async def _prompt_cleanup(self: Any) -> None:
    self.swarm.remove_conn(self)
    if not getattr(self, "_shared_muxed_conn", False):
        try:
            if not self.muxed_conn.is_closed:
                await self.muxed_conn.close()
        except Exception as exc:
            logger.debug("closing a muxed connection: %r", exc)
    for stream in self.streams.copy():
        try:
            await stream.reset()
        except Exception as exc:
            logger.debug("resetting a stream of a closed connection: %r", exc)
    for _ in range(HANDLER_PASSES):
        await trio.lowlevel.checkpoint()
    await self._notify_disconnected()


def prompt_close() -> None:
    """Make every Yamux connection's close, and the swarm's clean-up after it, return
    once it is closed (idempotent; process-wide)."""
    if Yamux.close is not _prompt_close:
        Yamux.close = _prompt_close  # type: ignore[method-assign]
    if Swarm.close is not _closing_swarm:
        Swarm.close = _closing_swarm  # type: ignore[method-assign]
    if SwarmConn._cleanup is not _prompt_cleanup:
        SwarmConn._cleanup = _prompt_cleanup  # type: ignore[method-assign]
