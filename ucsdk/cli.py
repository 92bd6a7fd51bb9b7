"""The ``ucsdk`` command: run a node, ping a peer, or watch a local swarm.

Example:
    >>> from ucsdk.cli import build_parser
    >>> build_parser().parse_args(["ping", "/ip4/127.0.0.1/tcp/1/p2p/x", "--count", "3"]).count
    3
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

import pandas as pd

from ucsdk import errors
from ucsdk.config import ConnectivityConfig
from ucsdk.sync import Node

EXIT_OK = 0
EXIT_NETWORK = 1
EXIT_BAD_INPUT = 2

PEER_VIEW = ["peer_id", "sources", "connected", "connection_type", "transport", "rtt_ms"]


def _short(peer_id: object) -> str:
    text = str(peer_id)
    return text if len(text) <= 16 else f"{text[:8]}…{text[-6:]}"


def peer_table(node: Node) -> str:
    """A terminal-friendly view of ``node.peers()``."""
    frame = node.peers()
    if frame.empty:
        return "(no peers yet)"
    view = frame[[*PEER_VIEW, "agent_version"]].copy()
    view["peer_id"] = view["peer_id"].map(_short)
    view["sources"] = view["sources"].map(lambda s: ",".join(s))
    view["rtt_ms"] = view["rtt_ms"].round(3)
    return view.to_string(index=False)


def _node_config(args: argparse.Namespace) -> ConnectivityConfig:
    overrides: dict[str, object] = {"listen_host": args.listen_host, "log_level": None}
    if args.transport:
        overrides["transports"] = list(dict.fromkeys(args.transport))
    if args.port:
        if len(overrides.get("transports", ["tcp"])) != 1:  # type: ignore[arg-type]
            raise errors.ConfigError("--port", args.port, "a single --transport with --port")
        transport = overrides.get("transports", ["tcp"])[0]  # type: ignore[index]
        base = ConnectivityConfig(
            transports=[transport], listen_host=args.listen_host
        ).resolved_listen_addrs()[0]
        overrides["listen_addrs"] = [base.replace("/0", f"/{args.port}", 1)]
    if args.identity:
        overrides["identity_path"] = args.identity
    return ConnectivityConfig.preset("development", **overrides)


class _StopFlag:
    """Set by SIGINT/SIGTERM; the main loop polls it."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def cmd_node(args: argparse.Namespace) -> int:
    node = Node(_node_config(args))
    stop = _StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"peer id: {node.peer_id}")
        for addr in node.addrs:
            print(f"listening: {addr}")
        print(f"READY {node.addrs[0]}", flush=True)
        for target in args.connect or ():
            info = node.connect(target)
            print(f"connected: {info.peer_id} via {info.transport}", flush=True)
        while True:
            print(f"\n{time.strftime('%H:%M:%S')}  peers of {_short(node.peer_id)}")
            print(peer_table(node), flush=True)
            if args.once or stop.event.wait(args.interval):
                break
    finally:
        node.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def cmd_ping(args: argparse.Namespace) -> int:
    with Node.development() as node:
        info = node.connect(args.multiaddr, timeout=args.timeout)
        print(f"connected to {info.peer_id} over {info.transport}")
        rtts = node.ping(info.peer_id, count=args.count, timeout=args.timeout)
    for index, rtt in enumerate(rtts, 1):
        print(f"ping {index}: {rtt:.2f} ms")
    print(
        f"min {min(rtts):.2f} ms, median {statistics.median(rtts):.2f} ms, max {max(rtts):.2f} ms"
    )
    return EXIT_OK


