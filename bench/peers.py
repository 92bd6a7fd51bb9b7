"""ucsdk and js-libp2p side by side: connect, pings, transfers and gossip, four pairings.

Run: ``make bench`` or ``.venv/bin/python bench/peers.py [--quick] [--json PATH]``.

Every figure is measured for each pairing, dialler -> listener: ``ucsdk -> ucsdk`` (two
nodes in one Python process), ``js -> js`` (two js-libp2p 3.3.11 nodes in one Node.js
process, ``tests/interop/js/bench-peer.mjs``), ``ucsdk -> js`` and ``js -> ucsdk``. All
on loopback, TCP + Noise + Yamux (and QUIC-v1 between ucsdk nodes), each side timed on its
own event loop (ucsdk: the node's trio loop, ``perf_counter``; js: ``performance.now()``):

- ``connect ms``: median of dialling the listener's address until the connection is
  upgraded (then hung up; dialled again at the end);
- ``ping ms``: median of a ping on a NEW stream (open it, negotiate ``/ipfs/ping/1.0.0``,
  32 bytes there and back; the close is not timed);
- ``rtt ms``: median round trip of 32 bytes on one open ping stream;
- ``TCP MB/s`` / ``QUIC MB/s``: ``--mib`` (1) MiB in 64 KiB writes on a new stream to a
  sink that answers one byte when it has everything (``bench/pubsub.py``'s sink), the best
  of ``--transfers``; js-libp2p in Node.js has no QUIC transport (``n/a``);
- ``gossip msg/s``: GossipSub messages of 100 bytes, 64 publishes in flight, delivered per
  second at the subscriber (from the first publish to the last arrival, wall clocks of
  one machine).

Then, in the same run, a QUIC bulk transfer (``--quic-mib``) ucsdk -> ucsdk next to raw
aioquic (``bench/pubsub.py``'s: one stream, both ends on one asyncio loop), and the
issue-16 targets with ``met`` / ``NOT met``: 3 (ucsdk's new-stream ping at most js's) and
5 (ucsdk's QUIC bulk at least 80 % of raw aioquic's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID

import ucsdk
from ucsdk._wire import read_exactly
from ucsdk.protocols import PING_PROTOCOL, PING_SIZE, ping_rtts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pubsub import CHUNK, PROTOCOL, QUIET, raw_quic, sink

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "bench-peers"
SIZE = 100
IN_FLIGHT = 64
SETTINGS = {**QUIET, "pubsub_message_id": "uc"}  # the app's message id, as the js peer's
QUIC = {"listen_addrs": ["/ip4/127.0.0.1/udp/0/quic-v1"], "transports": ["quic"]}
FIGURES = ("connect_ms", "ping_ms", "rtt_ms", "tcp_mb_s", "quic_mb_s", "gossip_msg_s")
JS_NO_QUIC = "js-libp2p has no QUIC transport for Node.js"
QUIC_TARGET = 0.8


# ------------------------------------------------------------------------ the sides
class UcSide:
    """A ucsdk node as one end of a pairing (its figures timed on its own loop)."""

    name = "ucsdk"

    def __init__(self, node: ucsdk.Node) -> None:
        self.node = node
        self.peer = node.peer_id
        addr = node.addrs[0]
        self.addr = addr if "/p2p/" in addr else f"{addr}/p2p/{node.peer_id}"
        self.count = 0
        self.last = 0.0

    def _loop(self, fn: Callable[[], Any]) -> Any:
        return self.node._portal.call(fn)

    def connect(self, addr: str, count: int) -> list[float]:
        manager = self.node.manager

        async def main() -> list[float]:
            ms: list[float] = []
            for _ in range(count):
                started = time.perf_counter()
                info = await manager.connect(addr)
                ms.append((time.perf_counter() - started) * 1000)
                await manager.disconnect(info.peer_id)
            await manager.connect(addr)
            return ms

        return self._loop(main)  # type: ignore[no-any-return]

    def ping(self, peer: str, count: int) -> list[float]:
        host, pid = self.node.manager.host, ID.from_base58(peer)

        async def main() -> list[float]:
            ms: list[float] = []
            for _ in range(count):
                payload = os.urandom(PING_SIZE)
                started = time.perf_counter()
                stream = await host.new_stream(pid, [PING_PROTOCOL])
                await stream.write(payload)
                echo = await read_exactly(stream, PING_SIZE)
                ms.append((time.perf_counter() - started) * 1000)
                await stream.close()
                if echo != payload:
                    raise RuntimeError("the ping echo differs")
            return ms

        return self._loop(main)  # type: ignore[no-any-return]

    def rtt(self, peer: str, count: int) -> list[float]:
        host, pid = self.node.manager.host, ID.from_base58(peer)
        return self._loop(lambda: ping_rtts(host, pid, count))  # type: ignore[no-any-return]

    def send(self, peer: str, total: int) -> float:
        manager, chunk = self.node.manager, os.urandom(CHUNK)

        async def main() -> float:
            started = time.perf_counter()
            stream = await manager.open_stream(peer, PROTOCOL)
            await stream.write(total.to_bytes(8, "big"))
            for _ in range(max(1, total // CHUNK)):
                await stream.write(chunk)
            if await stream.read_exactly(1) != b"k":
                raise RuntimeError("the sink did not answer k")
            elapsed = time.perf_counter() - started
            await stream.close()
            return elapsed

        return self._loop(main)  # type: ignore[no-any-return]

    def subscribe(self) -> None:
        def seen(_message: Any) -> None:
            self.count += 1
            self.last = time.time() * 1000

        self.node.subscribe(TOPIC, seen)

    def sees_subscriber(self, peer: str) -> bool:
        return self.node.wait_for_subscribers(TOPIC, 1, timeout=30)

    def arrivals(self) -> tuple[int, float]:
        return self.count, self.last

    def flood(self, n: int) -> float:
        """Publish ``n`` messages, 64 in flight; the epoch ms of the first publish."""
        manager = self.node.manager

        async def main() -> float:
            start = time.time() * 1000
            seqs = iter(range(n))

            async def worker() -> None:
                for seq in seqs:
                    await manager.publish(TOPIC, seq.to_bytes(8, "big") + bytes(SIZE - 8))

            async with trio.open_nursery() as nursery:
                for _ in range(IN_FLIGHT):
                    nursery.start_soon(worker)
            return start

        return self._loop(main)  # type: ignore[no-any-return]


class JsSide:
    """One js-libp2p node of the bench peer process as one end of a pairing."""

    name = "js"

    def __init__(self, js: Any, index: int, peer: str, addr: str) -> None:
        self.js, self.index, self.peer, self.addr = js, index, peer, addr

    def _cmd(self, cmd: str, timeout: float = 120, **fields: Any) -> dict[str, Any]:
        return self.js.command(cmd, node=self.index, timeout=timeout, **fields)  # type: ignore[no-any-return]

    def connect(self, addr: str, count: int) -> list[float]:
        return list(self._cmd("connect", addr=addr, count=count)["ms"])

    def ping(self, peer: str, count: int) -> list[float]:
        return list(self._cmd("ping", peer=peer, count=count)["ms"])

    def rtt(self, peer: str, count: int) -> list[float]:
        return list(self._cmd("rtt", peer=peer, count=count)["ms"])

    def send(self, peer: str, total: int) -> float:
        return float(self._cmd("send", peer=peer, bytes=total)["s"])

    def subscribe(self) -> None:
        self._cmd("subscribe", topic=TOPIC)

    def sees_subscriber(self, peer: str) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if peer in self._cmd("subscribers", topic=TOPIC)["mesh"]:
                return True
            time.sleep(0.05)
        return False

    def arrivals(self) -> tuple[int, float]:
        answer = self._cmd("arrivals", topic=TOPIC)
        return int(answer["count"]), float(answer["last"])

    def flood(self, n: int) -> float:
        return float(self._cmd("flood", topic=TOPIC, count=n, size=SIZE, timeout=300)["start"])


# ---------------------------------------------------------------------- measuring
def gossip_rate(pub: Any, sub: Any, n: int) -> float:
    """Messages/s delivered at ``sub`` when ``pub`` publishes ``n`` (what has not
    arrived 1 s after the last arrival counts as lost)."""
    before, _ = sub.arrivals()
    start = pub.flood(n)
    count, last = sub.arrivals()
    quiet_since, deadline = time.monotonic(), time.monotonic() + 60
    while count - before < n and time.monotonic() < deadline:
        time.sleep(0.05)
        now_count, last = sub.arrivals()
        if now_count != count:
            count, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            break
    got = count - before
    return got / max(1e-6, (last - start) / 1000) if got else 0.0


def measure_pair(dialler: Any, listener: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure but QUIC's for ``dialler`` -> ``listener``."""
    row: dict[str, Any] = {"pairing": f"{dialler.name} -> {listener.name}", "quic_mb_s": None}
    row["connect_ms"] = statistics.median(dialler.connect(listener.addr, args.connects))
    dialler.ping(listener.peer, 2)  # warm-up
    row["ping_ms"] = statistics.median(dialler.ping(listener.peer, args.pings))
    row["rtt_ms"] = statistics.median(dialler.rtt(listener.peer, args.pings))
    total = args.mib << 20
    seconds = min(dialler.send(listener.peer, total) for _ in range(args.transfers))
    row["tcp_mb_s"] = total / seconds / 1e6
    listener.subscribe()
    dialler.subscribe()
    if not (dialler.sees_subscriber(listener.peer) and listener.sees_subscriber(dialler.peer)):
        raise RuntimeError(f"{row['pairing']}: the gossip mesh did not form in 30 s")
    time.sleep(1.0)  # a heartbeat: both meshes hold the other peer
    row["gossip_msg_s"] = gossip_rate(dialler, listener, args.messages)
    return row


