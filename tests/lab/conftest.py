"""Every test here needs the NAT lab (see the ``lab_required`` fixture) and is marked
``lab``, so ``make test`` runs it in the lab run, never beside it in the loopback run (a
lab starting there would clean up the namespaces another lab test is looking at)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(autouse=True)
def _lab_available(lab_required: None) -> None:
    """Skip or fail, as ``lab_required`` decides, before each lab test."""
