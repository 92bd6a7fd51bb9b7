"""The NAT lab's tests need root, ip, nft and tc. They skip, saying why, where those are
missing, unless UCSDK_REQUIRE_LAB=1 (set by CI), which turns the skip into a failure."""

from __future__ import annotations

import os

import pytest

from ucsdk import errors
from ucsdk.lab import check_requirements


@pytest.fixture(autouse=True)
def _lab_available() -> None:
    try:
        check_requirements()
    except errors.LabUnavailable as exc:
        if os.environ.get("UCSDK_REQUIRE_LAB") == "1":
            pytest.fail(f"UCSDK_REQUIRE_LAB=1 but {exc}")
        pytest.skip(str(exc))
