"""Every test here needs the NAT lab (see the ``lab_required`` fixture)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _lab_available(lab_required: None) -> None:
    """Skip or fail, as ``lab_required`` decides, before each lab test."""
