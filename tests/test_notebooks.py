"""Every notebook in notebooks/ runs top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# The notebooks that build a NAT lab: marked ``lab``, so they run in the lab's test stream.
LAB_NOTEBOOKS = {"03_nat_traversal_lab.ipynb", "06_why_cant_i_reach.ipynb", "07_campaign.ipynb"}


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS
    assert {p.name for p in NOTEBOOKS} >= LAB_NOTEBOOKS  # a renamed lab notebook stays marked


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
@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.name, marks=[pytest.mark.lab] if p.name in LAB_NOTEBOOKS else [])
        for p in NOTEBOOKS
    ],
)
def test_notebook_runs(
    path: Path, tmp_path: Path, jupyter_env: None, request: pytest.FixtureRequest
) -> None:
    if path.name in LAB_NOTEBOOKS:
        request.getfixturevalue("lab_required")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=150,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    _print_cell_times(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not any(o.get("output_type") == "error" for o in cell.outputs)
    checks = {
        "01_quickstart.ipynb": _check_quickstart,
        "02_discovery.ipynb": _check_discovery,
        "03_nat_traversal_lab.ipynb": _check_lab,
        "04_dashboard.ipynb": _check_dashboard,
        "05_chat.ipynb": _check_chat,
        "06_why_cant_i_reach.ipynb": _check_why,
        "07_campaign.ipynb": _check_campaign,
    }
    checks[path.name](notebook)


def _print_cell_times(notebook: nbformat.NotebookNode) -> None:
    """Each code cell's run time (from nbclient's timing record), shown by ``pytest -s`` or on
    failure: where a slow notebook spends its time."""
    from datetime import datetime

    for cell in notebook.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.cell_type == "code" and start and end:
            seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
            print(f"{seconds:7.2f} s  {cell.source.splitlines()[0] if cell.source else ''}")


def _cells(notebook: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """Code cells by their first line."""
    return {
        cell.source.splitlines()[0]: cell for cell in notebook.cells if cell.cell_type == "code"
    }


def _has_png(cell: nbformat.NotebookNode) -> bool:
    """Whether the cell shows a picture (a figure from ucsdk.plots)."""
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def _counts(cell: nbformat.NotebookNode) -> dict[str, int]:
    """A ``graph.counts()`` cell's value."""
    import ast

    value = ast.literal_eval(_text(cell).strip())
    assert isinstance(value, dict), value
    return value


def _widget_values(notebook: nbformat.NotebookNode) -> list[str]:
    """The ``value`` of every widget in the widget state nbclient saved."""
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [str(w["state"].get("value", "")) for w in state.values()]


def _check_discovery(notebook: nbformat.NotebookNode) -> None:
    cells = _cells(notebook)
    assert _text(cells["def everyone_found() -> bool:"]).strip() == "True"
    pivot = _text(cells["rows = []"])
    assert pivot.count("pubsub") >= 5 * 4, pivot  # each n-node found the 4 others by pubsub
    mdns = _text(cells['quiet = {"enable_pubsub_discovery": False, "mdns_query_interval": 1.0}'])
    assert "mdns" in mdns, mdns
    # n0's picture: itself and a direct link to each node it holds a connection to.
    counts = _counts(cells["view.graph.counts()"])
    assert counts["direct"] >= counts["nodes"] - 1 >= 1 and counts["relayed"] == 0, counts
    metrics = next(c for first, c in cells.items() if first.startswith("ucsdk.plots.metrics("))
    assert _has_png(metrics), "no metrics plot"


def _check_lab(notebook: nbformat.NotebookNode) -> None:
    cells = _cells(notebook)
    autonat = _text(cells["for h in (alice, bob, carol, dave):"])
    assert "private" in autonat, autonat
    punch = _text(cells["from ucsdk.lab.scenarios import circuit_addr"])
    assert "success" in punch, punch
    carol = _text(cells["alice.node.connect(circuit_addr(carol, relay))"])
    assert "symmetric NAT" in carol and "failed" in carol, carol
    rates = _text(cells["trials = pd.concat("])
    assert "port_restricted" in rates and "symmetric" in rates and "double" in rates, rates
    assert "stopped)" in _text(cells["board.refresh()"])
    # The lab picture: 5 hosts, their 5 routers (dave's two), the internet; cables; and
    # at least alice–bob's direct link (the punch) among the live connections.
    counts = _counts(cells["lab_view.refresh()"])
    assert counts["nodes"] == 5 + 5 + 1 and counts["wire"] == 5 + 5, counts
    assert counts["direct"] >= 1, counts
    for first in (
        "success_rates(trials).ucsdk.plot()",
        "ucsdk.plots.time_to_direct(trials)",
        "ucsdk.plots.rtt(trials)",
    ):
        assert _has_png(cells[first]), first
    assert any("ucsdk-network" in v and "ucsdk-edge-direct" in v for v in _widget_values(notebook))
    # bob's dashboard ended with the lab and shows its hole punches
    assert any("hole punches (DCUtR)" in v and "success" in v for v in _widget_values(notebook))


