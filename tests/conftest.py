"""Shared fixtures: real nodes on loopback."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ucsdk


@pytest.fixture
def node_pair() -> Iterator[tuple[ucsdk.Node, ucsdk.Node]]:
    """Two running development nodes (loopback only), not yet connected.

    Without mDNS, which would also find every other node running on this machine.
    """
    a = ucsdk.Node.development(enable_mdns=False)
    b = ucsdk.Node.development(enable_mdns=False)
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


@pytest.fixture
def jupyter_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jupyter state kept out of the user's home, and a kernelspec for this interpreter.

    Set in ``os.environ``, so kernels and servers started by the test inherit it.
    """
    for name in ("HOME", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        path = tmp_path / name.lower()
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    spec_dir = tmp_path / "kernels" / "share" / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ucsdk)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "kernels" / "share" / "jupyter"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
