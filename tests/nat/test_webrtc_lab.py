"""Private-to-private WebRTC (``/webrtc``) on the NAT lab: two hosts behind NATs, each
with the relay's STUN server, signal over a relayed connection and ICE finds the direct
path through both NATs; behind a symmetric NAT it cannot, and says so. A third way through
NATs beside DCUtR over TCP and QUIC (DCUtR is off here, so the path is WebRTC's alone)."""

from __future__ import annotations

import pytest

import ucsdk.lab
from ucsdk.lab.scenarios import wait_until
from ucsdk.lab.stun import STUN_PORT

pytestmark = pytest.mark.lab

DEFAULTS = {
    "connection_timeout": 3.0,
    "autonat_min_agreement": 1,  # one public server in these labs
    "pubsub_announce_interval": 1.0,
    "enable_dcutr": False,
}


def _build(lab: ucsdk.lab.Lab, nat_a: str, nat_b: str) -> tuple[ucsdk.lab.LabHost, ...]:
    relay = lab.add_public_host("relay", enable_relay_server=True)
    stun = [f"{relay.public_ip}:{STUN_PORT}"]
    a = lab.add_host("a", nat=nat_a, enable_webrtc=True, stun_servers=stun)
    b = lab.add_host("b", nat=nat_b, enable_webrtc=True, stun_servers=stun)
    lab.wait_ready()
    a.node.connect(relay.multiaddr())
    b.node.connect(relay.multiaddr())
    assert wait_until(lambda: len(b.node.reservations()) == 1, 30, 0.2), b.node.events()
    return relay, a, b


def _webrtc_addr(b: ucsdk.lab.LabHost) -> str:
    circuit = next(x for x in b.node.reservations().iloc[0]["circuit_addrs"] if "/tcp/" in x)
    return f"{circuit}/webrtc/p2p/{b.node.peer_id}"


def _direct(node: ucsdk.lab.LabNode, peer: str) -> list[str]:
    conns = node.connections()
    mine = conns[(conns["peer_id"] == peer) & ~conns["relayed"].astype(bool)]
    return list(mine["transport"])


def test_webrtc_through_two_cone_nats(lab_required: None) -> None:
    with ucsdk.lab.Lab(node_defaults=DEFAULTS) as lab:
        _, a, b = _build(lab, "port_restricted", "port_restricted")
        info = a.node.connect(_webrtc_addr(b), timeout=40)
        assert info.peer_id == b.node.peer_id
        assert wait_until(lambda: _direct(a.node, b.node.peer_id) == ["webrtc"], 10), (
            a.node.connections()
        )
        assert wait_until(lambda: _direct(b.node, a.node.peer_id) == ["webrtc"], 10)
        # The direct path runs between the NATs' public mappings (not through the relay).
        conns = a.node.connections()
        row = conns[(conns["peer_id"] == b.node.peer_id) & (conns["transport"] == "webrtc")]
        remote = str(row.iloc[0]["remote_addr"])
        assert remote.startswith(f"/ip4/{b.public_ip}/udp/") and remote.endswith("/webrtc")
        assert b.node.ping(a.node.peer_id, count=3)
        assert a.node.ping(b.node.peer_id, count=3)
        assert a.node.metrics().invalid_message_kinds.get("webrtc_signaling_failed", 0) == 0


def test_webrtc_cannot_cross_a_symmetric_nat_and_says_why(lab_required: None) -> None:
    with ucsdk.lab.Lab(node_defaults=DEFAULTS) as lab:
        _, a, b = _build(lab, "symmetric", "port_restricted")
        with pytest.raises(ucsdk.errors.UcsdkError, match=r"(?i)webrtc"):
            a.node.connect(_webrtc_addr(b), timeout=60)
        error = str(a.node.dial_attempts().iloc[-1]["error"])
        assert "no direct path" in error or "ICE found no candidate pair" in error, error
        assert _direct(a.node, b.node.peer_id) == []
        assert wait_until(
            lambda: (
                sum(
                    v
                    for k, v in b.node.metrics().invalid_message_kinds.items()
                    if k.startswith("webrtc_signaling_")
                )
                >= 1
            ),
            30,
        )
