"""Pictures (ucsdk.graph, ucsdk.plots, the live graph view) drawn from real nodes on
loopback; the lab's picture of a hole punch is in tests/nat/test_pictures_lab.py."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import ucsdk
from ucsdk import errors, graph, plots
from ucsdk.lab.scenarios import wait_until
from ucsdk.progress import wanted

QUIET = {
    "enable_mdns": False,
    "enable_pubsub_discovery": False,
    "enable_autonat": False,
    "enable_dht_discovery": False,
    "transports": ["tcp", "quic"],
}


def _graph_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ucsdk-graph")]


@pytest.fixture
def trio_of_nodes() -> Iterator[tuple[ucsdk.Node, ucsdk.Node, ucsdk.Node]]:
    with (
        ucsdk.Node.development(**QUIET) as a,
        ucsdk.Node.development(**QUIET) as b,
        ucsdk.Node.development(**QUIET) as c,
    ):
        yield a, b, c
    assert wait_until(lambda: not _graph_threads(), 5), _graph_threads()


def _edges(svg: str) -> list[dict[str, str]]:
    root = ET.fromstring(svg)
    return [
        {k.removeprefix("data-"): v for k, v in el.attrib.items() if k.startswith("data-")}
        | {"class": el.attrib["class"]}
        for el in root.iter()
        if "ucsdk-edge" in el.attrib.get("class", "")
    ]


def test_a_nodes_picture_has_its_peers_and_a_link_per_transport(
    trio_of_nodes: tuple[ucsdk.Node, ucsdk.Node, ucsdk.Node], tmp_path: Path
) -> None:
    a, b, c = trio_of_nodes
    a.connect(next(x for x in b.addrs if "/tcp/" in x))
    a.connect(next(x for x in c.addrs if "/quic-v1" in x))
    picture = graph.node_graph(a.peer_id, a.connections())
    assert picture.counts() == {"nodes": 3, "direct": 2, "relayed": 0, "wire": 0}
    edges = {e["target"]: e for e in _edges(picture.to_svg())}  # valid XML, too
    assert edges[b.peer_id]["transport"] == "tcp" and edges[c.peer_id]["transport"] == "quic"
    assert all(e["class"] == "ucsdk-edge ucsdk-edge-direct" for e in edges.values())
    saved = picture.save(tmp_path / "a.svg")
    assert saved.read_text().startswith("<svg")
    with pytest.raises(errors.InvalidInput, match="path"):
        picture.save(tmp_path / "a.png")


def test_the_live_view_follows_the_node_redraws_only_on_change_and_stops_with_it(
    trio_of_nodes: tuple[ucsdk.Node, ucsdk.Node, ucsdk.Node],
) -> None:
    a, b, c = trio_of_nodes
    view = a.graph(refresh=0.2)
    assert view.graph.counts()["nodes"] == 1  # only a, so far
    a.connect(b.addrs[0])
    assert wait_until(lambda: b.peer_id in view.value, 5), view.value[:200]
    assert view.refresh()
    before = view.redraws
    time.sleep(1.0)  # five ticks with nothing new: nothing sent
    assert view.redraws == before
    c.connect(a.addrs[0])
    assert wait_until(lambda: view.graph.counts()["direct"] == 2, 5), view.graph.counts()
    assert view.redraws == before + 1
    a.stop()
    assert wait_until(lambda: not view.running, 5)
    with pytest.raises(errors.InvalidInput, match="refresh"):
        b.graph(refresh=0.01)


def test_plots_from_a_real_history_and_bad_frames_named(
    trio_of_nodes: tuple[ucsdk.Node, ucsdk.Node, ucsdk.Node], tmp_path: Path
) -> None:
    a, b, _ = trio_of_nodes
    a.connect(b.addrs[0])
    assert wait_until(lambda: len(a.metrics_history()) >= 3, 10)
    fig = a.metrics_history().ucsdk.plot()
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == list(plots.METRIC_LINES)
    assert max(lines[0].get_ydata()) == 1  # the connection to b
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    fig.savefig(tmp_path / "m.svg")
    assert (tmp_path / "m.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(errors.InvalidInput, match="relayed_rtt_ms"):
        plots.rtt(pd.DataFrame({"success": [True]}))
    with pytest.raises(errors.InvalidInput, match="kind"):
        a.metrics_history().ucsdk.plot("pie")
    with pytest.raises(errors.InvalidInput, match="frame"):
        pd.DataFrame({"x": [1]}).ucsdk.plot()


def test_the_heatmap_has_one_panel_per_transport_with_shared_axes() -> None:
    rates = pd.DataFrame(
        {
            "dialer_nat": ["cone", "cone", "symmetric"],
            "target_nat": ["cone", "symmetric", "symmetric"],
            "transport": ["tcp", "tcp", "quic"],
            "success_rate": [1.0, 0.0, 0.5],
            "trials": [3, 3, 2],
        }
    )
    fig = plots.success_heatmap(rates)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["quic", "tcp"]
    for ax in panels:  # the same rows and columns in each
        assert [t.get_text() for t in ax.get_yticklabels()] == ["cone", "symmetric"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["cone", "symmetric"]
    texts = {t.get_text() for t in panels[1].texts}
    assert {"100%\nn=3", "0%\nn=3", "—"} <= texts


def test_the_dashboard_shows_the_picture_and_a_calm_placeholder(
    trio_of_nodes: tuple[ucsdk.Node, ucsdk.Node, ucsdk.Node],
) -> None:
    a, b, _ = trio_of_nodes
    a.connect(b.addrs[0])
    board = a.widget(refresh=0.2)
    try:
        assert board.refresh()
        assert b.peer_id in board.graph_view.value and "ucsdk-edge-direct" in board.graph_view.value
        assert board.alerts.value == ""  # every service runs
    finally:
        board.close()
    with ucsdk.Node.development(**QUIET, enable_dcutr=True) as d:
        board = d.widget()
        try:
            assert "— (no hole punch yet)" in board.traversal.value
            assert "0% of 0" not in board.traversal.value
        finally:
            board.close()


def test_progress_is_shown_where_someone_can_see_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UCSDK_PROGRESS", raising=False)
    assert wanted(True) and not wanted(False)
    monkeypatch.setenv("UCSDK_PROGRESS", "1")
    assert wanted()
    monkeypatch.setenv("UCSDK_PROGRESS", "0")
    assert not wanted()
