"""The notebook dashboard (ucsdk.widgets) on real nodes over loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import ucsdk
from ucsdk import errors
from ucsdk.lab.scenarios import wait_until
from ucsdk.widgets import NodeDashboard


def _dashboard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ucsdk-dashboard")]


# No mDNS and no pubsub discovery (other nodes on this machine stay out of these tables),
# no AutoNAT (its dial-backs come from a separate peer id), no DHT (its table scan adds the
# source "dht" to peers a few seconds later): an idle node is really idle.
QUIET = {
    "enable_mdns": False,
    "enable_pubsub_discovery": False,
    "enable_autonat": False,
    "enable_dht_discovery": False,
}


@pytest.fixture
def pair() -> Iterator[tuple[ucsdk.Node, ucsdk.Node]]:
    with ucsdk.Node.development(**QUIET) as a, ucsdk.Node.development(**QUIET) as b:
        yield a, b
    assert wait_until(lambda: not _dashboard_threads(), 5), _dashboard_threads()


def test_the_dashboard_shows_real_peers_metrics_and_events(
    pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, b = pair
    board = a.widget(refresh=0.2)
    assert isinstance(board, NodeDashboard)
    assert a.peer_id in board.identity.value
    assert all(addr in board.identity.value for addr in a.addrs)
    assert "no peers yet" in board.peer_table.value
    assert "NAT: unknown" in board.nat.value and "confidence 0/3" in board.nat.value
    a.connect(b.addrs[0])
    a.ping(b.peer_id, count=2)
    assert board.refresh()
    assert b.peer_id in board.peer_table.value
    assert "<td>direct</td>" in board.peer_table.value
    assert board.counts.value.endswith("1 direct · 0 relay | tcp 1")
    assert "ucsdk-metric-active_connections'>1<" in board.metrics_table.value
    assert "ucsdk-metric-total_connections_established'>1<" in board.metrics_table.value
    assert "connected" in board.event_log.value
    assert list(board.ping_target.options) == [b.peer_id]
    board.close()


def test_an_idle_node_sends_nothing_and_a_busy_one_is_rate_limited(
    pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, b = pair
    a.connect(b.addrs[0])
    # Settled: identify has answered (the agent version is known), and the metrics history
    # (sampled every second; the sparklines draw it) has a sample with the connection.
    assert wait_until(lambda: a.peers()["agent_version"].notna().all(), 10)
    assert wait_until(lambda: a.metrics_history()["active_connections"].iloc[-1] == 1, 5)
    time.sleep(0.5)
    board = a.widget(refresh=0.5)
    assert board.refresh()
    sent: list[float] = []
    board.peer_table.observe(lambda _: sent.append(time.monotonic()), "value")
    before = board.redraws
    time.sleep(1.5)
    assert board.redraws == before, "an idle node's dashboard re-sent unchanged parts"
    # Busy: every ping changes the peer's rtt_ms, many times a second.
    pings = 0
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        a.ping(b.peer_id, count=1)
        pings += 1
    elapsed = time.monotonic() - start
    assert pings > 20
    assert 2 <= len(sent) <= elapsed / 0.5 + 2, (len(sent), pings)
    board.close()


def test_connect_box_and_ping_button(pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = pair
    board = a.widget(refresh=0.2)
    board.connect_button.click()
    assert board.refresh()
    assert "type a multiaddr" in board.status.value
    board.address.value = "/ip4/127.0.0.1/tcp/notaport"
    board.connect_button.click()
    assert board.refresh()
    assert "connect failed" in board.status.value and "notaport" in board.status.value
    board.address.value = b.addrs[0]
    board.connect_button.click()
    assert wait_until(lambda: "connected to" in board.status.value, 10)
    assert b.peer_id in board.status.value
    assert a.peers().set_index("peer_id").loc[b.peer_id, "connected"]
    assert wait_until(lambda: list(board.ping_target.options) == [b.peer_id], 10)
    assert board.ping_target.value == b.peer_id  # the only connected peer is preselected
    board.ping_button.click()
    assert wait_until(lambda: board.status.value.startswith("ping "), 10)
    assert board.status.value.endswith(" ms")
    rtts = board.status.value.split("</code>: ")[1].removesuffix(" ms").split(", ")
    assert len(rtts) == 3 and all(float(r) > 0 for r in rtts)
    board.close()


def test_stopping_the_node_stops_the_dashboard_at_once() -> None:
    node = ucsdk.Node.development()
    board = node.show(refresh=0.5)  # outside a notebook, display() prints the repr
    assert board.running
    node.stop()
    assert not board.running
    assert not _dashboard_threads()
    assert "node stopped" in board.status.value
    board.close()


def test_closing_the_dashboard_leaves_the_node_running(
    pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, _ = pair
    board = a.widget()
    parts = [board.peer_table, board.metrics_table, board.connect_button]
    board.close()
    assert not board.running and not _dashboard_threads()
    assert all(part.comm is None for part in [board, *parts])
    assert a.running and a.ping
    assert board.refresh() is False
    assert a._stop_hooks == []


def test_bad_arguments_are_named() -> None:
    with ucsdk.Node.development() as node:
        for bad in (0, 0.05, "fast", True):
            with pytest.raises(errors.InvalidInput, match="refresh"):
                node.widget(refresh=bad)  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidInput, match="max_events"):
            node.widget(max_events=0)
        assert not _dashboard_threads()


def test_the_nat_traversal_section_is_shown_when_traversal_is_on() -> None:
    with ucsdk.Node.development() as node:
        assert node.config.enable_dcutr
        board = node.widget()
        assert board.traversal in board.children
        assert "hole punches (DCUtR)" in board.traversal.value
        assert "relay reservations" in board.traversal.value
        board.close()
    off = {"enable_dcutr": False, "enable_relay_client": False, "enable_relay_server": False}
    with ucsdk.Node.development(**off) as node:
        board = node.widget()
        assert board.traversal not in board.children
        board.close()


def test_reprs_are_informative(pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = pair
    a.connect(b.addrs[0])
    assert repr(a).startswith(f"<ucsdk.Node {a.peer_id} running: ")
    assert "1 connections" in repr(a)
    page = a._repr_html_()
    assert a.peer_id in page and "active_connections" in page
    peer = next(p for p in a.get_discovered_peers() if p.peer_id == b.peer_id)
    assert "connected (direct, tcp)" in peer._repr_html_()
    assert "nat_confidence" in a.metrics()._repr_html_()


def test_the_peer_table_is_capped_connected_peers_first(
    pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, b = pair
    with ucsdk.Node.development(**QUIET) as c:
        a.connect(b.addrs[0])
        c.connect(a.addrs[0])
        a.disconnect(b.peer_id)
        assert wait_until(lambda: int(a.peers()["connected"].sum()) == 1, 10)
        board = a.widget(max_peers=1)
        assert c.peer_id in board.peer_table.value
        assert b.peer_id not in board.peer_table.value
        assert "and 1 more" in board.peer_table.value
        board.close()
