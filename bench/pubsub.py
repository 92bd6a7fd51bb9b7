"""Pubsub and streams: messages/s, latency and losses between ucsdk nodes and with
js-libp2p; stream MB/s over TCP and QUIC next to raw sockets. One run prints it all.

Run: ``make bench`` or ``.venv/bin/python bench/pubsub.py [--quick] [--json PATH]``.

1. ucsdk -> ucsdk pubsub, 100-byte messages. The publisher is a node in this process; the
   subscribers are nodes in child processes (``--subscribers N``), each connected to the
   publisher only, so every message goes straight from the publisher to each subscriber
   and publisher and subscribers run on different CPUs (one process is one trio loop, one
   CPU). Cases: 1 -> 1 with three publishers (``aio``: ``node.aio.publish`` with 64
   publishes in flight; ``blocking``: ``node.publish`` in a loop; ``paced``: ``node.publish``
   at 500 a second, the latency when no queue builds up), and 1 -> 10 (two child processes
   of five subscribers). Each payload carries (run, seq, ``perf_counter_ns`` at publish);
   ``perf_counter_ns`` is CLOCK_MONOTONIC on Linux, one clock for every process, so the
   latency (publish call to ``on_message``) holds across processes.
2. ucsdk <-> js-libp2p: the app peer of the interop tests (``tests/interop/js/uc-peer.mjs``,
   GossipSub as the universal-connectivity app configures it). ucsdk -> js: this process
   publishes, js reports each arrival with ``process.hrtime`` (CLOCK_MONOTONIC too);
   js -> ucsdk: js publishes with 64 in flight. Skipped, saying why, without Node.js.
3. Streams: ``--mib`` MiB in 64 KiB chunks from one node to an async handler that reads
   and discards them and answers one byte, over TCP and QUIC, with the blocking
   ``open_stream`` API and from the node's loop; next to them, in the same run, plain trio
   TCP sockets and aioquic with one stream, each with both ends on one event loop in one
   process, as the two nodes are here.

Figures per pubsub row: ``sent``, ``publish_per_s`` (publish calls returned per second),
``delivered_per_s`` (messages arrived at all subscribers / time from the first publish to
the last arrival), latency ``p50_ms``/``p99_ms``, ``lost`` (sent x subscribers - arrived),
``counted`` (drops the nodes' own counters recorded in the run) and ``silent`` (lost and
not counted). Target: >= 2,000 messages/s of 100 bytes between two ucsdk nodes (1 -> 1)
with no silent drop; the result says met / NOT met.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

import ucsdk

ROOT = Path(__file__).resolve().parents[1]
QUIET = {
    "enable_mdns": False,
    "enable_pubsub_discovery": False,
    "enable_autonat": False,
    "enable_dht_discovery": False,
    "auto_dial": False,
}
TOPIC = "bench"
SIZE = 100
HEADER = struct.Struct(">IQQ")  # run, seq, perf_counter_ns at the publish call
PAD = b"x" * (SIZE - HEADER.size)
IN_FLIGHT = 64
STALL = 5.0
"""Seconds without a new arrival after which the missing messages count as lost."""
CHUNK = 64 * 1024
PROTOCOL = "/ucsdk-bench/sink/1.0.0"
TARGET_RATE = 2000.0


def payload(run: int, seq: int) -> bytes:
    return HEADER.pack(run, seq, time.perf_counter_ns()) + PAD


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def counted_drops(node: ucsdk.Node) -> Counter[str]:
    """What the node's counters say it dropped (pubsub and everything else)."""
    return Counter(node.metrics().invalid_message_kinds)


# ------------------------------------------------------------- subscriber process
class Arrivals:
    """One subscriber's ``on_message``: per run, the seqs seen, latencies, last arrival."""

    def __init__(self) -> None:
        self.seqs: dict[int, set[int]] = {}
        self.dups: Counter[int] = Counter()
        self.latency_ns: dict[int, list[int]] = {}
        self.last_ns: dict[int, int] = {}
        self.changed = threading.Event()

    def __call__(self, message: Any) -> None:
        now = time.perf_counter_ns()
        if message.local or len(message.data) < HEADER.size:
            return
        run, seq, sent = HEADER.unpack_from(message.data)
        seen = self.seqs.setdefault(run, set())
        if seq in seen:
            self.dups[run] += 1
        seen.add(seq)
        self.latency_ns.setdefault(run, []).append(now - sent)
        self.last_ns[run] = now
        self.changed.set()


