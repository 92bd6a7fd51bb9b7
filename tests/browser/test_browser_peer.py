"""A js-libp2p peer in headless Chromium (``page/peer.js``, configured like the
universal-connectivity app's peers) and a ucsdk node on loopback: the page dials the node
over WebTransport, WebRTC-Direct (v1, and v2 with Chromium's ``WebRTC-NoSdpMangleUfrag``
field trial on) and WebSocket, pings it, and both chat on ``universal-connectivity`` in both
directions. A screenshot of each is saved to ``build/screenshots/browser-peer-<case>.png``
(or ``$UCSDK_SCREENSHOT_DIR``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import ucsdk
from tests.browser._browser_peer import BrowserPeer, require_page
from ucsdk.apps.uc import CHAT_TOPIC, UC_SETTINGS, Chat

ROOT = Path(__file__).resolve().parents[2]
ONLY_THE_BROWSER = {
    "enable_mdns": False,
    "enable_dht_discovery": False,
    "enable_autonat": False,
    "auto_dial": False,
    **UC_SETTINGS,
}


def _screenshot_path(name: str) -> Path:
    folder = Path(os.environ.get("UCSDK_SCREENSHOT_DIR", ROOT / "build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.fixture(scope="module")
def page_dir() -> Path:
    return require_page()


NO_SDP_MUNGING = "--force-fieldtrials=WebRTC-NoSdpMangleUfrag/Enabled/"
"""Chromium's coming default: a local description whose ICE ufrag or pwd was changed is
refused, so WebRTC-Direct v1 cannot work and v2 must."""

CASES = {
    # case: (transport, Chromium flags, WebRTC-Direct version the page dials)
    "webtransport": ("webtransport", (), 1),
    "webrtc-direct-v1": ("webrtc-direct", (), 1),
    "webrtc-direct-v2": ("webrtc-direct", (NO_SDP_MUNGING,), 2),
    "websocket": ("websocket", (), 1),
}
LISTEN = {
    "websocket": "/ip4/127.0.0.1/tcp/0/ws",
    "webtransport": "/ip4/127.0.0.1/udp/0/quic-v1/webtransport",
    "webrtc-direct": "/ip4/127.0.0.1/udp/0/webrtc-direct",
}
MARK = {
    "websocket": "/ws",
    "webtransport": "/webtransport/certhash/",
    "webrtc-direct": "/webrtc-direct/certhash/",
}


@pytest.fixture
def browser(page_dir: Path, request: pytest.FixtureRequest) -> Iterator[BrowserPeer]:
    _, flags, version = CASES[request.node.callspec.params["case"]]
    with BrowserPeer(page_dir, chromium_args=flags) as peer:
        peer.call("setWebRTCDirectVersion", version)
        yield peer


def _addr(node: ucsdk.Node, transport: str) -> str:
    addr = next(a for a in node.addrs if MARK[transport] in a)
    return addr if "/p2p/" in addr else f"{addr}/p2p/{node.peer_id}"


@pytest.mark.browser
@pytest.mark.parametrize("case", list(CASES))
def test_browser_peer_chats_with_ucsdk(browser: BrowserPeer, case: str) -> None:
    transport, _, version = CASES[case]
    listen = ["/ip4/127.0.0.1/tcp/0", LISTEN[transport]]
    with (
        ucsdk.Node.development(listen_addrs=listen, **ONLY_THE_BROWSER) as node,
        Chat(node) as chat,
    ):
        addr = _addr(node, transport)
        dialled = browser.dial(addr)
        assert (dialled["peer"], dialled["transport"]) == (node.peer_id, transport)
        assert MARK[transport].split("/certhash")[0] in dialled["remoteAddr"]
        assert 0 < dialled["ms"] < 20_000
        assert [c["transport"] for c in browser.connections()] == [transport]
        rtt = browser.ping(node.peer_id)
        assert 0 <= rtt < 5_000

        # Both sides see each other on the app topic before anyone publishes.
        assert node.wait_for_subscribers(CHAT_TOPIC, 1, timeout=20)
        browser.wait_for_subscriber(node.peer_id, timeout=20)

        # browser -> Python
        assert browser.publish("hello from the browser ✓") == [node.peer_id]
        line = chat.wait_for("chat", timeout=15)
        assert (line.text, line.peer_id) == ("hello from the browser ✓", browser.peer_id)

        # Python -> browser
        chat.send("hello from ucsdk")
        got = browser.wait_for_message("hello from ucsdk", timeout=15)
        assert got["from"] == node.peer_id

        # The connection is real on the Python side too: an inbound peer on that transport.
        mine = node.connections()
        row = mine[mine["peer_id"] == browser.peer_id]
        assert list(row["transport"]) == [transport]
        if transport == "webrtc-direct":
            # The listener saw the version the page chose, by the ufrag's prefix.
            assert dict(node.manager.webrtc_direct.versions) == {f"v{version}": 1}
        browser.screenshot(_screenshot_path(f"browser-peer-{case}.png"))
        print(f"{case}: connect {dialled['ms']:.1f} ms, ping {rtt:.0f} ms")
    assert not [line for line in browser.console if line.startswith("pageerror")]


@pytest.mark.browser
def test_chromium_without_sdp_munging_refuses_a_v1_dial(page_dir: Path) -> None:
    """The field trial really takes munging away: the same page dialling v1 fails in
    Chromium (InvalidModificationError) before any packet reaches the node, which is why
    the v2 case above is the one that works there."""
    with (
        BrowserPeer(page_dir, chromium_args=(NO_SDP_MUNGING,)) as browser,
        ucsdk.Node.development(
            listen_addrs=["/ip4/127.0.0.1/tcp/0", LISTEN["webrtc-direct"]], **ONLY_THE_BROWSER
        ) as node,
    ):
        browser.call("setWebRTCDirectVersion", 1)
        with pytest.raises(Exception, match=r"(?i)modif"):
            browser.dial(_addr(node, "webrtc-direct"))
        assert not node.manager.webrtc_direct.versions
        assert not node.connections().shape[0]