def uc_quic(args: argparse.Namespace) -> tuple[float, float]:
    """ucsdk -> ucsdk over QUIC: MB/s of ``--mib`` (the best of ``--transfers``) and of
    one ``--quic-mib`` bulk transfer (target 5's figure)."""
    total, bulk = args.mib << 20, args.quic_mib << 20
    with (
        ucsdk.Node.development(**SETTINGS, **QUIC) as a,
        ucsdk.Node.development(**SETTINGS, **QUIC) as b,
    ):
        b.handle(PROTOCOL, sink)
        a.connect(b.addrs[0])
        side = UcSide(a)
        side.send(b.peer_id, 1 << 20)  # warm-up
        small = total / min(side.send(b.peer_id, total) for _ in range(args.transfers)) / 1e6
        return small, bulk / side.send(b.peer_id, bulk) / 1e6


def js_process() -> tuple[Any, str | None]:
    """The js bench peer process (``None`` and why not when Node.js is missing; with
    UCSDK_REQUIRE_NODE=1 that is an error, as in the interop tests)."""
    sys.path.insert(0, str(ROOT))
    from tests.interop._ucjs import JsUnavailable, UcJsPeer, js_setup

    try:
        js_dir = js_setup()
    except JsUnavailable as exc:
        if os.environ.get("UCSDK_REQUIRE_NODE") == "1":
            raise
        return None, str(exc)
    return UcJsPeer(js_dir, script="bench-peer.mjs"), None


