"""Browsers, WebTransport and WebRTC-Direct, side by side in one run.

1. A js-libp2p page in Debian's Chromium (tests/browser/page, driven by Playwright) dials a
   ucsdk node over WebTransport, WebRTC-Direct (v1; and v2 in a Chromium started with the
   WebRTC-NoSdpMangleUfrag field trial, which refuses v1) and WebSocket: time to an open
   connection (measured in the page) and ping RTT (js-libp2p's ping service, whole
   milliseconds). The node hangs up between repetitions, so each dial is a fresh connection.
2. ucsdk to ucsdk on loopback over WebTransport, WebRTC-Direct (data channels), QUIC and
   TCP: connect time, ping RTT (ucsdk's, sub-millisecond) and one-stream bulk throughput.

    python bench/browser.py            # 10 repetitions, 16 MiB transfers
    python bench/browser.py --quick    # 3 repetitions, 2 MiB (CI prints it)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ucsdk  # noqa: E402

QUIET: dict[str, Any] = {
    "enable_mdns": False,
    "enable_dht_discovery": False,
    "enable_autonat": False,
    "enable_pubsub_discovery": False,
    "auto_dial": False,
}
LISTEN = {
    "tcp": "/ip4/127.0.0.1/tcp/0",
    "quic": "/ip4/127.0.0.1/udp/0/quic-v1",
    "websocket": "/ip4/127.0.0.1/tcp/0/ws",
    "webtransport": "/ip4/127.0.0.1/udp/0/quic-v1/webtransport",
    "webrtc-direct": "/ip4/127.0.0.1/udp/0/webrtc-direct",
}
NO_SDP_MUNGING = "--force-fieldtrials=WebRTC-NoSdpMangleUfrag/Enabled/"
SINK = "/ucsdk/bench/sink/1"


def _addr(node: ucsdk.Node, transport: str) -> str:
    for addr in node.addrs:
        if ucsdk.config.transport_of(addr) == transport:
            return addr if "/p2p/" in addr else f"{addr}/p2p/{node.peer_id}"
    raise LookupError(f"{node} has no {transport} address: {node.addrs}")


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def _spread(values: list[float], digits: int = 1) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def browser_rows(reps: int, pings: int) -> list[list[str]]:
    from tests.browser._browser_peer import BrowserPeer, require_page

    rows = []
    listen = [LISTEN["websocket"], LISTEN["webtransport"], LISTEN["webrtc-direct"]]
    cases = [
        # label, transport, Chromium flags, WebRTC-Direct version
        ("webtransport", "webtransport", (), 1),
        ("webrtc-direct v1", "webrtc-direct", (), 1),
        ("webrtc-direct v2, no munging", "webrtc-direct", (NO_SDP_MUNGING,), 2),
        ("websocket", "websocket", (), 1),
    ]
    page = require_page()
    with ucsdk.Node.development(listen_addrs=listen, **QUIET) as node:
        for label, transport, flags, version in cases:
            with BrowserPeer(page, chromium_args=flags) as browser:
                browser.call("setWebRTCDirectVersion", version)
                addr = _addr(node, transport)
                connects: list[float] = []
                rtts: list[float] = []
                for _ in range(reps):
                    dialled = browser.dial(addr)
                    assert dialled["transport"] == transport, dialled
                    connects.append(float(dialled["ms"]))
                    rtts += [browser.ping(node.peer_id) for _ in range(pings)]
                    # The browser hangs up, so the next dial makes a fresh connection. (The
                    # node learns of a WebRTC hang-up only when ICE consent fails, ~30 s.)
                    browser.call("hangUp", node.peer_id)
                    _wait(lambda: not browser.connections())
                rows.append(
                    [f"browser -> ucsdk, {label}", _spread(connects), _spread(rtts, 0), "—"]
                )
    return rows


def _throughput(a: ucsdk.Node, b: ucsdk.Node, size: int) -> float:
    chunk = bytes(64 * 1024)
    with b.open_stream(a.peer_id, SINK) as stream:
        start = time.perf_counter()
        sent = 0
        while sent < size:
            stream.write(chunk)
            sent += len(chunk)
        assert stream.read_exactly(1, timeout=120) == b"k"
        return size / (time.perf_counter() - start) / 1e6


def ucsdk_rows(reps: int, size: int) -> list[list[str]]:
    """A fresh dialling node per repetition (py-libp2p's QUIC does not always take a
    second connection between the same two nodes cleanly after a hang-up)."""
    rows = []
    listen = [LISTEN["tcp"], LISTEN["quic"], LISTEN["webtransport"], LISTEN["webrtc-direct"]]
    with ucsdk.Node.development(listen_addrs=listen, **QUIET) as a:

        async def sink(stream: ucsdk.Stream) -> None:
            async with stream:
                got = 0
                while got < size:
                    data = await stream.read(1 << 20)
                    if not data:
                        return
                    got += len(data)
                await stream.write(b"k")

        a.handle(SINK, sink)
        for transport in ("webtransport", "webrtc-direct", "quic", "tcp"):
            addr = _addr(a, transport)
            connects: list[float] = []
            rtts: list[float] = []
            rates: list[float] = []
            for _ in range(reps):
                with ucsdk.Node.development(listen_addrs=[LISTEN[transport]], **QUIET) as b:
                    start = time.perf_counter()
                    info = b.connect(addr)
                    connects.append((time.perf_counter() - start) * 1000)
                    assert info.transport == transport, info
                    rtts += b.ping(a.peer_id, count=10)
                    rates.append(_throughput(a, b, size))
            row = [f"ucsdk -> ucsdk, {transport}", _spread(connects), _spread(rtts, 2)]
            rows.append([*row, _spread(rates)])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, less data")
    parser.add_argument("--no-browser", action="store_true", help="only ucsdk to ucsdk")
    args = parser.parse_args()
    reps = 3 if args.quick else 10
    size = (2 if args.quick else 16) * 1024 * 1024
    rows = [] if args.no_browser else browser_rows(reps, 3 if args.quick else 5)
    rows += ucsdk_rows(reps, size)
    print(f"\nbench/browser.py: {reps} fresh connections each, {size >> 20} MiB per transfer")
    print("median (min–max) | browser RTT: js-libp2p ping, whole ms\n")
    print("| path | connect ms | ping RTT ms | one stream MB/s |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
