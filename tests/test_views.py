"""The node's self-views on real nodes over loopback: services(), addresses(),
dial_attempts(), and the dashboard's Services part."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pandas as pd
import pytest
from _util import closed_port, is_utc

import ucsdk
from ucsdk import errors
from ucsdk.frames import ADDRESS_COLUMNS, DIAL_ATTEMPT_COLUMNS, SERVICE_COLUMNS
from ucsdk.identity import new_key_pair, peer_id_of
from ucsdk.lab.scenarios import wait_until
from ucsdk.widgets import service_list

# 192.0.2.0/24 (TEST-NET-1) is on no interface of any machine: joining the mDNS multicast
# group there fails (ENODEV), so the node starts with its mdns service "failed".
NO_SUCH_INTERFACE = "192.0.2.1"
RED = "color:#cf222e"


def _stranger() -> str:
    """The peer id of a node that does not exist."""
    return peer_id_of(new_key_pair())


def _expected_services(config: ucsdk.ConnectivityConfig) -> list[str]:
    optional = [
        ("streams", True),
        ("gossipsub", config.enable_pubsub),
        ("pubsub", config.enable_pubsub_discovery),
        ("dht", config.enable_dht_discovery),
        ("relay_server", config.enable_relay_server),
        ("relay_client", config.enable_relay_client),
        ("dcutr", config.enable_dcutr),
        ("autonat", config.enable_autonat),
        ("autonat_v2", config.enable_autonat and config.enable_autonat_v2),
        ("mdns", config.enable_mdns),
    ]
    return ["manager", "identify", "dialer", "nat", *[name for name, on in optional if on]]


def _dashboard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ucsdk-dashboard")]


@pytest.fixture
def pair() -> Iterator[tuple[ucsdk.Node, ucsdk.Node]]:
    with (
        ucsdk.Node.development(enable_mdns=False) as a,
        ucsdk.Node.development(enable_mdns=False) as b,
    ):
        yield a, b
    assert wait_until(lambda: not _dashboard_threads(), 5), _dashboard_threads()


# ---------------------------------------------------------------------------- services
def test_services_lists_every_enabled_service_running(
    pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, _ = pair
    frame = a.services(timeout=5)
    assert list(frame.columns) == list(SERVICE_COLUMNS)
    assert list(frame["name"]) == _expected_services(a.config)
    assert "mdns" not in set(frame["name"])
    assert set(frame["state"]) == {"running"}, frame
    assert isinstance(frame["state"].dtype, pd.CategoricalDtype)
    assert frame["restarts"].dtype == "int64" and (frame["restarts"] == 0).all()
    assert is_utc(frame["started_at"]) and frame["started_at"].notna().all()
    assert is_utc(frame["last_error_at"]) and frame["last_error_at"].isna().all()
    assert frame["last_error"].isna().all()
    # The same rows through node.aio.
    rows = asyncio.run(a.aio.services(timeout=5))
    assert list(rows["name"]) == list(frame["name"])


def test_after_stop_the_views_raise_node_stopped() -> None:
    node = ucsdk.Node.development(enable_mdns=False)
    assert set(node.services()["state"]) == {"running"}
    node.stop()
    # Stopped services are never seen: a stopped node answers nothing (like peers()).
    for call in (node.services, node.addresses, node.dial_attempts, node.peers):
        with pytest.raises(errors.NodeStopped):
            call()
    for coroutine in (node.aio.services, node.aio.addresses, node.aio.dial_attempts):
        with pytest.raises(errors.NodeStopped):
            asyncio.run(coroutine())


def test_a_service_that_cannot_start_is_failed_with_its_error() -> None:
    with ucsdk.Node.development(mdns_interfaces=[NO_SUCH_INTERFACE]) as node:
        frame = node.services().set_index("name")
        assert frame.loc["mdns", "state"] == "failed"
        assert frame.loc["mdns", "last_error"].startswith("OSError(")
        assert pd.notna(frame.loc["mdns", "last_error_at"])
        assert pd.isna(frame.loc["mdns", "started_at"])
        others = frame.drop(index="mdns")
        assert set(others["state"]) == {"running"}
        events = node.events()
        failed = events[events["kind"] == "service_failed"]
        assert list(failed["detail"]) == [f"mdns: {frame.loc['mdns', 'last_error']}"]


# ---------------------------------------------------------------------------- addresses
def test_addresses_lists_the_loopback_listeners(pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, _ = pair
    frame = a.addresses(timeout=5)
    assert list(frame.columns) == list(ADDRESS_COLUMNS)
    listen = frame[frame["kind"] == "listen"]
    assert len(listen) >= 1
    assert all(addr.startswith("/ip4/127.0.0.1/tcp/") for addr in listen["addr"])
    assert set(listen["scope"]) == {"loopback"}
    assert listen["confirmed"].all()
    # Every address a.addrs gives out is a listen row.
    assert {addr.split("/p2p/")[0] for addr in a.addrs} <= set(listen["addr"])
    assert isinstance(frame["kind"].dtype, pd.CategoricalDtype)
    assert isinstance(frame["scope"].dtype, pd.CategoricalDtype)
    assert frame["observers"].dtype == "int64"
    assert frame["confirmed"].dtype == bool and frame["advertised"].dtype == bool
    assert is_utc(frame["last_seen"])
    assert list(asyncio.run(a.aio.addresses())["addr"]) == list(frame["addr"])


# ------------------------------------------------------------------------ dial attempts
def test_a_connect_is_recorded_as_a_connected_tcp_attempt(
    pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, b = pair
    empty = a.dial_attempts()
    assert list(empty.columns) == list(DIAL_ATTEMPT_COLUMNS) and len(empty) == 0
    a.connect(b.addrs[0])
    frame = a.dial_attempts(timeout=5)
    rows = frame[frame["peer_id"] == b.peer_id]
    assert len(rows) == 1, rows
    row = rows.iloc[0]
    assert row["outcome"] == "connected"
    assert row["transport"] == "tcp"
    assert row["addr"] == b.addrs[0].split("/p2p/")[0]
    assert not row["relayed"]
    assert row["ms"] > 0 and row["started_ms"] >= 0
    assert pd.isna(row["error"])
    assert isinstance(frame["outcome"].dtype, pd.CategoricalDtype)
    assert isinstance(frame["transport"].dtype, pd.CategoricalDtype)
    assert frame["ms"].dtype == "float64" and frame["started_ms"].dtype == "float64"
    assert frame["dial_id"].dtype == "int64" and frame["relayed"].dtype == bool
    assert is_utc(frame["at"])
    # b accepted the connection; it dialled nothing.
    assert b.peer_id not in set(b.dial_attempts()["peer_id"])
    assert list(asyncio.run(a.aio.dial_attempts())["dial_id"]) == list(frame["dial_id"])


def test_a_dial_to_a_closed_port_is_a_failed_attempt_with_its_error(
    pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, _ = pair
    stranger = _stranger()
    addr = f"/ip4/127.0.0.1/tcp/{closed_port()}"
    with pytest.raises(errors.DialError):
        a.connect(f"{addr}/p2p/{stranger}")
    frame = a.dial_attempts()
    rows = frame[frame["peer_id"] == stranger]
    assert len(rows) == 1, rows
    row = rows.iloc[0]
    assert row["outcome"] == "failed" and row["addr"] == addr and row["transport"] == "tcp"
    assert isinstance(row["error"], str) and row["error"].strip()
    assert row["ms"] >= 0


def test_an_address_of_a_transport_not_enabled_is_skipped(
    pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, _ = pair
    assert "websocket" not in a.config.transports
    stranger = _stranger()
    ws = f"/ip4/127.0.0.1/tcp/{closed_port()}/ws"
    assert a.dial_peer(stranger, addrs=[ws]) is False
    frame = a.dial_attempts()
    rows = frame[frame["peer_id"] == stranger]
    assert len(rows) == 1, rows
    row = rows.iloc[0]
    assert row["outcome"] == "skipped" and row["addr"] == ws
    assert row["transport"] == "websocket"
    assert "not enabled" in row["error"]
    assert pd.isna(row["ms"])


def test_attempts_of_one_dial_share_its_dial_id(pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = pair
    stranger = _stranger()
    closed = f"/ip4/127.0.0.1/tcp/{closed_port()}"
    assert a.dial_peer(stranger, addrs=[closed, f"{closed}/ws"]) is False
    a.connect(b.addrs[0])
    frame = a.dial_attempts()
    first = frame[frame["peer_id"] == stranger]
    assert sorted(first["outcome"]) == ["failed", "skipped"]
    assert first["dial_id"].nunique() == 1
    second = frame[frame["peer_id"] == b.peer_id]
    assert second["dial_id"].iloc[0] > first["dial_id"].iloc[0]


# -------------------------------------------------------------------------- dashboard
def test_the_dashboard_lists_the_services(pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, _ = pair
    board = a.widget(refresh=0.2)
    assert board.refresh()
    shown = board.service_list.value
    assert "ucsdk-services" in board.service_list._dom_classes
    for name in _expected_services(a.config):
        assert f"<b>{name}</b> running" in shown
    assert shown.count("ucsdk-service-running") == len(_expected_services(a.config))
    assert "ucsdk-service-failed" not in shown and RED not in shown
    board.close()


def test_a_failed_service_is_red_on_the_dashboard_with_its_error() -> None:
    with ucsdk.Node.development(mdns_interfaces=[NO_SUCH_INTERFACE]) as node:
        error = node.services().set_index("name").loc["mdns", "last_error"]
        board = node.widget(refresh=0.2)
        assert board.refresh()
        lines = board.service_list.value.split("</div>")
        mdns = [line for line in lines if "<b>mdns</b>" in line]
        assert len(mdns) == 1
        assert "ucsdk-service-failed" in mdns[0] and RED in mdns[0]
        assert "failed: OSError(" in mdns[0]
        assert error.split("(")[0] in mdns[0]
        running = [line for line in lines if "ucsdk-service-running" in line]
        assert running and all(RED not in line for line in running)
        # The failure stays on screen, and an unchanged list is not sent again.
        sent: list[str] = []
        board.service_list.observe(lambda change: sent.append(change["new"]), "value")
        assert board.refresh() and board.refresh()
        assert sent == [] and board.service_list.value == "</div>".join(lines)
        board.close()
    assert wait_until(lambda: not _dashboard_threads(), 5)


def test_service_list_marks_restarting_services_red() -> None:
    frame = pd.DataFrame(
        {
            "name": ["pubsub", "dht"],
            "state": ["restarting", "running"],
            "restarts": [2, 0],
            "last_error": ["RuntimeError('boom <b>')", None],
        }
    )
    shown = service_list(frame)
    restarting, running = shown.split("</div>")[:2]
    assert "ucsdk-service-restarting" in restarting and RED in restarting
    assert "(restarted 2×)" in restarting
    assert "RuntimeError(&#x27;boom &lt;b&gt;&#x27;)" in restarting  # escaped
    assert "ucsdk-service-running" in running and RED not in running
    assert "no services" in service_list(frame.iloc[0:0])


# --------------------------------------------------------------------------------- lab
@pytest.mark.lab
def test_lab_nodes_answer_the_three_views(lab_required: None) -> None:
    import ucsdk.lab

    with ucsdk.lab.Lab("views") as lab:
        one = lab.add_public_host("one")
        two = lab.add_public_host("two")
        lab.wait_ready()
        assert one.node is not None and two.node is not None
        services = one.node.services()
        assert list(services.columns) == list(SERVICE_COLUMNS)
        assert list(services["name"][:3]) == ["manager", "identify", "dialer"]
        assert set(services["state"]) == {"running"}
        addresses = one.node.addresses()
        assert list(addresses.columns) == list(ADDRESS_COLUMNS)
        listen = addresses[addresses["kind"] == "listen"]
        assert any(f"/ip4/{one.public_ip}/tcp/" in addr for addr in listen["addr"]), addresses
        one.node.connect(two.multiaddr("tcp"))
        attempts = one.node.dial_attempts()
        assert list(attempts.columns) == list(DIAL_ATTEMPT_COLUMNS)
        row = attempts[attempts["peer_id"] == two.node.peer_id].iloc[-1]
        assert row["outcome"] == "connected" and row["ms"] > 0
