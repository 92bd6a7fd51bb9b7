"""The ``ucsdk`` command: run a node, chat, ping a peer, or watch a local swarm.

Log records from WARNING up go to stderr: ucsdk's always, py-libp2p's (the ``libp2p``
loggers) only with ``-v``; ``-vv`` shows INFO records too, ``-vvv`` DEBUG.

Example:
    >>> from ucsdk.cli import build_parser
    >>> build_parser().parse_args(["ping", "/ip4/127.0.0.1/tcp/1/p2p/x", "--count", "3"]).count
    3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import pandas as pd

from ucsdk import errors
from ucsdk.config import PRESETS, TRANSPORTS, ConnectivityConfig
from ucsdk.host import restore_libp2p_logging
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
    if args.bootstrap:
        overrides["connect_to_bootstrap"] = True
        overrides["bootstrap_peers"] = args.bootstrap
    if args.no_mdns:
        overrides["enable_mdns"] = False
    if args.no_pubsub:
        overrides["enable_pubsub_discovery"] = False
    if args.no_dht:
        overrides["enable_dht_discovery"] = False
    if args.announce_interval:
        overrides["pubsub_announce_interval"] = args.announce_interval
    if args.preset != "development" and not args.bootstrap:
        # Presets other than development dial the public bootstrap peers: only on request.
        overrides.setdefault("connect_to_bootstrap", False)
        overrides.setdefault("bootstrap_peers", [])
    return ConnectivityConfig.preset(args.preset, **overrides)


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
            if args.json:
                peers = [
                    {"peer_id": p.peer_id, "sources": list(p.sources), "connected": p.connected}
                    for p in node.get_discovered_peers()
                ]
                print(json.dumps({"time": time.time(), "peers": peers}), flush=True)
            else:
                # One write per table, ended by a blank line: a reader sees it is complete.
                header = f"{time.strftime('%H:%M:%S')}  peers of {_short(node.peer_id)}"
                print(f"\n{header}\n{peer_table(node)}\n", flush=True)
            if args.once or stop.event.wait(args.interval):
                break
    finally:
        node.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


CHAT_HELP = "commands: /dm PEER TEXT, /file PATH, /get FILE_ID [DEST], /peers, /quit"


def cmd_chat(args: argparse.Namespace) -> int:
    """``ucsdk chat``: a universal-connectivity peer in the terminal (stdin lines)."""
    from ucsdk.apps.uc import UC_SETTINGS, Chat

    config = _node_config(args).replace(**UC_SETTINGS)
    with Node(config) as node, Chat(node) as chat:
        print(f"peer id: {node.peer_id} (nick {node.peer_id[-8:]})")
        for addr in node.addrs:
            print(f"listening: {addr}")
        chat.on_line(lambda line: print(line, flush=True))
        for target in args.connect or ():
            info = node.connect(target)
            print(f"connected: {info.peer_id} via {info.transport}")
        print(CHAT_HELP)
        print(f"READY {node.addrs[0]}", flush=True)
        for raw in sys.stdin:
            line = raw.rstrip("\n")
            if line.strip() == "/quit":
                break
            try:
                _chat_command(chat, line)
            except errors.UcsdkError as exc:
                print(f"error: {exc}", flush=True)
    return EXIT_OK


def _chat_command(chat: object, line: str) -> None:
    from ucsdk.apps.uc import Chat

    assert isinstance(chat, Chat)
    if not line.strip():
        return
    if not line.startswith("/"):
        chat.send(line)
        return
    command, _, rest = line.partition(" ")
    if command == "/dm":
        peer, _, text = rest.strip().partition(" ")
        chat.dm(peer, text)
    elif command == "/file":
        file_id = chat.share_file(rest.strip())
        print(f"sharing {rest.strip()} as {file_id}", flush=True)
    elif command == "/get":
        file_id, _, dest = rest.strip().partition(" ")
        announced = [x for x in chat.lines() if x.kind == "file" and x.file_id == file_id]
        if not announced or announced[-1].peer_id is None:
            raise errors.InvalidInput("FILE_ID", file_id, "a file id announced in this chat")
        data = chat.fetch_file(announced[-1].peer_id, file_id, dest or None)
        print(f"fetched {file_id}: {len(data)} bytes" + (f" -> {dest}" if dest else ""))
    elif command == "/peers":
        print(chat.peers().to_string(index=False), flush=True)
    else:
        print(f"unknown command {command}; {CHAT_HELP}", flush=True)


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
class _Child:
    """A node process the demo started, with every line it printed."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.addr = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("READY "):
                self.addr = line.split(" ", 1)[1].strip()
                self.ready.set()

    @property
    def peer_id(self) -> str:
        return self.addr.rsplit("/p2p/", 1)[1]

    def last_table(self) -> list[str]:
        """The most recent complete peer table the child printed (one the blank line after
        it ends; the reader may hold only the first lines of a table being printed)."""
        lines = list(self.lines)
        starts = [
            i for i, line in enumerate(lines) if line.endswith(f"peers of {_short(self.peer_id)}")
        ]
        for start in reversed(starts):
            table: list[str] = []
            for line in lines[start + 1 :]:
                if not line.strip():
                    return table
                table.append(line)
        return []


