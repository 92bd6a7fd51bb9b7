"""QUIC bulk transfer without py-libp2p's per-datagram scheduling costs.

py-libp2p 0.8.1's QUIC transport drives aioquic's sans-IO core from trio, but three
habits of it cost more than aioquic's own work (profiled with py-spy, 64 KiB writes over
loopback: 3–4.5 MB/s against raw aioquic's 11–17 MB/s in the same run):

* ``QUICConnection._transmit`` awaits trio's ``sendto`` once per datagram: every 1200-byte
  datagram is a trip through trio's scheduler (a checkpoint), so a 64 KiB write is about
  55 scheduler rounds before the writer runs again.
* ``QUICConnection._event_processing_loop`` spins with ``trio.sleep(0.0001)`` while
  events flow, waking the loop (and epoll) every 0.1 ms in both peers.
* Both receive loops (the client's ``_client_packet_receiver`` and the listener's
  ``_handle_incoming_packets``) hand aioquic one datagram, drain its events and transmit,
  so every received datagram is answered on its own (an ACK datagram each).

:func:`fast_quic` replaces the three: ``_transmit`` writes the datagrams straight to the
non-blocking socket and waits for the socket only when its buffer is full; the event loop
sleeps until aioquic's next timer or a wake-up; the receive loops take every datagram
the socket already holds (up to :data:`RECEIVE_BATCH`) before aioquic's events are
processed and its answer sent, as a kernel's receive batching would. Behaviour is
otherwise that of py-libp2p's (its handshake, peer-id checks, stream objects, limits and
error paths are untouched). Upstream would need the same three changes in
``libp2p/transport/quic/connection.py`` and ``listener.py``.

Example:
    >>> from libp2p.transport.quic.connection import QUICConnection
    >>> fast_quic()
    >>> QUICConnection._transmit is _transmit
    True
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import trio
from libp2p.transport.quic.connection import QUICConnection
from libp2p.transport.quic.listener import QUICListener

logger = logging.getLogger("UniversalConnectivity")

RECEIVE_BATCH = 64
"""Datagrams a receive loop takes from its socket before it lets aioquic answer."""

IDLE_WAKE = 2.0
"""Longest sleep of a connection's event loop without a timer or a wake-up (seconds),
py-libp2p's own idle interval."""

_RECEIVE_SIZE = 65536
_BATCH = "_ucsdk_batch"  # the listener's attribute: connections fed in this batch


def _raw(sock: Any) -> socket.socket | None:
    """The stdlib socket under a trio socket (``None`` for anything else)."""
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, socket.socket) else None


async def _send_all(sock: Any, datagrams: list[tuple[bytes, Any]]) -> int:
    """Send ``datagrams`` on trio socket ``sock``: straight to the non-blocking socket,
    waiting on trio only when the kernel's buffer is full. Returns the bytes sent."""
    raw = _raw(sock)
    total = 0
    for data, addr in datagrams:
        if raw is not None:
            try:
                raw.sendto(data, addr)
                total += len(data)
                continue
            except BlockingIOError:
                pass
        await sock.sendto(data, addr)
        total += len(data)
    return total


async def _transmit(self: QUICConnection) -> None:
    """``QUICConnection._transmit`` without a scheduler round per datagram."""
    sock = self._socket
    if not sock:
        return
    try:
        datagrams = self._quic.datagrams_to_send(now=time.time())
        if datagrams:
            sent = await _send_all(sock, datagrams)
            self._stats["packets_sent"] += len(datagrams)
            self._stats["bytes_sent"] += sent
    except Exception as e:  # as py-libp2p's: a send error ends the connection
        logger.debug("QUIC transmission error: %s", e)
        await self._handle_connection_error(e)
        return
    self._refresh_send_backpressure()


async def _event_processing_loop(self: QUICConnection) -> None:
    """The connection's housekeeping loop: events, timers and transmission, sleeping
    until aioquic's next timer or a wake-up (``_signal_activity``) instead of polling."""
    try:
        while not self._closed:
            await self._process_quic_events_batched()
            await self._handle_timer_events()
            await self._transmit()
            if self._quic._events:
                await trio.lowlevel.checkpoint()
                continue
            timer = self._quic.get_timer()
            delay = IDLE_WAKE if timer is None else min(max(0.0, timer - time.time()), IDLE_WAKE)
            if delay > 0.0:
                with trio.move_on_after(delay):
                    await self._activity_event.wait()
            else:
                await trio.lowlevel.checkpoint()
            if self._activity_event.is_set():
                self._activity_event = trio.Event()
    except Exception as e:
        if not self._closed:
            logger.debug("QUIC event loop error: %s", e)
            await self._handle_connection_error(e)