def serve_subscribers(count: int, connect: str) -> int:
    """Child process: ``count`` subscriber nodes connected to ``connect``; JSON lines in
    (``{"run": R, "n": N}``: report when all N arrived or nothing came for STALL s), JSON
    lines out."""
    nodes = [ucsdk.Node.development(**QUIET) for _ in range(count)]
    arrivals = [Arrivals() for _ in nodes]
    try:
        for node, seen in zip(nodes, arrivals, strict=True):
            node.subscribe(TOPIC, seen)
            node.connect(connect)
        print(json.dumps({"ready": [n.peer_id for n in nodes]}), flush=True)
        for line in sys.stdin:
            order = json.loads(line)
            if order.get("stop"):
                break
            run, n = order["run"], order["n"]
            before = [counted_drops(node) for node in nodes]
            last_progress, total = time.monotonic(), -1
            while True:
                now_total = sum(len(a.seqs.get(run, ())) for a in arrivals)
                if now_total == n * len(nodes):
                    break
                if now_total != total:
                    total, last_progress = now_total, time.monotonic()
                elif time.monotonic() - last_progress > STALL:
                    break
                for a in arrivals:
                    a.changed.clear()
                arrivals[0].changed.wait(0.05)
            counted: Counter[str] = Counter()
            for node, was in zip(nodes, before, strict=True):
                counted.update(counted_drops(node) - was)
            latencies = [x / 1e6 for a in arrivals for x in a.latency_ns.get(run, [])]
            report = {
                "received": [len(a.seqs.get(run, ())) for a in arrivals],
                "dups": sum(a.dups[run] for a in arrivals),
                "last_ns": max((a.last_ns.get(run, 0) for a in arrivals), default=0),
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "counted": dict(counted),
            }
            print(json.dumps(report), flush=True)
    finally:
        for node in nodes:
            node.stop()
    return 0


class Subscribers:
    """A child process of subscriber nodes (see :func:`serve_subscribers`)."""

    def __init__(self, count: int, connect: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-subscribers", str(count), "--connect", connect],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=ROOT,
        )
        self.peer_ids: list[str] = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a subscriber process ended (exit {self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, run: int, n: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"run": run, "n": n}) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        return self._read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"stop": True}) + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# ------------------------------------------------------------------- publishers
def publish_aio(node: ucsdk.Node, run: int, n: int) -> None:
    async def main() -> None:
        seqs = iter(range(n))

        async def worker() -> None:
            for seq in seqs:
                await node.aio.publish(TOPIC, payload(run, seq))

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))

    asyncio.run(main())


def publish_blocking(node: ucsdk.Node, run: int, n: int) -> None:
    for seq in range(n):
        node.publish(TOPIC, payload(run, seq))


PACED_RATE = 500.0
"""Messages per second of the ``paced`` publisher: latency without a queue building up."""


def publish_paced(node: ucsdk.Node, run: int, n: int) -> None:
    started = time.perf_counter()
    for seq in range(n):
        pause = started + seq / PACED_RATE - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        node.publish(TOPIC, payload(run, seq))


PUBLISHERS = {"aio": publish_aio, "blocking": publish_blocking, "paced": publish_paced}


def pubsub_case(
    publisher: ucsdk.Node, groups: list[Subscribers], how: str, run: int, n: int
) -> dict[str, Any]:
    subscribers = sum(len(g.peer_ids) for g in groups)
    before = counted_drops(publisher)
    for group in groups:
        group.ask(run, n)
    started_ns = time.perf_counter_ns()
    PUBLISHERS[how](publisher, run, n)
    published_ns = time.perf_counter_ns()
    answers = [g.answer() for g in groups]
    arrived = sum(sum(a["received"]) for a in answers)
    counted: Counter[str] = counted_drops(publisher) - before
    for a in answers:
        counted.update(a["counted"])
    last_ns = max(a["last_ns"] for a in answers) or published_ns
    lost = n * subscribers - arrived
    n_counted = sum(counted.values())
    return {
        "case": f"ucsdk -> {subscribers} ucsdk",
        "publisher": how,
        "sent": n,
        "publish_per_s": n / ((published_ns - started_ns) / 1e9),
        "delivered_per_s": arrived / ((last_ns - started_ns) / 1e9),
        "p50_ms": max(a["p50_ms"] for a in answers),
        "p99_ms": max(a["p99_ms"] for a in answers),
        "lost": lost,
        "dups": sum(a["dups"] for a in answers),
        "counted": n_counted,
        "counted_kinds": dict(counted),
        "silent": max(0, lost - n_counted),
    }