def js_node(js: Any) -> JsSide:
    """A new js-libp2p node in the bench peer process."""
    answer = js.command("node")
    return JsSide(js, int(answer["node"]), str(answer["peer"]), str(answer["addr"]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    js, why = js_process()
    try:
        with (
            ucsdk.Node.development(**SETTINGS) as a,
            ucsdk.Node.development(**SETTINGS) as b,
            ucsdk.Node.development(**SETTINGS) as c,
            ucsdk.Node.development(**SETTINGS) as d,
        ):
            for node in (a, b, c, d):
                node.handle(PROTOCOL, sink)
            rows.append(measure_pair(UcSide(a), UcSide(b), args))
            rows[-1]["quic_mb_s"], bulk = uc_quic(args)
            print_row(rows[-1])
            if js is None:
                print(f"js rows skipped: {why}", flush=True)
            else:
                pairs = (
                    (JsSide(js, 0, js.peer_id, js.addr), js_node(js)),
                    (UcSide(c), js_node(js)),
                    (js_node(js), UcSide(d)),
                )
                for dialler, listener in pairs:
                    rows.append(measure_pair(dialler, listener, args))
                    print_row(rows[-1])
    finally:
        if js is not None:
            js.stop()
    raw = (args.quic_mib << 20) / raw_quic(args.quic_mib << 20) / 1e6
    return {
        "rows": rows,
        "quic_bulk_mib": args.quic_mib,
        "quic_bulk_mb_s": bulk,
        "raw_aioquic_mb_s": raw,
        "js_skipped": why,
    }


# ------------------------------------------------------------------------ printing
def fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_header() -> None:
    print(
        f"{'pairing':<16}{'connect ms':>11}{'ping ms':>9}{'rtt ms':>8}"
        f"{'TCP MB/s':>10}{'QUIC MB/s':>11}{'gossip msg/s':>14}",
        flush=True,
    )


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['pairing']:<16}{fmt(row['connect_ms'], '.2f'):>11}{fmt(row['ping_ms'], '.2f'):>9}"
        f"{fmt(row['rtt_ms'], '.2f'):>8}{fmt(row['tcp_mb_s'], '.1f'):>10}"
        f"{fmt(row['quic_mb_s'], '.1f'):>11}{fmt(row['gossip_msg_s'], ',.0f'):>14}",
        flush=True,
    )


