"""ConnectivityConfig: the seed's fields, presets, and clear errors for bad values."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest

from ucsdk import IPFS_BOOTSTRAP_PEERS, ConnectivityConfig
from ucsdk.errors import ConfigError, UcsdkError

SEED_FIELDS = {
    "bootstrap_peers",
    "connect_to_bootstrap",
    "enable_mdns",
    "enable_pubsub_discovery",
    "enable_dht_discovery",
    "pubsub_discovery_topics",
    "enable_autonat",
    "enable_relay_client",
    "enable_relay_server",
    "enable_dcutr",
    "max_relay_reservations",
    "max_relay_circuits",
    "max_connections",
    "max_connections_per_peer",
    "connection_timeout",
    "mdns_query_interval",
    "pubsub_announce_interval",
    "autonat_query_interval",
    "on_peer_discovered",
    "on_connection_established",
    "on_connection_closed",
    "listen_addrs",
    "transports",
    "identity_path",
}


def test_every_seed_field_exists_with_seed_defaults() -> None:
    names = {f.name for f in dataclasses.fields(ConnectivityConfig)}
    assert names >= SEED_FIELDS
    config = ConnectivityConfig()
    assert config.bootstrap_peers == list(IPFS_BOOTSTRAP_PEERS)
    assert len(config.bootstrap_peers) == 4
    assert all(p.startswith("/dnsaddr/bootstrap.libp2p.io/p2p/") for p in config.bootstrap_peers)
    assert config.pubsub_discovery_topics == ["_peer-discovery._p2p._pubsub"]
    assert config.enable_relay_server is False
    assert config.validate() is config


def test_seed_example_config_is_accepted() -> None:
    config = ConnectivityConfig(
        enable_mdns=True,
        enable_pubsub_discovery=True,
        enable_dht_discovery=True,
        enable_autonat=True,
        enable_relay_client=True,
        enable_relay_server=False,
        enable_dcutr=True,
        connect_to_bootstrap=True,
        on_peer_discovered=lambda peer: print(f"Discovered: {peer.peer_id}"),
        on_connection_established=lambda peer_id, addr: print(f"Connected: {peer_id}"),
    )
    assert config.validate() is config


@pytest.mark.parametrize(
    ("name", "checks"),
    [
        ("browser", {"enable_mdns": False, "enable_relay_server": False, "enable_dcutr": True}),
        ("server", {"enable_relay_server": True, "enable_mdns": True}),
        ("private", {"connect_to_bootstrap": False, "bootstrap_peers": [], "enable_mdns": True}),
        (
            "development",
            {"enable_mdns": True, "listen_host": "127.0.0.1", "connect_to_bootstrap": False},
        ),
    ],
)
def test_presets_follow_best_practices(name: str, checks: dict[str, object]) -> None:
    config = ConnectivityConfig.preset(name)
    for field, expected in checks.items():
        assert getattr(config, field) == expected, field
    if name == "development":
        default = ConnectivityConfig()
        assert config.pubsub_announce_interval < default.pubsub_announce_interval
        assert config.mdns_query_interval < default.mdns_query_interval


def test_preset_overrides_and_unknown_preset() -> None:
    assert ConnectivityConfig.preset("server", max_relay_circuits=4).max_relay_circuits == 4
    with pytest.raises(ConfigError, match="'laptop'"):
        ConnectivityConfig.preset("laptop")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mdns_query_interval", -1),
        ("pubsub_announce_interval", 0),
        ("autonat_query_interval", float("nan")),
        ("connection_timeout", "10"),
        ("max_connections", 0),
        ("max_connections_per_peer", 1.5),
        ("max_relay_reservations", -3),
        ("transports", ["tcp", "carrier-pigeon"]),
        ("transports", []),
        ("transports", "tcp"),
        ("listen_addrs", ["/ip4/127.0.0.1/tcp/notaport"]),
        ("listen_addrs", ["/ip4/127.0.0.1/udp/0"]),
        ("listen_addrs", ["/ip4/127.0.0.1/udp/0/webrtc"]),
        ("listen_addrs", ["/ip4/127.0.0.1/tcp/4001/p2p-circuit"]),
        ("bootstrap_peers", ["/ip4/127.0.0.1/tcp/4001"]),
        ("bootstrap_peers", ["not a multiaddr"]),
        ("enable_mdns", "yes"),
        ("on_peer_discovered", 42),
        ("pubsub_discovery_topics", "_peer-discovery._p2p._pubsub"),
        ("listen_host", "localhost-ish"),
        ("log_level", "LOUD"),
        ("observed_addr_min_observers", 0),
        ("observed_addr_min_observers", 2.0),
        ("observed_addr_min_groups", 0),
        ("observed_addr_min_groups", 5),  # more groups than observers (4)
        ("observed_addr_ttl", 0),
        ("observed_addr_ttl", float("inf")),
        ("advertise_all_addrs", "no"),
        ("dial_tcp_delay", -0.1),
        ("dial_tcp_delay", float("nan")),
        ("dial_relay_delay", -1),
        ("dial_relay_delay", True),
        ("max_parallel_dials", 0),
        ("service_restart_backoff", (0, 30.0)),
        ("service_restart_backoff", (5.0, 1.0)),
        ("autonat_min_groups", 0),
        ("autonat_min_groups", 4),  # more groups than agreeing servers (3)
        ("autonat_server_max_streams", 0),
        ("autonat_server_max_streams_per_peer", 0),
        ("autonat_server_read_timeout", 0),
        ("autonat_server_read_timeout", float("inf")),
        ("service_restart_backoff", (0.5,)),
        ("service_restart_backoff", 0.5),
        ("service_max_restarts", -1),
    ],
)
def test_invalid_values_raise_when_the_config_is_made(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        ConnectivityConfig(**{field: value})
    error = caught.value
    assert isinstance(error, UcsdkError)
    assert error.field == field
    assert field in str(error)
    if isinstance(value, list) and value:
        assert any(str(v) in str(error) for v in value)
    elif not isinstance(value, float):
        assert repr(value) in str(error) or str(value) in str(error)


@pytest.mark.parametrize(
    "make",
    [
        lambda changes: ConnectivityConfig().replace(**changes),
        lambda changes: dataclasses.replace(ConnectivityConfig(), **changes),
        lambda changes: ConnectivityConfig.preset("development", **changes),
        lambda changes: ConnectivityConfig.preset("server", **changes),
    ],
    ids=["replace", "dataclasses.replace", "development", "server"],
)
def test_replace_and_presets_validate(make: Callable[[dict[str, object]], object]) -> None:
    with pytest.raises(ConfigError, match=r"pubsub_announce_interval=-1 is invalid") as caught:
        make({"pubsub_announce_interval": -1})
    assert (caught.value.field, caught.value.value) == ("pubsub_announce_interval", -1)
    with pytest.raises(ConfigError, match="observed_addr_min_groups=3"):
        make({"observed_addr_min_observers": 2, "observed_addr_min_groups": 3})


def test_validate_stays_public_and_checks_assigned_fields() -> None:
    config = ConnectivityConfig()
    assert config.validate() is config
    config.max_parallel_dials = 0
    with pytest.raises(ConfigError, match="max_parallel_dials=0"):
        config.validate()


def test_new_fields_defaults_and_bounds() -> None:
    config = ConnectivityConfig()
    assert config.observed_addr_min_observers == 4
    assert config.observed_addr_min_groups == 2
    assert config.observed_addr_ttl == 1800.0
    assert config.advertise_all_addrs is False
    assert (config.dial_tcp_delay, config.dial_relay_delay) == (0.25, 0.5)
    assert config.max_parallel_dials == 8
    assert config.service_restart_backoff == (0.5, 30.0)
    assert config.service_max_restarts == 10
    assert (config.autonat_min_agreement, config.autonat_min_groups) == (3, 2)
    assert config.autonat_server_max_streams == 16
    assert config.autonat_server_max_streams_per_peer == 2
    assert config.autonat_server_read_timeout == 5.0
    # The development preset (everything on loopback, one IP group) lowers the group rule.
    assert ConnectivityConfig.preset("development").autonat_min_groups == 1
    edge = ConnectivityConfig(
        observed_addr_min_observers=1,
        observed_addr_min_groups=1,
        dial_tcp_delay=0,
        dial_relay_delay=0,
        max_parallel_dials=1,
        service_restart_backoff=[2, 2],  # a list (e.g. from JSON) becomes a tuple
        service_max_restarts=0,
        advertise_all_addrs=True,
    )
    assert edge.service_restart_backoff == (2, 2)
    for preset in ("browser", "server", "private", "development"):
        assert ConnectivityConfig.preset(preset).service_restart_backoff == (0.5, 30.0)


@pytest.mark.parametrize(
    ("transports", "addr", "expected"),
    [
        (["tcp"], "/ip4/127.0.0.1/tcp/0/ws", ["tcp", "websocket"]),
        (["tcp"], "/ip4/127.0.0.1/udp/0/quic-v1", ["tcp", "quic"]),
        (["quic"], "/ip4/127.0.0.1/tcp/4001", ["quic", "tcp"]),
        (["websocket"], "/ip4/127.0.0.1/tcp/0/ws", ["websocket"]),
    ],
)
def test_listen_addr_enables_its_transport(
    transports: list[str], addr: str, expected: list[str]
) -> None:
    config = ConnectivityConfig(transports=transports, listen_addrs=[addr])
    assert config.transports == expected
    assert transports == expected[: len(transports)]  # the caller's list is not changed
    assert config.resolved_listen_addrs() == [addr]
    # and on replace, from a config without that transport
    assert ConnectivityConfig(transports=transports).replace(listen_addrs=[addr]).transports == (
        expected
    )


def test_node_listening_only_on_websocket_accepts_a_websocket_dial() -> None:
    import ucsdk

    ws = "/ip4/127.0.0.1/tcp/0/ws"
    with (
        ucsdk.Node.development(listen_addrs=[ws], enable_mdns=False) as server,
        ucsdk.Node.development(transports=["websocket"], enable_mdns=False) as client,
    ):
        assert "websocket" in server.config.transports
        assert server.addrs and all("/tcp/" in a and "/ws/p2p/" in a for a in server.addrs)
        info = client.connect(server.addrs[0])
        assert info.transport == "websocket"
        conn = client.connections().iloc[0]
        assert conn["transport"] == "websocket"
        assert conn["remote_addr"].endswith("/ws")
        deadline = time.monotonic() + 5
        while server.connections().empty and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(server.connections()["transport"]) == ["websocket"]


def test_planned_transport_is_explained() -> None:
    with pytest.raises(ConfigError, match="webrtc is not supported yet"):
        ConnectivityConfig(transports=["webrtc"])
    with pytest.raises(ConfigError, match="webrtc is not supported yet") as caught:
        ConnectivityConfig(listen_addrs=["/ip4/127.0.0.1/udp/0/webrtc"])
    assert caught.value.value == "/ip4/127.0.0.1/udp/0/webrtc"
    # WebRTC-Direct is supported: a listen address of it turns the transport on.
    config = ConnectivityConfig(listen_addrs=["/ip4/127.0.0.1/udp/0/webrtc-direct"])
    assert "webrtc-direct" in config.transports


def test_replace_rejects_unknown_field_with_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'enable_mdns'"):
        ConnectivityConfig().replace(enable_mdsn=False)


def test_resolved_listen_addrs_follow_transports() -> None:
    config = ConnectivityConfig(transports=["tcp", "quic", "websocket"], listen_host="127.0.0.1")
    assert config.resolved_listen_addrs() == [
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "/ip4/127.0.0.1/tcp/0/ws",
    ]


def test_log_level_sets_the_seed_logger() -> None:
    import logging

    from ucsdk import Node

    seed_logger = logging.getLogger("UniversalConnectivity")
    before = seed_logger.level
    try:
        with Node.development(log_level="DEBUG"):
            assert seed_logger.level == logging.DEBUG
    finally:
        seed_logger.setLevel(before)
