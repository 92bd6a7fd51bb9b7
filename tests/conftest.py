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


@pytest.fixture
def lab_required() -> None:
    """Skip (saying why) where the NAT lab cannot run: it needs root, ip, nft and tc.

    With UCSDK_REQUIRE_LAB=1 (set by CI, which runs as root) a missing requirement fails.
    """
    import os

    from ucsdk import errors
    from ucsdk.lab import check_requirements

    try:
        check_requirements()
    except errors.LabUnavailable as exc:
        if os.environ.get("UCSDK_REQUIRE_LAB") == "1":
            pytest.fail(f"UCSDK_REQUIRE_LAB=1 but {exc}")
        pytest.skip(str(exc))