class _Children:
    """Node processes the demo started; it ends exactly these, by their handles."""

    def __init__(self) -> None:
        self.children: list[_Child] = []

    def start(self, bootstrap: str | None) -> _Child:
        command = [sys.executable, "-m", "ucsdk", "node", "--listen-host", "127.0.0.1"]
        command += ["--interval", "1", "--announce-interval", "1"]
        if bootstrap:
            command += ["--bootstrap", bootstrap]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        child = _Child(process)
        self.children.append(child)
        if not child.ready.wait(30.0):
            raise errors.NodeStartError([], f"node process {process.pid} did not become ready")
        return child

    def stop_all(self) -> None:
        processes = [c.process for c in self.children]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _step(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", flush=True)


def _demo_swarm(nodes: int) -> None:
    """Separate node processes on loopback that know only one bootstrap node find each
    other through pubsub discovery; then this node pings them and shows its tables."""
    total = 6
    children = _Children()
    try:
        _step(1, total, "starting the bootstrap node process on 127.0.0.1 ...")
        bootstrap = children.start(None)
        print(f"    child pid {bootstrap.process.pid} peer {bootstrap.peer_id} (bootstrap)")
        _step(2, total, f"starting {nodes - 2} node processes that know only the bootstrap ...")
        for _ in range(nodes - 2):
            child = children.start(bootstrap.addr)
            print(f"    child pid {child.process.pid} peer {child.peer_id}")
        _step(3, total, "starting this process's node (it too knows only the bootstrap) ...")
        expected = {c.peer_id for c in children.children}
        config = ConnectivityConfig.preset(
            "development",
            connect_to_bootstrap=True,
            bootstrap_peers=[bootstrap.addr],
            pubsub_announce_interval=1.0,
        )
        with Node(config) as node:
            print(f"    peer {node.peer_id} at {node.addrs[0]}")
            _step(4, total, "waiting for pubsub discovery to find everyone ...")
            started = time.monotonic()
            found: set[str] = set()
            while time.monotonic() - started < 30 and not expected <= found:
                peers = node.get_discovered_peers()
                for peer in peers:
                    if "pubsub" in peer.sources and peer.peer_id not in found:
                        found.add(peer.peer_id)
                        print(
                            f"    found {_short(peer.peer_id)} via pubsub after "
                            f"{time.monotonic() - started:.1f} s"
                        )
                time.sleep(0.1)
            missing = expected - found
            if missing:
                print(f"    not found within 30 s: {', '.join(_short(p) for p in missing)}")
            _step(5, total, "pinging each node 5 times ...")
            for child in children.children:
                rtts = node.ping(child.peer_id, count=5)
                print(f"    {_short(child.peer_id)}: median {statistics.median(rtts):.3f} ms")
            time.sleep(1.5)  # identify answers and the children's next tables
            _step(6, total, "who found whom, and how")
            print(f"\nPeers of this node ({_short(node.peer_id)}):")
            print(peer_table(node))
            for child in children.children:
                print(f"\nPeers of child {_short(child.peer_id)} (pid {child.process.pid}):")
                print("\n".join(child.last_table()) or "(no table yet)")
            print("\nConnections of this node:")
            conns = node.connections()
            conns["peer_id"] = conns["peer_id"].map(_short)
            print(conns.drop(columns=["opened_at"]).to_string(index=False))
            print("\nMetrics of this node:")
            metrics = dataclasses.asdict(node.metrics())
            print(pd.Series(metrics).to_string())
    finally:
        children.stop_all()
        print(f"\nstopped {len(children.children)} node processes")


def _say(text: str) -> None:
    print(f"    {text}", flush=True)


def _demo_lab() -> None:
    """The NAT lab part of the demo: real NAT in network namespaces (root only)."""
    from ucsdk.lab import check_requirements
    from ucsdk.lab.scenarios import format_report, format_traversal, run_scenario, run_traversal

    print("\n=== The NAT lab: real NAT in Linux network namespaces ===", flush=True)
    try:
        check_requirements()
    except errors.LabUnavailable as exc:
        print(f"    skipped: {exc}")
        return
    report = run_scenario("all-nats", say=_say)
    print()
    print(format_report(report))
    print("\n=== NAT traversal in the lab: AutoNAT, Circuit Relay v2, DCUtR ===", flush=True)
    traversal = run_traversal(say=_say)
    print()
    print(format_traversal(traversal))


def cmd_demo(args: argparse.Namespace) -> int:
    if args.nodes < 3:
        raise errors.InvalidInput("--nodes", args.nodes, "at least 3")
    started = time.monotonic()
    _demo_swarm(args.nodes)
    if not args.no_lab:
        _demo_lab()
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def _print_frames(report: object, keys: Sequence[str]) -> None:
    """One JSON line per DataFrame attribute of a lab report: ``{"name": [rows]}``."""
    for key in keys:
        frame = getattr(report, key)
        print(json.dumps({key: json.loads(frame.to_json(orient="records"))}))


def cmd_lab(args: argparse.Namespace) -> int:
    from ucsdk.lab import Lab
    from ucsdk.lab.scenarios import (
        SCENARIOS,
        TRAVERSAL_DEFAULTS,
        TRAVERSAL_HOSTS,
        format_report,
        format_traversal,
        run_scenario,
        run_traversal,
    )

    if args.scenario in ("run", "export"):
        return _lab_file(args)
    if args.list or args.scenario is None:
        for name, (description, hosts) in sorted(SCENARIOS.items()):
            kinds = ", ".join(f"{h}:{nat.value}" for h, nat in hosts)
            print(f"{name:10s} {description}\n{'':10s} hosts {kinds}")
        kinds = ", ".join(f"{h}:{nat.value}" for h, nat in TRAVERSAL_HOSTS)
        print(f"{'traversal':10s} AutoNAT, relay reservations and DCUtR hole punching")
        print(f"{'':10s} hosts {kinds}")
        return EXIT_OK
    if args.scenario == "traversal":
        lab = Lab("traversal", keep_logs=args.keep_logs, node_defaults=TRAVERSAL_DEFAULTS)
        try:
            say = (lambda text: print(f"    {text}", file=sys.stderr)) if args.json else _say
            traversal = run_traversal(say=say, lab=lab)
            if args.json:
                _print_frames(traversal, ("autonat", "reservations", "hole_punches", "connections"))
            else:
                print()
                print(format_traversal(traversal))
        finally:
            lab.stop()
        return EXIT_OK
    lab = Lab(args.scenario, keep_logs=args.keep_logs)
    try:
        say = (lambda text: print(f"    {text}", file=sys.stderr)) if args.json else _say
        report = run_scenario(args.scenario, say=say, lab=lab)
        if args.json:
            _print_frames(
                report, ("topology", "reachability", "mapping", "relay_view", "nat_tables")
            )
        else:
            print()
            print(format_report(report))
    finally:
        lab.stop()
        if args.keep_logs:
            print(f"\nnode logs kept in {lab.workdir}")
    return EXIT_OK


def _lab_file(args: argparse.Namespace) -> int:
    """``ucsdk lab run FILE`` and ``ucsdk lab export FILE --to ENGINE``."""
    from ucsdk.lab.spec import Scenario

    if args.file is None:
        raise errors.InvalidInput(f"ucsdk lab {args.scenario} FILE", None, "a scenario file")
    scenario = Scenario.load(args.file)
    if args.scenario == "export":
        from ucsdk.lab.export import export, export_warnings

        if args.to is None:
            raise errors.InvalidInput("--to", None, "mininet, containernet or shadow")
        out = Path(
            args.out
            or Path(args.file).with_suffix(".shadow.yaml" if args.to == "shadow" else ".py").name
        )
        for warning in export_warnings(scenario, args.to):
            print(f"warning: {warning}", file=sys.stderr)
        print(export(scenario, args.to, out))
        return EXIT_OK
    _say(
        f"scenario {scenario.name}: {len(scenario.hosts)} hosts"
        + (
            f", a campaign of {scenario.campaign.trials} attempts per transport"
            if scenario.campaign is not None
            else ""
        )
    )
    from ucsdk.lab.campaigns import run

    result = run(scenario, args.out, keep_logs=args.keep_logs)
    if args.json:
        print(json.dumps({"results": json.loads(result.frame.to_json(orient="records"))}))
    else:
        print(result.frame.to_string())
        if scenario.campaign is not None:
            from ucsdk.lab.campaigns import compare_with_field, success_table

            print()
            print(success_table(result.frame).to_string())
            print()
            print(compare_with_field(result.frame).to_string())
    if args.out:
        print(f"\nresults, with the scenario and versions, in {args.out}")
    return EXIT_OK


# ------------------------------------------------------------------- logging
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class _HideLibp2p(logging.Filter):
    """Drops the records of py-libp2p's loggers (``libp2p`` and below)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "libp2p" or record.name.startswith("libp2p."))


def _configure_logging(verbose: int) -> logging.Handler:
    """A stderr handler on the root logger; py-libp2p's records reach it only when verbose.

    py-libp2p logs every failed dial attempt itself ("Failed to open TCP stream ..."), above
    the error ucsdk reports; without ``-v`` those lines are hidden. The filter sits on the
    handler, so it holds whatever levels the ``libp2p`` loggers get when a host is built.
    """
    restore_libp2p_logging()  # py-libp2p's loggers propagate to the root logger (here)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    if not verbose:
        handler.addFilter(_HideLibp2p())
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {0: logging.WARNING, 1: logging.WARNING, 2: logging.INFO}
    root.setLevel(levels.get(verbose, logging.DEBUG))
    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ucsdk", description=__doc__.splitlines()[0])
    verbose_help = "show py-libp2p's log lines (-vv: also INFO records, -vvv: DEBUG)"
    parser.add_argument("-v", "--verbose", action="count", default=0, help=verbose_help)
    # -v is also accepted after the subcommand (``ucsdk ping ADDR -v``).
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=verbose_help
    )
    commands = parser.add_subparsers(dest="command", required=True)

    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--listen-host", default="127.0.0.1")
    options.add_argument("--port", type=int, default=0)
    options.add_argument(
        "--preset",
        choices=PRESETS,
        default="development",
        help="configuration preset (server: TCP, QUIC, WebSocket and WebTransport, so "
        "browsers can reach the node; a relay)",
    )
    options.add_argument("--transport", action="append", choices=TRANSPORTS, default=None)
    options.add_argument("--connect", action="append", metavar="MULTIADDR")
    options.add_argument("--identity", metavar="PATH", help="key file; created on first use")
    options.add_argument("--bootstrap", action="append", metavar="MULTIADDR", help="bootstrap peer")
    options.add_argument("--announce-interval", type=float, help="pubsub discovery interval (s)")
    options.add_argument("--no-mdns", action="store_true", help="turn mDNS discovery off")
    options.add_argument("--no-pubsub", action="store_true", help="turn pubsub discovery off")
    options.add_argument("--no-dht", action="store_true", help="turn the Kademlia DHT off")

    node = commands.add_parser(
        "node", parents=[verbosity, options], help="run a node and show its peers until Ctrl-C"
    )
    node.add_argument("--json", action="store_true", help="print the peer table as JSON lines")
    node.add_argument("--interval", type=float, default=2.0, help="seconds between tables")
    node.add_argument("--once", action="store_true", help="print the table once and exit")
    node.set_defaults(func=cmd_node)

    chat = commands.add_parser(
        "chat",
        parents=[verbosity, options],
        help="chat with the universal-connectivity app's peers in this terminal",
        description="Type a line to send it. Commands: /dm PEER TEXT, /file PATH, "
        "/get FILE_ID [DEST], /peers, /quit.",
    )
    chat.set_defaults(func=cmd_chat)

    ping = commands.add_parser("ping", parents=[verbosity], help="connect to MULTIADDR and ping it")
    ping.add_argument("multiaddr")
    ping.add_argument("--count", type=int, default=5)
    ping.add_argument("--timeout", type=float, default=10.0)
    ping.set_defaults(func=cmd_ping)

    demo = commands.add_parser(
        "demo",
        parents=[verbosity],
        help="a local swarm on loopback, then the NAT lab when run as root",
    )
    demo.add_argument("--nodes", type=int, default=5)
    demo.add_argument("--no-lab", action="store_true", help="skip the NAT lab part")
    demo.set_defaults(func=cmd_demo)

    lab = commands.add_parser(
        "lab",
        parents=[verbosity],
        help="build a NAT lab scenario (root) and show what each node sees",
    )
    lab.add_argument(
        "scenario",
        nargs="?",
        help="scenario name; omit to list them; 'run FILE' runs a scenario file, "
        "'export FILE --to ENGINE' writes it for Mininet, Containernet or Shadow",
    )
    lab.add_argument("file", nargs="?", help="scenario file (.toml, .yaml) for run/export")
    lab.add_argument("--out", "-o", help="run: results file (.parquet, .csv); export: output")
    lab.add_argument("--to", choices=("mininet", "containernet", "shadow"), help="export engine")
    lab.add_argument("--list", action="store_true", help="list the scenarios")
    lab.add_argument("--json", action="store_true", help="print the tables as JSON lines")
    lab.add_argument("--keep-logs", action="store_true", help="keep the nodes' log files")
    lab.set_defaults(func=cmd_lab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = logging.getLogger()
    level = root.level
    handler = _configure_logging(args.verbose)
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
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
