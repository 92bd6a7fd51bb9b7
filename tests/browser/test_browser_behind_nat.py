"""A browser behind a NAT reaches a ucsdk node behind another NAT over ``/webrtc``: the
js-libp2p page (``page/peer.js``) runs in headless Chromium inside a NAT lab host's network
namespace; the ucsdk node sits behind a second port-restricted NAT with a reservation on a
public relay. The page dials the node's ``<relay>/ws/…/p2p-circuit/webrtc`` address: the
signalling goes over the relayed connection, ICE (both sides asking the relay's STUN
server) finds the direct path between the two NATs, and page and node chat on the app's
topic over it, both ways. A screenshot goes to
``build/screenshots/browser-behind-nat-webrtc.png`` (or ``$UCSDK_SCREENSHOT_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ucsdk.lab
from tests.browser._browser_peer import require_page
from tests.browser._in_namespace import NamespacedBrowserPeer
from ucsdk.apps.uc import CHAT_TOPIC, UC_SETTINGS
from ucsdk.lab.scenarios import wait_until
from ucsdk.lab.stun import STUN_PORT

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
WS_PORT = 4002
DEFAULTS = {
    "connection_timeout": 3.0,
    "autonat_min_agreement": 1,
    "enable_dcutr": False,
    **UC_SETTINGS,
}


def test_a_browser_behind_a_nat_reaches_a_node_behind_another_over_webrtc(
    lab_required: None,
) -> None:
    require_page()
    with ucsdk.lab.Lab("brnat", node_defaults=DEFAULTS) as lab:
        relay = lab.add_public_host(
            "relay",
            enable_relay_server=True,
            listen_addrs=[
                "/ip4/0.0.0.0/tcp/4001",
                "/ip4/0.0.0.0/udp/4001/quic-v1",
                f"/ip4/0.0.0.0/tcp/{WS_PORT}/ws",
            ],
        )
        stun = f"{relay.public_ip}:{STUN_PORT}"
        node = lab.add_host("b", nat="port_restricted", enable_webrtc=True, stun_servers=[stun])
        browser_host = lab.add_host("c", nat="port_restricted", node=False)
        lab.wait_ready()
        node.node.connect(relay.multiaddr())
        assert wait_until(lambda: len(node.node.reservations()) == 1, 30, 0.2), node.node.events()
        peer = node.node.peer_id
        addr = f"/ip4/{relay.public_ip}/tcp/{WS_PORT}/ws/p2p/{relay.node.peer_id}"
        addr += f"/p2p-circuit/webrtc/p2p/{peer}"

        with NamespacedBrowserPeer(browser_host.ns, ice_servers=[f"stun:{stun}"]) as browser:
            dialled = browser.call("dial", addr)
            assert dialled["peer"] == peer and dialled["transport"] == "webrtc", dialled
            conns = node.node.connections()
            assert wait_until(lambda: "webrtc" in set(node.node.connections()["transport"]), 10), (
                conns
            )
            mine = node.node.connections()
            row = mine[mine["transport"] == "webrtc"].iloc[0]
            # The direct path ends at the browser's NAT, not at the relay.
            assert str(row["remote_addr"]).startswith(f"/ip4/{browser_host.public_ip}/udp/"), row
            assert row["peer_id"] == browser.peer_id

            chat = node.node.chat
            chat.lines()  # the node's chat starts (and subscribes) on first use
            assert node.node.wait_for_subscribers(CHAT_TOPIC, 1, timeout=20)
            browser.call("wait_for_subscriber", peer)
            chat.send("hello, browser behind a NAT")
            got = browser.call("wait_for_message", "hello, browser behind a NAT")
            assert got["from"] == peer
            assert peer in browser.call("publish", "hello back, from behind another NAT")
            line = chat.wait_for("chat", timeout=15)
            assert (line.text, line.peer_id) == (
                "hello back, from behind another NAT",
                browser.peer_id,
            )
            folder = Path(os.environ.get("UCSDK_SCREENSHOT_DIR", ROOT / "build" / "screenshots"))
            shot = browser.call("screenshot", str(folder / "browser-behind-nat-webrtc.png"))
            assert Path(shot).stat().st_size > 0