def pubsub_section(n: int, n_fanout: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with ucsdk.Node.development(**QUIET) as publisher:
        publisher.subscribe(TOPIC)  # so its mesh holds the subscribers
        addr = publisher.addrs[0]
        run = 0
        for fanout, how, count in (
            ([1], "aio", n),
            ([1], "blocking", n),
            ([1], "paced", min(n, int(PACED_RATE * 4))),
            ([5, 5], "aio", n_fanout),
        ):
            groups = [Subscribers(size, addr) for size in fanout]
            try:
                if not publisher.wait_for_subscribers(TOPIC, sum(fanout), timeout=30):
                    raise RuntimeError("the subscribers did not join the topic")
                run += 1
                pubsub_case(publisher, groups, how, run, min(200, count))  # warm-up
                run += 1
                row = pubsub_case(publisher, groups, how, run, count)
            finally:
                for group in groups:
                    group.stop()
            print_row(row)
            rows.append(row)
            # The next case's subscribers find the mesh empty of these ones.
            deadline = time.monotonic() + 10
            while len(publisher.connections()) and time.monotonic() < deadline:
                time.sleep(0.05)
    return rows


def print_header() -> None:
    print(
        f"{'case':<22}{'publisher':<11}{'sent':>7}{'publish/s':>11}{'delivered/s':>13}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'lost':>7}{'counted':>9}{'silent':>8}",
        flush=True,
    )


def print_row(row: dict[str, Any]) -> None:
    publish = row.get("publish_per_s")
    print(
        f"{row['case']:<22}{row['publisher']:<11}{row['sent']:>7}"
        f"{(f'{publish:,.0f}' if publish else '-'):>11}{row['delivered_per_s']:>13,.0f}"
        f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['lost']:>7}{row['counted']:>9}"
        f"{row['silent']:>8}",
        flush=True,
    )


# ---------------------------------------------------------------------------- js
def js_section(n: int) -> list[dict[str, Any]]:
    """ucsdk -> js and js -> ucsdk through the interop tests' app peer; [] without js."""
    sys.path.insert(0, str(ROOT))
    from tests.interop._ucjs import JsUnavailable, UcJsPeer, js_setup

    try:
        js_dir = js_setup()
    except JsUnavailable as exc:
        print(f"ucsdk <-> js skipped: {exc}", flush=True)
        return []
    rows: list[dict[str, Any]] = []
    settings = {**QUIET, "pubsub_message_id": "uc"}
    with UcJsPeer(js_dir) as js, ucsdk.Node.development(**settings) as node:
        seen = Arrivals()
        node.subscribe(TOPIC, seen)
        js.command("subscribe", topic=TOPIC)
        node.connect(js.addr)
        if not node.wait_for_subscribers(TOPIC, 1, timeout=30):
            raise RuntimeError("ucsdk did not see the js peer join the topic")
        if not js.wait_for_subscriber(TOPIC, node.peer_id):
            raise RuntimeError("the js peer did not see ucsdk join the topic")
        rows.append(_to_js(js, node, n))
        print_row(rows[-1])
        rows.append(_from_js(js, node, seen, n))
        print_row(rows[-1])
    return rows


def _to_js(js: Any, node: ucsdk.Node, n: int) -> dict[str, Any]:
    """This process publishes text payloads ``"<seq> <perf_counter_ns> xxx..."``; js
    prints each arrival with its ``process.hrtime`` (the same clock)."""
    before = counted_drops(node)
    started_ns = time.perf_counter_ns()

    async def publish() -> None:
        seqs = iter(range(n))

        async def worker() -> None:
            for seq in seqs:
                await node.aio.publish(TOPIC, f"{seq} {time.perf_counter_ns()} ".ljust(SIZE, "x"))

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))

    asyncio.run(publish())
    published_ns = time.perf_counter_ns()

    def arrivals() -> list[dict[str, Any]]:
        return [e for e in list(js.events) if e.get("event") == "message" and e["topic"] == TOPIC]

    last, last_change = -1, time.monotonic()
    while len(got := arrivals()) < n and time.monotonic() - last_change < STALL:
        if len(got) != last:
            last, last_change = len(got), time.monotonic()
        time.sleep(0.05)
    got = arrivals()
    seqs = {int(e["text"].split()[0]) for e in got}
    latencies = [(int(e["received_ns"]) - int(e["text"].split()[1])) / 1e6 for e in got]
    last_ns = max((int(e["received_ns"]) for e in got), default=published_ns)
    return js_row(
        ("ucsdk -> js", "aio", n),
        n / ((published_ns - started_ns) / 1e9),
        len(seqs) / ((last_ns - started_ns) / 1e9),
        latencies,
        (n - len(seqs), len(got) - len(seqs)),
        counted_drops(node) - before,
    )


