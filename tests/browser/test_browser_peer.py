"""A js-libp2p peer in headless Chromium (``page/peer.js``, configured like the
universal-connectivity app's peers) and a ucsdk node on loopback: the page dials the node
over WebSocket, pings it, and both chat on ``universal-connectivity`` in both directions.
A screenshot is saved to ``build/screenshots/browser-peer.png`` (or
``$UCSDK_SCREENSHOT_DIR``)."""

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


@pytest.fixture
def browser(page_dir: Path) -> Iterator[BrowserPeer]:
    with BrowserPeer(page_dir) as peer:
        yield peer


LISTEN = {
    "websocket": "/ip4/127.0.0.1/tcp/0/ws",
    "webtransport": "/ip4/127.0.0.1/udp/0/quic-v1/webtransport",
}
MARK = {"websocket": "/ws", "webtransport": "/webtransport/certhash/"}


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["webtransport", "websocket"])
def test_browser_peer_chats_with_ucsdk(browser: BrowserPeer, transport: str) -> None:
    listen = ["/ip4/127.0.0.1/tcp/0", LISTEN[transport]]
    with (
        ucsdk.Node.development(listen_addrs=listen, **ONLY_THE_BROWSER) as node,
        Chat(node) as chat,
    ):
        addr = next(a for a in node.addrs if MARK[transport] in a)
        if "/p2p/" not in addr:
            addr = f"{addr}/p2p/{node.peer_id}"

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
        browser.screenshot(_screenshot_path(f"browser-peer-{transport}.png"))
        print(f"{transport}: connect {dialled['ms']:.1f} ms, ping {rtt:.0f} ms")
    assert not [line for line in browser.console if line.startswith("pageerror")]