def _drain(raw: socket.socket | None, first: tuple[bytes, Any]) -> list[tuple[bytes, Any]]:
    """``first`` and every datagram ``raw`` already holds, up to :data:`RECEIVE_BATCH`."""
    batch = [first]
    if raw is None:
        return batch
    while len(batch) < RECEIVE_BATCH:
        try:
            batch.append(raw.recvfrom(_RECEIVE_SIZE))
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # an ICMP error queued on the socket: the next recvfrom reports it
            break
    return batch


async def _client_packet_receiver(self: QUICConnection) -> None:
    """The dialling side's receive loop, taking what the socket holds in one go."""
    try:
        while not self._closed and self._socket:
            try:
                first = await self._socket.recvfrom(_RECEIVE_SIZE)
                batch = _drain(_raw(self._socket), first)
                now = time.time()
                for data, addr in batch:
                    self._quic.receive_datagram(data, addr, now=now)
                self._signal_activity()
                await self._process_quic_events_batched()
                await self._transmit()
            except (trio.ClosedResourceError, OSError):
                break
            except Exception as e:
                if self._closed or not self._socket:
                    break
                logger.debug("QUIC client receive error: %s", e)
                await trio.sleep(0.01)
    finally:
        logger.debug("QUIC client packet receiver ended")


CID_LENGTH = 8
"""Length of the connection ids py-libp2p's listener issues and parses (aioquic's)."""


def _established(listener: QUICListener, data: bytes) -> QUICConnection | None:
    """The established connection a short-header datagram is for, read from the
    listener's connection-id registry without its lock (nothing awaits in between), or
    ``None``: anything else (long headers, unknown ids) takes py-libp2p's routing."""
    if len(data) <= CID_LENGTH or data[0] & 0x80:
        return None
    connections = getattr(listener._registry, "_connections", None)
    if not isinstance(connections, dict):
        return None
    connection = connections.get(data[1 : 1 + CID_LENGTH])
    if isinstance(connection, QUICConnection) and not connection._closed:
        return connection
    return None


async def _handle_incoming_packets(self: QUICListener) -> None:
    """The listener's receive loop: a batch of datagrams is routed, datagrams for
    established connections are fed to aioquic at once, and each connection then
    processes its events and transmits once for the whole batch."""
    try:
        while self._listening and self._socket:
            try:
                first = await self._socket.recvfrom(_RECEIVE_SIZE)
                batch = _drain(_raw(self._socket), first)
                touched: dict[int, QUICConnection] = {}
                setattr(self, _BATCH, touched)
                try:
                    for data, addr in batch:
                        connection = _established(self, data)
                        if connection is None:
                            await self._process_packet(data, addr)
                            continue
                        self._stats["packets_processed"] += 1
                        self._stats["bytes_received"] += len(data)
                        await _route_to_connection(self, connection, data, addr)
                finally:
                    setattr(self, _BATCH, None)
                for connection in touched.values():
                    try:
                        connection._signal_activity()
                        await connection._process_quic_events_batched()
                        await connection._transmit()
                    except Exception as e:
                        logger.debug("QUIC routing error: %s", e)
                        await self._remove_connection_by_addr(connection._remote_addr)
            except trio.ClosedResourceError:
                break
            except Exception as e:
                logger.debug("QUIC listener receive error: %s", e)
                await trio.sleep(0.01)
    finally:
        logger.debug("QUIC listener packet loop ended")


_original_route = QUICListener._route_to_connection


async def _route_to_connection(
    self: QUICListener, connection: QUICConnection, data: bytes, addr: tuple[str, int]
) -> None:
    """Inside a batch, feed the datagram to aioquic and leave the events and the
    answer to the end of the batch; outside one, py-libp2p's routing."""
    touched: dict[int, QUICConnection] | None = getattr(self, _BATCH, None)
    if touched is None:
        await _original_route(self, connection, data, addr)
        return
    try:
        connection._quic.receive_datagram(data, addr, now=time.time())
        touched[id(connection)] = connection
    except Exception as e:
        logger.debug("QUIC routing error from %s: %s", addr, e)
        await self._remove_connection_by_addr(addr)


def fast_quic() -> None:
    """Install the replacements on py-libp2p's QUIC classes (idempotent)."""
    QUICConnection._transmit = _transmit  # type: ignore[method-assign]
    QUICConnection._event_processing_loop = _event_processing_loop  # type: ignore[method-assign]
    QUICConnection._client_packet_receiver = _client_packet_receiver  # type: ignore[method-assign]
    QUICListener._handle_incoming_packets = _handle_incoming_packets  # type: ignore[method-assign]
    QUICListener._route_to_connection = _route_to_connection  # type: ignore[method-assign]
