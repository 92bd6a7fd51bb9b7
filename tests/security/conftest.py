"""Fixtures of the security tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _victim import Victim


@pytest.fixture
def victim() -> Iterator[Victim]:
    """A TCP socket on 127.0.0.1 that counts the connections made to it."""
    v = Victim()
    try:
        yield v
    finally:
        v.close()
