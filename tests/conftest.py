"""Shared fixtures: real nodes on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ucsdk


@pytest.fixture
def node_pair() -> Iterator[tuple[ucsdk.Node, ucsdk.Node]]:
    """Two running development nodes (loopback only), not yet connected."""
    a = ucsdk.Node.development()
    b = ucsdk.Node.development()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def connected_pair(
    node_pair: tuple[ucsdk.Node, ucsdk.Node],
) -> tuple[ucsdk.Node, ucsdk.Node]:
    a, b = node_pair
    a.connect(b.addrs[0])
    return a, b
