"""Auto-dial amplification: fresh identities (free to make) announce a victim's address on
the discovery topic, from an attacker in another process, as signed GossipSub messages."""

from __future__ import annotations

import pytest
from _attacker import Attacker
from _hostile_peers import wait_until
from _victim import Victim

import ucsdk
from ucsdk.config import DEFAULT_DISCOVERY_TOPIC


def _dropped(node: ucsdk.Node, reason: str) -> int:
    return int(node.metrics().invalid_message_kinds.get(f"dialer_{reason}", 0))


def test_100_identities_announcing_one_victim_make_at_most_2_dials(victim: Victim) -> None:
    node = ucsdk.Node.development(enable_mdns=False)  # auto_dial on
    try:
        assert node.manager.config.auto_dial_max_per_endpoint == 2
        with Attacker() as attacker:
            attacker.run("connect", addr=node.addrs[0])
            sent = attacker.run(
                "announce_flood",
                peer=node.peer_id,
                topic=DEFAULT_DISCOVERY_TOPIC,
                count=100,
                addrs=[victim.addr],
            )
            assert sent == 100
            # Every announcement was taken in (each is a distinct peer now)...
            assert wait_until(lambda: len(node.get_discovered_peers()) >= 100, 30)
            # ...and all but two were refused an auto-dial to the victim, and counted.
            assert wait_until(
                lambda: (
                    _dropped(node, "auto_dial_endpoint_cap") + _dropped(node, "auto_dial_busy")
                    >= 98
                ),
                10,
            ), node.metrics().invalid_message_kinds
            # The two allowed auto-dials have ended (failed: the victim speaks no libp2p).
            assert wait_until(lambda: not node.manager.dialer._auto_dialling, 30)
        print("victim accepted", victim.accepted)
        assert 1 <= victim.accepted <= 2
    finally:
        node.stop()


def test_identities_listing_32_ports_of_one_host_make_at_most_8_dials() -> None:
    # Each record lists 32 ports of one host: the per-record cap (8 addresses) and the
    # per-IP cap (8 identity/port pairs per 10 minutes, the default) bound the dials.
    victims = [Victim() for _ in range(32)]
    node = ucsdk.Node.development(enable_mdns=False, auto_dial_max_per_ip=8)
    try:
        with Attacker() as attacker:
            attacker.run("connect", addr=node.addrs[0])
            attacker.run(
                "announce_flood",
                peer=node.peer_id,
                topic=DEFAULT_DISCOVERY_TOPIC,
                count=20,
                addrs=[v.addr for v in victims],
            )
            assert wait_until(lambda: len(node.get_discovered_peers()) >= 20, 30)
            assert wait_until(lambda: _dropped(node, "auto_dial_ip_cap") > 0, 10)
            assert wait_until(lambda: not node.manager.dialer._auto_dialling, 30)
        total = sum(v.accepted for v in victims)
        print("victims accepted", total, node.metrics().invalid_message_kinds)
        assert 1 <= total <= 8
    finally:
        node.stop()
        for v in victims:
            v.close()


def test_auto_dials_in_flight_are_capped() -> None:
    # 60 identities, each naming its own silent host (127.0.0.2, .3, ...: no per-endpoint
    # or per-IP cap applies); a dial there hangs until connection_timeout. At most
    # auto_dial_max_in_flight (16) auto-dials run; the others are refused and counted.
    victims = [Victim(f"127.0.0.{i}", silent=True) for i in range(2, 62)]
    node = ucsdk.Node.development(enable_mdns=False, connection_timeout=5.0)
    try:
        assert node.manager.config.auto_dial_max_in_flight == 16
        with Attacker() as attacker:
            attacker.run("connect", addr=node.addrs[0])
            for v in victims:
                attacker.run(
                    "announce_flood",
                    peer=node.peer_id,
                    topic=DEFAULT_DISCOVERY_TOPIC,
                    count=1,
                    addrs=[v.addr],
                    linger=0,
                )
            assert wait_until(lambda: len(node.get_discovered_peers()) >= 60, 30)
            assert wait_until(lambda: _dropped(node, "auto_dial_busy") >= 60 - 16, 10)
            assert len(node.manager.dialer._auto_dialling) <= 16
            assert wait_until(lambda: not node.manager.dialer._auto_dialling, 30)
        total = sum(v.accepted for v in victims)
        print("silent victims accepted", total)
        assert 1 <= total <= 16
    finally:
        node.stop()
        for v in victims:
            v.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("auto_dial_max_in_flight", 0),
        ("auto_dial_max_per_endpoint", -1),
        ("auto_dial_max_per_ip", 1.5),
        ("dcutr_allow_private", "yes"),
    ],
)
def test_the_new_limits_are_validated(field: str, value: object) -> None:
    with pytest.raises(ucsdk.errors.ConfigError, match=field):
        ucsdk.ConnectivityConfig(**{field: value})


def test_only_the_development_preset_widens_the_limits() -> None:
    default, dev = ucsdk.ConnectivityConfig(), ucsdk.ConnectivityConfig.preset("development")
    assert not default.dcutr_allow_private and dev.dcutr_allow_private
    assert (default.auto_dial_max_per_ip, dev.auto_dial_max_per_ip) == (8, 64)
