"""Small helpers shared by the tests."""

from __future__ import annotations

import socket

import pandas as pd


def is_utc(column: pd.Series) -> bool:
    """Whether a DataFrame column holds timezone-aware UTC datetimes."""
    dtype = column.dtype
    return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"


def closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
