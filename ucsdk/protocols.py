"""Requests ucsdk makes itself over libp2p streams: ping with precise timing, identify.

py-libp2p's ``PingService`` reports whole milliseconds and its identify does not keep the
agent version, so ucsdk speaks both protocols directly (same wire format).
"""

from __future__ import annotations

import logging
import os
import time

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.peer.id import ID

from ucsdk._multiselect import confirm_protocol
from ucsdk._wire import FramingError, read_delimited, read_exactly

logger = logging.getLogger("UniversalConnectivity")

PING_PROTOCOL = TProtocol("/ipfs/ping/1.0.0")
PING_SIZE = 32
IDENTIFY_MAX_SIZE = 64 * 1024


class PingMismatch(Exception):
    """The remote answered a ping with bytes other than the ones we sent."""


async def ping_rtts(host: IHost, peer_id: ID, count: int) -> list[float]:
    """Ping ``peer_id`` ``count`` times over one stream; round-trip times in milliseconds."""
    stream = await host.new_stream(peer_id, [PING_PROTOCOL])
    rtts: list[float] = []
    try:
        # An optimistically opened stream: the first round trip must not include the
        # protocol's confirmation (ucsdk._multiselect).
        await confirm_protocol(stream)
        for _ in range(count):
            payload = os.urandom(PING_SIZE)
            started = time.perf_counter()
            await stream.write(payload)
            echo = await read_exactly(stream, PING_SIZE)
            rtts.append((time.perf_counter() - started) * 1000.0)
            if echo != payload:
                raise PingMismatch("the echoed bytes differ from those sent")
    except BaseException:
        with trio.CancelScope(shield=True):
            await _quiet(stream.reset())
        raise
    with trio.CancelScope(shield=True):
        await _quiet(stream.close())
    return rtts


async def query_identify(host: IHost, peer_id: ID) -> Identify:
    """Ask ``peer_id`` who it is (``/ipfs/id/1.0.0``); raises on a malformed answer."""
    stream = await host.new_stream(peer_id, [IDENTIFY_PROTOCOL])
    try:
        data = await read_delimited(stream, IDENTIFY_MAX_SIZE)
        message = Identify()
        message.ParseFromString(data)
        return message
    finally:
        with trio.CancelScope(shield=True):
            await _quiet(stream.close())


async def _quiet(awaitable: object) -> None:
    try:
        await awaitable  # type: ignore[misc]
    except Exception as exc:  # closing a stream the remote already reset is not an error
        logger.debug("closing a stream failed: %s", exc)


__all__ = ["PING_PROTOCOL", "FramingError", "PingMismatch", "ping_rtts", "query_identify"]