def _from_js(js: Any, node: ucsdk.Node, seen: Arrivals, n: int) -> dict[str, Any]:
    """js publishes ``n`` payloads in this bench's binary layout, 64 in flight."""
    run = 7
    before = counted_drops(node)
    started_ns = time.perf_counter_ns()
    answer = js.command("flood", topic=TOPIC, count=n, size=SIZE, run=run, timeout=300)
    last, last_change = -1, time.monotonic()
    while (count := len(seen.seqs.get(run, ()))) < n and time.monotonic() - last_change < STALL:
        if count != last:
            last, last_change = count, time.monotonic()
        time.sleep(0.05)
    arrived = len(seen.seqs.get(run, ()))
    return js_row(
        ("js -> ucsdk", "js (64)", n),
        n / (answer["ms"] / 1e3),
        arrived / ((seen.last_ns.get(run, started_ns) - started_ns) / 1e9),
        [x / 1e6 for x in seen.latency_ns.get(run, [])],
        (n - arrived, seen.dups[run]),
        counted_drops(node) - before,
    )


def js_row(
    what: tuple[str, str, int],
    publish_per_s: float,
    delivered_per_s: float,
    latencies: list[float],
    lost_and_dups: tuple[int, int],
    kinds: Counter[str],
) -> dict[str, Any]:
    """One row of the js section: ``what`` is (case, publisher, sent)."""
    (case, publisher, sent), (lost, dups) = what, lost_and_dups
    counted = sum(kinds.values())
    return {
        "case": case,
        "publisher": publisher,
        "sent": sent,
        "publish_per_s": publish_per_s,
        "delivered_per_s": delivered_per_s,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "lost": lost,
        "dups": dups,
        "counted": counted,
        "counted_kinds": dict(kinds),
        "silent": max(0, lost - counted),
    }


# ---------------------------------------------------------------------- streams
async def sink(stream: Any) -> None:
    """The bench protocol's handler: read an 8-byte length, then that many bytes
    (discarded), then answer one byte."""
    total = int.from_bytes(await stream.read_exactly(8), "big")
    got = 0
    while got < total:
        chunk = await stream.read(CHUNK)
        if not chunk:
            raise RuntimeError(f"the stream ended after {got} of {total} bytes")
        got += len(chunk)
    await stream.write(b"k")
    await stream.close()


