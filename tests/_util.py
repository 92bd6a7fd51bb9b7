"""Small helpers shared by the tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

import ucsdk

T = TypeVar("T")

QUIET_NODE: dict[str, Any] = {
    "enable_mdns": False,
    "enable_autonat": False,
    "enable_dht_discovery": False,
    "enable_pubsub_discovery": False,
}
"""Node settings for a node that makes no traffic of its own (attack tests count traffic)."""


def is_utc(column: pd.Series) -> bool:
    """Whether a DataFrame column holds timezone-aware UTC datetimes."""
    dtype = column.dtype
    return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent PID, ...,
    start time at index 19), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, or a PID that is gone, does not)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def on_loop(node: ucsdk.Node, fn: Callable[[], T]) -> T:
    """``fn()`` run on the node's event-loop thread (its state is only changed there)."""
    return node._snapshot("test", fn)


def wait_for(predicate: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def echo_round_trip(server: ucsdk.Node, client: ucsdk.Node, size: int, timeout: float) -> None:
    """``client`` sends ``size`` random bytes on one stream to an echo handler on
    ``server`` and gets them back unchanged, then the end of the stream (flow control both
    ways on whatever transport connects them)."""
    import os

    async def echo(stream: ucsdk.Stream) -> None:
        async with stream:
            await stream.write(await stream.read_exactly(size))

    server.handle("/test/echo/1", echo)
    payload = os.urandom(size)
    with client.open_stream(server.peer_id, "/test/echo/1") as stream:
        stream.write(payload)
        assert stream.read_exactly(size, timeout=timeout) == payload
        assert stream.read() == b""
