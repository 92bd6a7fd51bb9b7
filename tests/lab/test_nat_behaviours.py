"""RFC 4787 NAT behaviours in the lab, checked from outside with the RFC 5780 probe."""

from __future__ import annotations

import socket

import pytest

import ucsdk.lab
from ucsdk import errors
from ucsdk.lab import LIBP2P_PORT, NatType, net
from ucsdk.lab.stun import STUN_PORT, binding_request

pytestmark = pytest.mark.lab

# (name, NAT type, port preserved): every single-router mapping/filtering combination.
CASES = [
    ("pub", NatType.NONE, True),
    ("fullcone", NatType.FULL_CONE, True),
    ("fullconexor", NatType.FULL_CONE, False),
    ("addr", NatType.ADDRESS_RESTRICTED, True),
    ("addrxor", NatType.ADDRESS_RESTRICTED, False),
    ("port", NatType.PORT_RESTRICTED, True),
    ("portxor", NatType.PORT_RESTRICTED, False),
    ("sym", NatType.SYMMETRIC, False),
]


@pytest.fixture(scope="module")
def lab() -> ucsdk.lab.Lab:
    with ucsdk.lab.Lab("behaviours") as lab:
        for name, nat, preserved in CASES:
            if nat is NatType.NONE:
                lab.add_public_host(name, node=False)
            elif nat is NatType.SYMMETRIC:
                lab.add_host(name, nat=nat, node=False)
            else:
                lab.add_host(name, nat=nat, node=False, port_preservation=preserved)
        yield lab


@pytest.mark.parametrize(("name", "nat", "preserved"), CASES, ids=[c[0] for c in CASES])
def test_the_probe_classifies_each_nat_as_declared(
    lab: ucsdk.lab.Lab, name: str, nat: NatType, preserved: bool
) -> None:
    report = lab.nat_behaviour(name)
    assert report.matches(nat.behaviour), report.frame.to_string()
    assert report.port_preservation is preserved, report.frame.to_string()
    host = lab.host(name)
    assert host.port_preservation is (None if nat is NatType.NONE else preserved)
    if nat is not NatType.NONE:
        assert report.mapped.startswith(host.public_ip + ":")
        assert report.hairpinning is False  # off by default
    row = lab.hosts().set_index("host").loc[name]
    assert row["hairpinning"] == (None if nat is NatType.NONE else False)


@pytest.mark.parametrize("preserved", [True, False], ids=["preserved", "xor"])
def test_hairpinning_on_and_off(lab: ucsdk.lab.Lab, preserved: bool) -> None:
    suffix = "p" if preserved else "x"
    on = lab.add_host(
        f"hairon{suffix}", nat="full_cone", node=False, hairpinning=True,
        port_preservation=preserved,
    )  # fmt: skip
    off = lab.add_host(f"hairoff{suffix}", nat="full_cone", node=False)
    report = lab.nat_behaviour(on)
    assert report.hairpinning, report.frame.to_string()
    # RFC 4787 REQ-9: the inside host sees the sender's public mapping as the source.
    assert report.hairpin_source is not None
    assert report.hairpin_source.startswith(on.public_ip + ":"), report.hairpin_source
    sender = report.frame.set_index("test").loc["hairpinning", "from"]
    sender_port = int(str(sender).rsplit(":", 1)[1])
    expected = sender_port if preserved else sender_port ^ 0x4000
    assert report.hairpin_source == f"{on.public_ip}:{expected}"
    assert lab.hosts().set_index("host").loc[on.name, "hairpinning"] == True  # noqa: E712
    assert not lab.nat_behaviour(off).hairpinning


def test_a_short_udp_timeout_ends_the_mapping(lab: ucsdk.lab.Lab) -> None:
    timeout_s = 2
    for nat in ("port_restricted", "full_cone"):
        host = lab.add_host(f"short{nat[:4]}", nat=nat, node=False, udp_timeout_s=timeout_s)
        # The idle waits are the lifetime measurement itself.
        report = lab.nat_behaviour(host, lifetime_waits=(0.5, timeout_s + 1.5))
        assert report.lifetime == {0.5: True, timeout_s + 1.5: False}, report.frame.to_string()
        out = net.ns_run(
            host.nat_router or "", ["sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout"]
        )
        assert out.strip() == str(timeout_s)
        assert lab.hosts().set_index("host").loc[host.name, "udp_timeout_s"] == timeout_s


def test_meaningless_nat_options_are_refused_by_name(lab: ucsdk.lab.Lab) -> None:
    bad = [
        ({"nat": "none", "hairpinning": True}, "hairpinning"),
        ({"nat": "none", "udp_timeout_s": 5}, "udp_timeout_s"),
        ({"nat": "none", "port_preservation": False}, "port_preservation"),
        ({"nat": "symmetric", "port_preservation": False}, "port_preservation"),
        ({"nat": "double", "hairpinning": True}, "hairpinning"),
        ({"nat": "full_cone", "udp_timeout_s": 0}, "udp_timeout_s"),
        ({"nat": "full_cone", "hairpinning": "yes"}, "hairpinning"),
    ]
    for kwargs, name in bad:
        with pytest.raises(errors.InvalidInput, match=name):
            lab.add_host("badopts", node=False, **kwargs)  # type: ignore[arg-type]
    assert "badopts" not in set(lab.hosts()["host"])
    assert NatType.parse("full-cone") is NatType.FULL_CONE
    assert NatType.parse("eif") is NatType.FULL_CONE
    assert NatType.parse("restricted") is NatType.ADDRESS_RESTRICTED
    assert NatType.parse("address-restricted") is NatType.ADDRESS_RESTRICTED


def _stun_from_listen_port(ns: str, server: tuple[str, int]) -> tuple[str, int]:
    """One STUN request from the node's own UDP listen port (the node's QUIC socket has
    SO_REUSEADDR, so a second socket may share the port for a moment): what a node that
    dials from its listen port, as go-libp2p does, sends anyway."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", LIBP2P_PORT))
        return sock

    sock = net.in_namespace(ns, make)
    try:
        return binding_request(sock, server)
    finally:
        sock.close()  # from now on the node's QUIC listener gets every datagram again


def test_a_full_cone_host_can_be_dialled_directly_once_it_used_its_port() -> None:
    defaults = {"connection_timeout": 3.0, "enable_dht_discovery": False}
    with ucsdk.lab.Lab("fullcone", node_defaults=defaults) as lab:
        relay = lab.add_public_host("relay")
        dialer = lab.add_public_host("dialer")
        cone = lab.add_host("cone", nat="full_cone")
        home = lab.add_host("home", nat="port_restricted")
        lab.wait_ready()
        for host in (cone, home):
            host.node.connect(relay.multiaddr("quic"))
            mapped = _stun_from_listen_port(host.ns, (relay.address, STUN_PORT))
            assert mapped == (host.public_ip, LIBP2P_PORT)
        # A public host that never talked to either dials their libp2p port directly.
        frame = lab.reachability([(dialer, cone), (dialer, home)], transport="quic", timeout=3)
        ok = dict(zip(frame["target"], frame["ok"], strict=True))
        assert ok == {"cone": True, "home": False}, frame.to_string()
