"""The seed document's example programs (docs/examples) run as shown."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _run(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_seed_manager_example() -> None:
    out = _run("seed_manager.py")
    assert "Dial success: True" in out
    assert "Active connections: 1" in out
    assert "NAT status: unknown" in out
    assert "Peers discovered: 1" in out
    assert re.search(r"^Peer: 12D3KooW\w+, Addrs: \('/ip4/127\.0\.0\.1/tcp/\d+',", out, re.M)


def test_seed_complete_example() -> None:
    out = _run("seed_complete.py", "0.5")
    discovered = re.findall(r"^Discovered: (12D3KooW\w+)$", out, re.M)
    connected = re.findall(r"^Connected: (12D3KooW\w+)$", out, re.M)
    assert len(discovered) == 1
    assert connected == discovered
    assert "Active connections: 1" in out


def test_seed_imports() -> None:
    from ucsdk import (  # noqa: F401
        ConnectivityConfig,
        UniversalConnectivityManager,
        setup_universal_connectivity,
    )


def test_from_a_script_page_runs(tmp_path: Path) -> None:
    page = (EXAMPLES.parent / "from-a-script.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "two_nodes.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"median round trip: \d+\.\d{3} ms", result.stdout)
    assert "as expected: could not connect" in result.stdout
    assert "/noise" in result.stdout