def _check_why(notebook: nbformat.NotebookNode) -> None:
    cells = _cells(notebook)
    types = _text(cells["for h in peers:"])
    for host, nat, judged in (
        ("alice", "port_restricted", "endpoint_independent"),
        ("bob", "port_restricted", "endpoint_independent"),
        ("carol", "symmetric", "endpoint_dependent"),
        ("fwd", "port_forwarded", "port_forwarded"),
    ):
        assert re.search(rf"{host}\s+{nat}\s+{judged}", types), types
    assert "symmetric" in _text(cells["carol.node.nat_type()"])
    reach = _text(cells['pd.concat([fwd.node.reachability().assign(host="fwd"),'])
    assert "public" in reach and "private" in reach, reach
    assert "reachable directly" in _text(
        cells["d = alice.node.diagnose(bob.node.peer_id, probe=True, timeout=20)"]
    )
    assert "relay only" in _text(
        cells["print(alice.node.diagnose(carol.node.peer_id, probe=True, timeout=20))"]
    )
    carol = _text(cells["print(carol.node.diagnose(alice.node.peer_id, probe=True, timeout=20))"])
    assert "this node is behind a NAT that maps each destination" in carol, carol
    table = _text(cells["def kind(verdict):"])
    assert "False" not in table and "True" in table, table


def _check_dashboard(notebook: nbformat.NotebookNode) -> None:
    values = _widget_values(notebook)
    peer_tables = [v for v in values if "ucsdk-peer-table" in v]
    assert peer_tables, "no peer table in the saved widget state"
    addrs = _text(_cells(notebook)["d = ucsdk.Node.development()"])
    assert "/p2p/12D3KooW" in addrs
    metrics = next(v for v in values if "ucsdk-metric-active_connections" in v)
    assert "ucsdk-metric-total_connections_established'>0<" not in metrics
    assert _text(_cells(notebook)["board.refresh()"]).strip() == "True"
    # a's picture: b, c (inbound) and d (if the box was used) around a, direct links.
    counts = _counts(_cells(notebook)["view.refresh()"])
    assert counts["direct"] >= 2 and counts["relayed"] == 0, counts
    assert _has_png(_cells(notebook)["a.metrics_history().ucsdk.plot()"])
    graphs = [v for v in values if "class='ucsdk-network'" in v]
    assert graphs and all("ucsdk-edge-direct" in g for g in graphs), graphs[:1]


def _check_chat(notebook: nbformat.NotebookNode) -> None:
    cells = _cells(notebook)
    setup = _text(cells["import sys"])
    if os.environ.get("UCSDK_REQUIRE_NODE") == "1":  # CI: the other peer must be js-libp2p
        assert "Node.js is here" in setup, setup
    if "Node.js is here" in setup:
        assert "'tcp'" in _text(
            cells["node = ucsdk.Node.development(enable_mdns=False, **UC_SETTINGS)"]
        )
    assert "'hello from the other peer'" in _text(cells["def other_says(text: str) -> None:"])
    lines = _text(cells['chat.send("hello back from ucsdk")'])
    for text in ("hello from the other peer", "hello back from ucsdk", "a direct message"):
        assert text in lines, lines
    ids = _text(cells['wire = ["time", "from_peer", "received_from", "seqno", "msg_id", "text"]'])
    assert "hello back from ucsdk" in ids, ids
    assert _text(cells["view.refresh()"]).strip() == "True"
    chat_lines = [v for v in _widget_values(notebook) if "ucsdk-chat-line-" in v]
    assert any(
        "the widget shows this one too" in v and "hello back from ucsdk" in v for v in chat_lines
    ), chat_lines


def _check_quickstart(notebook: nbformat.NotebookNode) -> None:
    cells = _cells(notebook)
    addrs = _text(cells["b.addrs"])
    b_id = addrs.split("/p2p/")[1].split("'")[0]
    assert b_id.startswith("12D3KooW")
    peers = _text(cells["a.peers()"])
    assert b_id[:40] in peers, peers  # pandas shortens long cells
    assert "True" in peers, peers
    assert "direct" in peers, peers
    attempts = _text(cells["a.dial_attempts()"])
    assert "connected" in attempts and "/ip4/127.0.0.1/tcp/" in attempts, attempts
    services = _text(cells["a.services()"])
    assert "running" in services and "failed" not in services, services
    assert "loopback" in _text(cells["a.addresses()"])
    rtts = _text(cells["rtts = a.ping(b.peer_id, count=5)"])
    numbers = [float(x) for x in rtts.strip().strip("[]").split(",")]
    assert len(numbers) == 5 and all(n > 0 for n in numbers)
    awaited = _text(cells["await a.aio.ping(b.peer_id, count=3)"])
    assert len(awaited.strip().strip("[]").split(",")) == 3
    metrics = _text(cells["a.metrics()"])
    # One connection to b; b's AutoNAT dial-back host (an identity of its own) may hold a
    # second, short-lived inbound one while the cell runs, so only a lower bound holds.
    active = re.search(r"active_connections=(\d+)", metrics)
    assert active is not None and int(active.group(1)) >= 1, metrics
    assert "total_connections_failed=0" in metrics, metrics
    assert "/noise" in _text(cells["a.connections()"])
    assert "stopped" in _text(cells["a.stop()"])


def _check_campaign(notebook: nbformat.NotebookNode) -> None:
    cells = _cells(notebook)
    attempts = _text(cells["result = run_campaign(scenario, show_progress=False)"])
    assert "tcp" in attempts and "quic" in attempts, attempts
    assert "SUCCESS" in attempts, attempts  # endpoint-independent pairs punch through
    table = _text(cells["table = result.table()"])
    assert "all" in table and "success_rate" in table, table
    comparison = _text(cells["comparison = result.compare_with_field()"])
    assert "70% ± 7.1%" in comparison and "97.6%" in comparison, comparison
    saved = _text(cells['path = result.save("campaign.parquet")'])
    assert "10 attempts; same scenario: True" in saved, saved
    plot = next(c for first, c in cells.items() if first.startswith("ax = result.attempts"))
    assert _has_png(plot), "no outcome plot"