def stream_blocking(a: ucsdk.Node, b: ucsdk.Node, total: int) -> float:
    chunk = os.urandom(CHUNK)
    started = time.perf_counter()
    with a.open_stream(b.peer_id, PROTOCOL, timeout=60) as stream:
        stream.write(total.to_bytes(8, "big"))
        for _ in range(total // CHUNK):
            stream.write(chunk, timeout=60)
        assert stream.read_exactly(1, timeout=120) == b"k"
    return time.perf_counter() - started


def stream_on_loop(a: ucsdk.Node, b: ucsdk.Node, total: int) -> float:
    manager, chunk = a.manager, os.urandom(CHUNK)

    async def main() -> float:
        started = time.perf_counter()
        stream = await manager.open_stream(b.peer_id, PROTOCOL)
        await stream.write(total.to_bytes(8, "big"))
        for _ in range(total // CHUNK):
            await stream.write(chunk)
        assert await stream.read_exactly(1) == b"k"
        await stream.close()
        return time.perf_counter() - started

    return a._portal.call(main)  # type: ignore[no-any-return]


def raw_tcp(total: int) -> float:
    """Plain trio TCP sockets over loopback, both ends on one trio loop (as the nodes)."""
    chunk = os.urandom(CHUNK)

    async def main() -> float:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def serve(server: trio.SocketStream) -> None:
            got = 0
            while got < total:
                data = await server.receive_some(CHUNK)
                if not data:
                    break
                got += len(data)
            await server.send_all(b"k")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, serve, listeners)
            started = time.perf_counter()
            client = await trio.open_tcp_stream("127.0.0.1", port)
            for _ in range(total // CHUNK):
                await client.send_all(chunk)
            assert await client.receive_some(1) == b"k"
            elapsed = time.perf_counter() - started
            await client.aclose()
            nursery.cancel_scope.cancel()
        return elapsed

    return trio.run(main)


def raw_quic(total: int) -> float:
    """aioquic (asyncio) client and server over loopback, one stream, one event loop."""
    from aioquic.asyncio import QuicConnectionProtocol, connect, serve
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import StreamDataReceived
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )

    class Sink(QuicConnectionProtocol):
        got = 0

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, StreamDataReceived):
                self.got += len(event.data)
                if self.got >= total:
                    self._quic.send_stream_data(event.stream_id, b"k", end_stream=True)
                    self.transmit()

    async def main(certfile: str, keyfile: str) -> float:
        server_config = QuicConfiguration(is_client=False, alpn_protocols=["bench"])
        server_config.load_cert_chain(certfile, keyfile)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = await serve("127.0.0.1", port, configuration=server_config, create_protocol=Sink)
        try:
            client_config = QuicConfiguration(is_client=True, alpn_protocols=["bench"])
            client_config.verify_mode = 0  # ssl.CERT_NONE: a self-signed certificate
            chunk = os.urandom(CHUNK)
            started = time.perf_counter()
            async with connect("127.0.0.1", port, configuration=client_config) as client:
                reader, writer = await client.create_stream()
                for _ in range(total // CHUNK):
                    writer.write(chunk)
                    await writer.drain()
                assert await reader.readexactly(1) == b"k"
                return time.perf_counter() - started
        finally:
            server.close()

    with tempfile.TemporaryDirectory() as tmp:
        certfile, keyfile = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        Path(certfile).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        Path(keyfile).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return asyncio.run(main(certfile, keyfile))


def stream_section(mib: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    print(f"{'':<6}{'way':<30}{'MiB':>6}{'s':>8}{'MB/s':>9}{'raw / this':>12}", flush=True)

    def add(transport: str, way: str, total: int, seconds: float, raw: float | None) -> None:
        row: dict[str, Any] = {
            "transport": transport,
            "way": way,
            "mib": total / (1 << 20),
            "seconds": seconds,
            "mb_per_s": total / seconds / 1e6,
        }
        if raw is not None:
            row["raw_over_this"] = raw / row["mb_per_s"]
        rows.append(row)
        ratio = f"{row['raw_over_this']:>11.1f}x" if raw is not None else f"{'':>12}"
        print(
            f"{transport:<6}{way:<30}{row['mib']:>6.0f}{seconds:>8.2f}{row['mb_per_s']:>9.1f}{ratio}",
            flush=True,
        )

    quic = {"listen_addrs": ["/ip4/127.0.0.1/udp/0/quic-v1"], "transports": ["quic"]}
    for transport, extra in (("tcp", {}), ("quic", quic)):
        total = mib << 20
        raw_fn = raw_tcp if transport == "tcp" else raw_quic
        raw_name = "raw trio TCP sockets" if transport == "tcp" else "raw aioquic, one stream"
        raw_seconds = raw_fn(total)
        raw_mbps = total / raw_seconds / 1e6
        add(transport, raw_name, total, raw_seconds, None)
        with (
            ucsdk.Node.development(**QUIET, **extra) as a,
            ucsdk.Node.development(**QUIET, **extra) as b,
        ):
            b.handle(PROTOCOL, sink)
            a.connect(b.addrs[0])
            stream_on_loop(a, b, 1 << 20)  # warm-up
            blocking = stream_blocking(a, b, total)
            add(transport, "ucsdk open_stream (blocking)", total, blocking, raw_mbps)
            add(transport, "ucsdk stream on the loop", total, stream_on_loop(a, b, total), raw_mbps)
    return rows


# ------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a test runs this)")
    parser.add_argument("--messages", type=int, default=None, help="messages per 1 -> 1 run")
    parser.add_argument("--mib", type=int, default=None, help="MiB per stream run")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--serve-subscribers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connect", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_subscribers:
        return serve_subscribers(args.serve_subscribers, args.connect)
    n = args.messages or (500 if args.quick else 10_000)
    mib = args.mib or (4 if args.quick else 64)
    print(
        f"ucsdk pubsub and streams, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {SIZE}-byte messages",
        flush=True,
    )
    print("\n1. ucsdk -> ucsdk (subscribers in other processes)", flush=True)
    print_header()
    pubsub = pubsub_section(n, max(100, n // 5))
    print("\n2. ucsdk <-> js-libp2p (the universal-connectivity app peer)", flush=True)
    print_header()
    js = js_section(max(100, n // 2))
    print(f"\n3. streams, {mib} MiB in 64 KiB writes", flush=True)
    streams = stream_section(mib)
    best = max(
        (r["delivered_per_s"] for r in pubsub if r["case"] == "ucsdk -> 1 ucsdk"), default=0.0
    )
    silent = sum(r["silent"] for r in pubsub + js)
    met = best >= TARGET_RATE and silent == 0
    print(
        f"\ntarget: >= {TARGET_RATE:,.0f} messages/s between two ucsdk nodes with no silent "
        f"drop: {best:,.0f}/s, {silent} silent drops: {'met' if met else 'NOT met'}",
        flush=True,
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "when": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "pubsub": pubsub,
                    "js": js,
                    "streams": streams,
                    "target_met": met,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
