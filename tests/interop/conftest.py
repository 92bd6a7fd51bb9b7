"""The js-libp2p side of the interop tests: Node.js, npm and the pinned packages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.interop._ucjs import JsUnavailable, js_setup


@pytest.fixture(scope="session")
def js_ready() -> Path:
    """``tests/interop/js`` with its npm packages installed; skips saying why when Node.js
    or npm is missing, and fails instead with UCSDK_REQUIRE_NODE=1 (set by CI)."""
    try:
        return js_setup()
    except JsUnavailable as exc:
        if os.environ.get("UCSDK_REQUIRE_NODE") == "1":
            pytest.fail(f"UCSDK_REQUIRE_NODE=1 but {exc}")
        pytest.skip(f"the js-libp2p interop tests: {exc}")