# ---------------------------------------------------------------------- the demo
class _Children:
    """Node processes the demo started; it ends exactly these, by their handles."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, connect: str | None) -> tuple[subprocess.Popen[str], str]:
        command = [sys.executable, "-m", "ucsdk", "node", "--listen-host", "127.0.0.1"]
        command += ["--interval", "3600"]
        if connect:
            command += ["--connect", connect]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.processes.append(process)
        return process, _read_ready(process, timeout=30.0)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _read_ready(process: subprocess.Popen[str], timeout: float) -> str:
    found: list[str] = []

    def reader() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY "):
                found.append(line.split(" ", 1)[1].strip())
                break

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        raise errors.NodeStartError([], f"node process {process.pid} did not become ready")
    # Keep draining its output so a full pipe never blocks the child.
    threading.Thread(target=lambda: process.stdout and process.stdout.read(), daemon=True).start()
    return found[0]


def _step(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", flush=True)


def _demo_swarm(nodes: int) -> None:
    """Section 1: separate node processes on loopback, connected, pinged, tabulated."""
    total = 5
    children = _Children()
    try:
        _step(1, total, f"starting {nodes - 1} node processes on 127.0.0.1 ...")
        addrs: list[str] = []
        for _ in range(nodes - 1):
            process, addr = children.start(addrs[-1] if addrs else None)
            addrs.append(addr)
            print(f"    child pid {process.pid} peer {addr.rsplit('/p2p/', 1)[1]} at {addr}")
        _step(2, total, "starting this process's node ...")
        with Node.development() as node:
            print(f"    peer {node.peer_id} at {node.addrs[0]}")
            _step(3, total, f"connecting to {len(addrs)} nodes ...")
            for addr in addrs:
                info = node.connect(addr)
                print(f"    connected {info.peer_id} via {info.transport} ({info.connection_type})")
            _step(4, total, "pinging each node 5 times ...")
            for addr in addrs:
                peer_id = addr.rsplit("/p2p/", 1)[1]
                rtts = node.ping(peer_id, count=5)
                print(f"    {_short(peer_id)}: median {statistics.median(rtts):.3f} ms")
            time.sleep(0.3)  # let identify answers arrive for the table
            _step(5, total, "what this node sees")
            print("\nPeers:")
            print(peer_table(node))
            print("\nConnections:")
            conns = node.connections()
            conns["peer_id"] = conns["peer_id"].map(_short)
            print(conns.drop(columns=["opened_at"]).to_string(index=False))
            print("\nMetrics:")
            metrics = dataclasses.asdict(node.metrics())
            print(pd.Series(metrics).to_string())
    finally:
        children.stop_all()
        print(f"\nstopped {len(children.processes)} node processes")


def cmd_demo(args: argparse.Namespace) -> int:
    if args.nodes < 2:
        raise errors.InvalidInput("--nodes", args.nodes, "at least 2")
    started = time.monotonic()
    _demo_swarm(args.nodes)
    print(
        "\nNot in this demo yet: discovery (pubsub, mDNS, DHT) and NAT traversal "
        "(AutoNAT, relay, DCUtR in the NAT lab)."
    )
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ucsdk", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    node = commands.add_parser("node", help="run a node and show its peers until Ctrl-C")
    node.add_argument("--listen-host", default="127.0.0.1")
    node.add_argument("--port", type=int, default=0)
    node.add_argument(
        "--transport", action="append", choices=["tcp", "quic", "websocket"], default=None
    )
    node.add_argument("--connect", action="append", metavar="MULTIADDR")
    node.add_argument("--identity", metavar="PATH", help="key file; created on first use")
    node.add_argument("--interval", type=float, default=2.0, help="seconds between tables")
    node.add_argument("--once", action="store_true", help="print the table once and exit")
    node.set_defaults(func=cmd_node)

    ping = commands.add_parser("ping", help="connect to MULTIADDR and ping it")
    ping.add_argument("multiaddr")
    ping.add_argument("--count", type=int, default=5)
    ping.add_argument("--timeout", type=float, default=10.0)
    ping.set_defaults(func=cmd_ping)

    demo = commands.add_parser("demo", help="a local swarm on loopback")
    demo.add_argument("--nodes", type=int, default=4)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (errors.InvalidInput, errors.ConfigError) as exc:
        print(f"ucsdk: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except errors.UcsdkError as exc:
        print(f"ucsdk: {exc}", file=sys.stderr)
        return EXIT_NETWORK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
