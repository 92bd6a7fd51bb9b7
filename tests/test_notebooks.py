"""Every notebook in notebooks/ runs top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


def _kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernelspec for this interpreter, and Jupyter state kept out of the user's home."""
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


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        data = output.get("data", {})
        parts.append(data.get("text/plain", ""))
        parts.append(data.get("text/html", ""))
    return "\n".join(parts)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _kernel_env(tmp_path, monkeypatch)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not any(o.get("output_type") == "error" for o in cell.outputs)
    if path.name == "01_quickstart.ipynb":
        _check_quickstart(notebook)


def _check_quickstart(notebook: nbformat.NotebookNode) -> None:
    cells = {
        cell.source.splitlines()[0]: cell for cell in notebook.cells if cell.cell_type == "code"
    }
    addrs = _text(cells["b.addrs"])
    b_id = addrs.split("/p2p/")[1].split("'")[0]
    assert b_id.startswith("12D3KooW")
    peers = _text(cells["a.peers()"])
    assert b_id[:40] in peers, peers  # pandas shortens long cells
    assert "True" in peers, peers
    assert "direct" in peers, peers
    rtts = _text(cells["rtts = a.ping(b.peer_id, count=5)"])
    numbers = [float(x) for x in rtts.strip().strip("[]").split(",")]
    assert len(numbers) == 5 and all(n > 0 for n in numbers)
    awaited = _text(cells["await a.aio.ping(b.peer_id, count=3)"])
    assert len(awaited.strip().strip("[]").split(",")) == 3
    assert "active_connections=1" in _text(cells["a.metrics()"])
    assert "/noise" in _text(cells["a.connections()"])
    assert "stopped" in _text(cells["a.stop()"])