def print_targets(result: dict[str, Any]) -> None:
    rows = {row["pairing"]: row for row in result["rows"]}
    uc, js = rows.get("ucsdk -> ucsdk"), rows.get("js -> js")
    raw, bulk, mib = result["raw_aioquic_mb_s"], result["quic_bulk_mb_s"], result["quic_bulk_mib"]
    print(f"QUIC n/a on js: {JS_NO_QUIC}")
    print(
        f"QUIC bulk, {mib} MiB in 64 KiB writes: ucsdk -> ucsdk {bulk:.1f} MB/s, "
        f"raw aioquic {raw:.1f} MB/s"
    )
    if uc is not None and js is not None:
        met = "met" if uc["ping_ms"] <= js["ping_ms"] else "NOT met"
        print(
            f"target 3 (new-stream ping, ucsdk <= js): ucsdk {uc['ping_ms']:.2f} ms, "
            f"js {js['ping_ms']:.2f} ms: {met}"
        )
    else:
        print(f"target 3 (new-stream ping, ucsdk <= js): n/a (no js: {result['js_skipped']})")
    share = bulk / raw
    met = "met" if share >= QUIC_TARGET else "NOT met"
    print(
        f"target 5 (ucsdk QUIC >= {QUIC_TARGET:.0%} of raw aioquic): "
        f"{bulk:.1f} of {raw:.1f} MB/s = {share:.0%}: {met}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a test runs this)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--mib", type=int, default=1, help="MiB per transfer")
    parser.add_argument("--quic-mib", type=int, default=None, help="MiB of the QUIC bulk run")
    args = parser.parse_args()
    args.connects = 5 if args.quick else 20
    args.pings = 20 if args.quick else 200
    args.transfers = 1 if args.quick else 5
    args.messages = 500 if args.quick else 5000
    args.quic_mib = args.quic_mib or (8 if args.quick else 32)
    load = os.getloadavg()[0]
    print(f"ucsdk {ucsdk.__version__} and js-libp2p side by side on loopback (load {load:.2f})")
    print_header()
    result = run(args)
    print_targets(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
