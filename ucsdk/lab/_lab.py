"""The NAT lab: topologies of network namespaces with real NAT, one ucsdk node per host.

The module is ~800 lines: a lab, its hosts and the node process each host runs, whose
life cycles (build, crash clean-up, teardown) are tied together. The plumbing lives in
:mod:`ucsdk.lab.net` and :mod:`ucsdk.lab.nat`, the node process in :mod:`ucsdk.lab.agent`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ucsdk import errors, graph
from ucsdk.connectivity.diagnosis import Diagnosis, NatReport
from ucsdk.diagnostics import ResourceUsage
from ucsdk.graph import NetworkGraph
from ucsdk.lab import behaviour, net
from ucsdk.lab.behaviour import NatBehaviourReport
from ucsdk.lab.nat import NatType, router_ruleset
from ucsdk.lab.rpc import read_frame, write_frame
from ucsdk.lab.stun import STUN_PORT
from ucsdk.lab.zygote import ForkedProcess, Zygote
from ucsdk.metrics import ConnectivityMetrics
from ucsdk.peers import DiscoveredPeer, PeerInfo
from ucsdk.progress import progress
from ucsdk.sync import check_timeout, run_stop_hooks, wait_seconds

logger = logging.getLogger(__name__)

LIBP2P_PORT = 4001
PUBLIC_NET = "203.0.113"  # public hosts (TEST-NET-3)
ISP_NET = "198.51.100"  # the routers' WAN side (TEST-NET-2)
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_GRACE = 5.0
_lab_numbers = itertools.count(1)
#: The public host :meth:`Lab.nat_behaviour` adds (no node) as its two-address STUN server,
#: and that server's second address.
BEHAVIOUR_SERVER = "rfc5780"
BEHAVIOUR_SECOND_IP = f"{PUBLIC_NET}.250"
NAT_TABLE_COLUMNS = [
    "router",
    "proto",
    "state",
    "inside",
    "destination",
    "mapped_to",
    "translated",
    "assured",
]

# Defaults of every lab node: no public bootstrap, no mDNS, nothing dialled on its own, so
# every connection in an experiment is one the experiment asked for.
NODE_DEFAULTS: dict[str, Any] = {
    "connect_to_bootstrap": False,
    "bootstrap_peers": [],
    "enable_mdns": False,
    "auto_dial": False,
    "transports": ["tcp", "quic"],
    # A lab world is small: a NATed host may talk to one relay only. One observer's word
    # confirms an observed address here (go-libp2p deployments of a few peers lower its
    # threshold of 4 the same way); the field default asks 4 peers from 2 networks.
    "observed_addr_min_observers": 1,
    "observed_addr_min_groups": 1,
    # Every public lab host is in 203.0.113.0/24, one IP group: AutoNAT servers there
    # count as distinct networks only with this lowered the same way.
    "autonat_min_groups": 1,
    # A host's loopback and private addresses are its own: AutoNAT v2 servers elsewhere in
    # the lab must not be asked to dial them (the development preset allows it).
    "autonat_v2_allow_private": False,
    "listen_addrs": [
        f"/ip4/0.0.0.0/tcp/{LIBP2P_PORT}",
        f"/ip4/0.0.0.0/udp/{LIBP2P_PORT}/quic-v1",
    ],
}


class LabChat:
    """:class:`ucsdk.apps.uc.Chat` on a lab node: the same calls, run in its process."""

    def __init__(self, node: LabNode) -> None:
        self._node = node

    def _call(self, call: str, /, *args: Any, timeout: float | None = 30.0, **kw: Any) -> Any:
        return self._node.call("chat", call, *args, timeout=timeout, **kw)

    def send(self, text: str) -> str:
        return str(self._call("send", text))

    def dm(self, peer_id: str, text: str, *, timeout: float | None = 30.0) -> None:
        self._call("dm", peer_id, text, timeout=timeout)

    def share_file(self, data: bytes, *, name: str | None = None) -> str:
        return str(self._call("share_file", data, name=name))

    def fetch_file(self, peer_id: str, file_id: str, *, timeout: float | None = 30.0) -> bytes:
        return bytes(self._call("fetch_file", peer_id, file_id, timeout=timeout))

    def lines(self) -> list[Any]:
        return list(self._call("lines"))

    def messages(self) -> pd.DataFrame:
        result: pd.DataFrame = self._call("messages")
        return result

    def peers(self) -> pd.DataFrame:
        result: pd.DataFrame = self._call("peers")
        return result

    def wait_for(self, kind: str = "chat", *, timeout: float | None = 30.0) -> Any:
        """The first incoming line of ``kind`` (no predicate across processes)."""
        return self._call("wait_for", kind, timeout=timeout)

    def dropped(self) -> dict[str, int]:
        return dict(self._call("dropped"))


class LabNode:
    """A ucsdk node running as its own process inside a lab host's namespace.

    It offers the blocking calls of :class:`ucsdk.Node` (``peer_id``, ``addrs``, ``connect``,
    ``ping``, ``peers``, ``connections``, ``events``, ``metrics``, ...); each call travels to
    the process and back. Errors the node raises come back as
    :class:`ucsdk.errors.LabError` whose ``kind`` names the original exception.
    """

    def __init__(
        self,
        host: str,
        ns: str,
        config: dict[str, Any],
        log_path: Path,
        zygote: Zygote | None = None,
    ) -> None:
        self.host = host
        self.ns = ns
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | ForkedProcess
        if zygote is not None:
            # Forked from the lab's zygote into the namespace (see ucsdk.lab.zygote).
            self._proc = zygote.spawn(host, ns, config, log_path)
        else:
            self._log = open(log_path, "ab")  # noqa: SIM115 - closed in _reap
            self._proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    "-m",
                    "ucsdk.lab.agent",
                    json.dumps(config),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._ready: Future[Any] = Future()
        self._pending: dict[int, Future[Any]] = {0: self._ready}
        self._closed = False
        self._stop_hooks: list[Callable[[], None]] = []
        self._reader = threading.Thread(target=self._read, name=f"ucsdk-lab-{host}", daemon=True)
        self._reader.start()
        self._info: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        """The node process's id."""
        return self._proc.pid

    # ------------------------------------------------------------------ plumbing
    def _read(self) -> None:
        assert self._proc.stdout is not None
        while True:
            try:
                frame = read_frame(self._proc.stdout)
            except Exception as exc:
                logger.debug("lab node %s: unreadable frame: %s", self.host, exc)
                frame = None
            if frame is None:
                break
            call_id, ok, value = frame
            with self._lock:
                future = self._pending.pop(call_id, None)
            if future is None:
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(errors.LabError(f"lab node {self.host!r}", *value))
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            # The exit status comes a moment after the pipe closes (from the zygote).
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1)
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    errors.LabError(
                        f"lab node {self.host!r}",
                        "ProcessExited",
                        f"its process ended (exit {self._proc.poll()}); log: {self.log_path}",
                    )
                )

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the node runs; its ``peer_id`` and ``addrs``."""
        limit = check_timeout(timeout)
        if self._info is None:
            try:
                self._info = self._ready.result(wait_seconds(limit))
            except TimeoutError:
                raise errors.Timeout(f"starting lab node {self.host!r}", timeout) from None
        return self._info

    def call(self, method: str, *args: Any, timeout: float | None = 60.0, **kwargs: Any) -> Any:
        """Run ``method`` on the node in its process; its result.

        ``timeout`` (seconds, ``inf`` or ``None`` for no limit) bounds the call here and is
        passed on to the node's own call."""
        limit = math.inf if timeout is None else check_timeout(timeout)
        self.wait_ready()
        if self._closed:
            raise errors.NodeStopped(f"{method} on lab node {self.host!r}")
        if timeout is not None and method not in ("stun_probe", "tcp_probe", "stun_stats"):
            kwargs["timeout"] = limit
        future: Future[Any] = Future()
        with self._lock:
            call_id = next(self._ids)
            self._pending[call_id] = future
            assert self._proc.stdin is not None
            try:
                write_frame(self._proc.stdin, (call_id, method, args, kwargs))
            except (BrokenPipeError, ValueError, OSError) as exc:
                self._pending.pop(call_id, None)
                raise errors.LabError(f"lab node {self.host!r}", "ProcessExited", str(exc)) from exc
        try:
            return future.result(wait_seconds(limit, _GRACE))
        except TimeoutError:
            raise errors.Timeout(f"{method} on lab node {self.host!r}", limit) from None

    # ---------------------------------------------------------- Node's calls
    @property
    def peer_id(self) -> str:
        return str(self.wait_ready()["peer_id"])

    @property
    def addrs(self) -> list[str]:
        return list(self.wait_ready()["addrs"])

    def connect(self, multiaddr: str, *, timeout: float | None = 30.0) -> PeerInfo:
        result: PeerInfo = self.call("connect", multiaddr, timeout=timeout)
        return result

    def dial_peer(
        self,
        peer_id: str,
        addrs: Sequence[str] | None = None,
        use_relay: bool = True,
        *,
        timeout: float | None = 30.0,
    ) -> bool:
        return bool(self.call("dial_peer", peer_id, addrs, use_relay, timeout=timeout))

    def ping(self, peer_id: str, count: int = 5, *, timeout: float | None = 30.0) -> list[float]:
        result: list[float] = self.call("ping", peer_id, count, timeout=timeout)
        return result

    def find_peer(self, peer_id: str, *, timeout: float | None = 30.0) -> DiscoveredPeer:
        result: DiscoveredPeer = self.call("find_peer", peer_id, timeout=timeout)
        return result

    def disconnect(self, peer_id: str, *, timeout: float | None = 30.0) -> None:
        self.call("disconnect", peer_id, timeout=timeout)

    def peers(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        result: pd.DataFrame = self.call("peers", timeout=timeout)
        return result

    def connections(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        result: pd.DataFrame = self.call("connections", timeout=timeout)
        return result

    def events(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        result: pd.DataFrame = self.call("events", timeout=timeout)
        return result

    def metrics_history(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        result: pd.DataFrame = self.call("metrics_history", timeout=timeout)
        return result

    def metrics(self, *, timeout: float | None = 30.0) -> ConnectivityMetrics:
        result: ConnectivityMetrics = self.call("metrics", timeout=timeout)
        return result

    def get_metrics(self, *, timeout: float | None = 30.0) -> ConnectivityMetrics:
        return self.metrics(timeout=timeout)

    def get_discovered_peers(self, *, timeout: float | None = 30.0) -> list[DiscoveredPeer]:
        result: list[DiscoveredPeer] = self.call("get_discovered_peers", timeout=timeout)
        return result

    def autonat_reports(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """The node's AutoNAT answers (see :meth:`ucsdk.Node.autonat_reports`)."""
        result: pd.DataFrame = self.call("autonat_reports", timeout=timeout)
        return result

    def reachability(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """Per-address reachability (see :meth:`ucsdk.Node.reachability`)."""
        result: pd.DataFrame = self.call("reachability", timeout=timeout)
        return result

    def check_reachability(self, *, timeout: float | None = 60.0) -> pd.DataFrame:
        """An AutoNAT v2 round now (see :meth:`ucsdk.Node.check_reachability`)."""
        result: pd.DataFrame = self.call("check_reachability", timeout=timeout)
        return result

    def diagnose(self, peer_id: str, *, probe: bool = False, timeout: float = 15.0) -> Diagnosis:
        """Why can (or can't) the node reach ``peer_id`` (see :meth:`ucsdk.Node.diagnose`)."""
        result: Diagnosis = self.call("diagnose", peer_id, probe=probe, timeout=timeout)
        return result

    def nat_type(self, *, timeout: float | None = 30.0) -> NatReport:
        """The NAT the node sees itself behind (see :meth:`ucsdk.Node.nat_type`)."""
        result: NatReport = self.call("nat_type", timeout=timeout)
        return result

    def autonat_v2_checks(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """The node's AutoNAT v2 checks (see :meth:`ucsdk.Node.autonat_v2_checks`)."""
        result: pd.DataFrame = self.call("autonat_v2_checks", timeout=timeout)
        return result

    def probe_nat(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """Ask the connected AutoNAT servers now (see :meth:`ucsdk.Node.probe_nat`)."""
        result: pd.DataFrame = self.call("probe_nat", timeout=timeout)
        return result

    def reserve(self, relay: str, *, timeout: float | None = 30.0) -> Any:
        """Reserve a slot on a relay (see :meth:`ucsdk.Node.reserve`)."""
        return self.call("reserve", relay, timeout=timeout)

    def reservations(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """The node's relay reservations (see :meth:`ucsdk.Node.reservations`)."""
        result: pd.DataFrame = self.call("reservations", timeout=timeout)
        return result

    def hole_punches(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """The node's DCUtR outcomes (see :meth:`ucsdk.Node.hole_punches`)."""
        result: pd.DataFrame = self.call("hole_punches", timeout=timeout)
        return result

    def services(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """The node's background services and their state (see :meth:`ucsdk.Node.services`)."""
        result: pd.DataFrame = self.call("services", timeout=timeout)
        return result

    def addresses(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """The node's addresses and which it advertises (see :meth:`ucsdk.Node.addresses`)."""
        result: pd.DataFrame = self.call("addresses", timeout=timeout)
        return result

    def dial_attempts(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """Every address the node's dials tried (see :meth:`ucsdk.Node.dial_attempts`)."""
        result: pd.DataFrame = self.call("dial_attempts", timeout=timeout)
        return result

    def subscribe(self, topic: str, *, timeout: float | None = 30.0) -> None:
        """Join ``topic`` (no callback across processes: read :meth:`messages`)."""
        self.call("subscribe", topic, timeout=timeout)

    def publish(self, topic: str, data: bytes | str, *, timeout: float | None = 30.0) -> str:
        """Publish on ``topic`` (see :meth:`ucsdk.Node.publish`); the message id."""
        return str(self.call("publish", topic, data, timeout=timeout))

    def messages(self, topic: str | None = None, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """The node's pubsub history (see :meth:`ucsdk.Node.messages`)."""
        result: pd.DataFrame = self.call("messages", topic, timeout=timeout)
        return result

    def topics(self, *, timeout: float | None = 30.0) -> pd.DataFrame:
        """The node's topics (see :meth:`ucsdk.Node.topics`)."""
        result: pd.DataFrame = self.call("topics", timeout=timeout)
        return result

    def wait_for_subscribers(
        self, topic: str, count: int = 1, *, timeout: float | None = 30.0
    ) -> bool:
        """Whether ``count`` peers joined ``topic`` in time."""
        return bool(self.call("wait_for_subscribers", topic, count, timeout=timeout))

    @property
    def chat(self) -> LabChat:
        """The node's universal-connectivity chat (:class:`ucsdk.apps.uc.Chat` in the
        node's process, made on first use)."""
        return LabChat(self)

    @property
    def running(self) -> bool:
        """Whether the node's process is up and not stopped."""
        return not self._closed and self._proc.poll() is None

    def widget(self, **options: Any) -> Any:
        """A live dashboard of this lab node (see :meth:`ucsdk.Node.widget`)."""
        from ucsdk import widgets

        return widgets.dashboard(self, **options)

    def show(self, **options: Any) -> Any:
        """Display a live dashboard of this lab node and return it."""
        from ucsdk import widgets

        return widgets.show(self, **options)

    def graph(self, *, refresh: float = 1.0) -> Any:
        """A live picture of this lab node's connections (see :meth:`ucsdk.Node.graph`)."""
        from ucsdk import widgets

        return widgets.LiveGraph(lambda: widgets.node_graph_of(self), refresh=refresh, owner=self)

    def resources(self, detail: bool = False, *, timeout: float | None = 30.0) -> ResourceUsage:
        """The node process's open fds, threads, trio tasks and resident memory (see
        :meth:`ucsdk.Node.resources`), read inside that process."""
        result: ResourceUsage = self.call("resources", bool(detail), timeout=timeout)
        return result

    def rss_bytes(self) -> int:
        """Resident memory of the node's process (from ``/proc``)."""
        with open(f"/proc/{self.pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the node and its process (idempotent)."""
        limit = check_timeout(timeout)
        if self._closed:
            return
        self._closed = True
        run_stop_hooks(self._stop_hooks)
        if self._proc.poll() is None and self._proc.stdin is not None:
            future: Future[Any] = Future()
            with self._lock:
                self._pending[-1] = future
                with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                    write_frame(self._proc.stdin, (-1, "stop", (), {}))
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(wait_seconds(limit))
            except subprocess.TimeoutExpired:
                logger.warning("lab node %s did not stop in %ss: terminating", self.host, limit)
                self._proc.terminate()
                try:
                    self._proc.wait(3)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(3)
        self._reap()

    def _reap(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(3)
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._log is not None:
            self._log.close()

    def __repr__(self) -> str:
        return f"LabNode({self.host!r}, pid={self.pid})"


def _engine(host: LabHost) -> str | None:
    """The host's link engine, and whether its delay line still runs."""
    if host.wire is not None and not host.wire.running:
        return f"user (ended: exit {host.wire.proc.returncode})"
    return host.link_engine


@dataclass
class LabHost:
    """One host of a lab: its namespace, addresses, NAT and node."""

    name: str
    ns: str
    nat: NatType
    address: str
    public_ip: str
    routers: list[str] = field(default_factory=list)
    node_handle: LabNode | None = None
    latency_ms: float | None = None
    loss_percent: float | None = None
    jitter_ms: float | None = None
    bandwidth_mbps: float | None = None
    #: "netem", "user" (the delay line), or None (a plain cable).
    link_engine: str | None = None
    wire: net.DelayLine | None = None
    node_config: dict[str, Any] | None = None
    link_up: bool = True
    #: RFC 4787 options of the host's router (``None`` for a public host): whether the
    #: public port equals the inside port, whether the router hairpins, and the idle
    #: lifetime of its UDP mappings (``None``: the kernel's default).
    port_preservation: bool | None = None
    hairpinning: bool | None = None
    udp_timeout_s: float | None = None

    @property
    def gateway(self) -> str:
        """The host's default gateway (the ``.1`` of its /24)."""
        return self.address.rsplit(".", 1)[0] + ".1"

    @property
    def node(self) -> LabNode:
        """The host's running node (waits until it is up)."""
        if self.node_handle is None:
            raise errors.LabError(f"lab host {self.name!r}", "NoNode", "started with node=False")
        self.node_handle.wait_ready()
        return self.node_handle

    @property
    def is_public(self) -> bool:
        return self.nat is NatType.NONE

    @property
    def nat_router(self) -> str | None:
        """The namespace of the router directly in front of the host (``None`` if public)."""
        return self.routers[0] if self.routers else None

    def multiaddr(self, transport: str = "tcp") -> str:
        """The address others should dial: public IP (the router's for NATed hosts)."""
        proto = "tcp" if transport == "tcp" else "udp"
        suffix = "/quic-v1" if transport == "quic" else ""
        addr = f"/ip4/{self.public_ip}/{proto}/{LIBP2P_PORT}{suffix}"
        if self.node_handle is not None:
            addr += f"/p2p/{self.node.peer_id}"
        return addr


def _check_nat_options(
    kind: NatType, port_preservation: object, hairpinning: object, udp_timeout_s: object
) -> None:
    """Reject RFC 4787 router options that are not well formed or mean nothing for ``kind``."""
    if not isinstance(port_preservation, bool):
        raise errors.InvalidInput("port_preservation", port_preservation, "True or False")
    if not isinstance(hairpinning, bool):
        raise errors.InvalidInput("hairpinning", hairpinning, "True or False")
    if udp_timeout_s is not None and (
        isinstance(udp_timeout_s, bool)
        or not isinstance(udp_timeout_s, int | float)
        or not 1 <= udp_timeout_s <= 86400
    ):
        raise errors.InvalidInput(
            "udp_timeout_s", udp_timeout_s, "None or a number of seconds from 1 to 86400"
        )
    if kind is NatType.NONE:
        if not port_preservation:
            raise errors.InvalidInput(
                "port_preservation", False, "True: a public host has no NAT to change its port"
            )
        if hairpinning:
            raise errors.InvalidInput(
                "hairpinning", True, "False: a public host has no router to hairpin through"
            )
        if udp_timeout_s is not None:
            raise errors.InvalidInput(
                "udp_timeout_s", udp_timeout_s, "None: a public host has no NAT mapping"
            )
    if not port_preservation and kind is NatType.SYMMETRIC:
        raise errors.InvalidInput(
            "port_preservation",
            False,
            "True (the default): a symmetric NAT picks a random port per flow anyway",
        )
    if not port_preservation and kind in (NatType.PORT_FORWARDED, NatType.DOUBLE):
        raise errors.InvalidInput(
            "port_preservation",
            False,
            "True for a port_forwarded or double NAT (only port_restricted, full_cone and "
            "address_restricted can map without preserving the port)",
        )
    if hairpinning and kind in (NatType.PORT_FORWARDED, NatType.DOUBLE):
        raise errors.InvalidInput(
            "hairpinning",
            True,
            "False for a port_forwarded or double NAT (hairpinning is built for "
            "port_restricted, full_cone, address_restricted and symmetric)",
        )


class Lab:
    """Real network topologies with real NAT, built from Linux network namespaces.

    Each host is a namespace; a NATed host sits behind one router namespace (two for
    :attr:`NatType.DOUBLE`) doing nftables NAT; public hosts and routers meet in an
    "internet" namespace that routes between 203.0.113.0/24 (public hosts) and
    198.51.100.0/24 (routers' WAN). Each host runs a ucsdk node as its own process,
    listening on TCP and QUIC port 4001. Needs root, ``ip``, ``nft`` and ``tc``
    (:class:`ucsdk.errors.LabUnavailable` says what is missing).

    Example (as root):
        >>> import ucsdk.lab
        >>> with ucsdk.lab.Lab() as lab:  # doctest: +SKIP
        ...     relay = lab.add_public_host("relay")
        ...     a = lab.add_host("a", nat=ucsdk.lab.NatType.PORT_RESTRICTED)
        ...     info = a.node.connect(relay.multiaddr())   # NATed host dials out: works
        ...     print(lab.hosts()[["host", "nat", "address", "public_ip"]])
    """

    def __init__(
        self,
        name: str = "lab",
        *,
        node_defaults: dict[str, Any] | None = None,
        keep_logs: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise errors.InvalidInput("lab name", name, "a non-empty string")
        self.name = name
        self.number = next(_lab_numbers)
        self.prefix = f"{net.NS_PREFIX}{os.getpid()}-{self.number}-"
        self.node_defaults = {**NODE_DEFAULTS, **(node_defaults or {})}
        self._hosts: dict[str, LabHost] = {}
        self._namespaces: list[str] = []
        self._public_count = 0
        self._nat_count = 0
        self._started = False
        self._closed = False
        self._lock = threading.RLock()
        self.keep_logs = keep_logs
        # Node logs; removed on stop unless keep_logs (stale ones go with stale namespaces).
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{net.WORKDIR_PREFIX}{os.getpid()}-"))
        self.inet = f"{self.prefix}inet"
        # Holds the same list object, so a lab dropped without stop() still removes what it
        # built (at garbage collection or interpreter exit).
        # The zygote that forks this lab's node processes, started with the first node.
        self._zygotes: list[Zygote] = []
        self._finalizer = weakref.finalize(self, Lab._cleanup, self._namespaces, self._zygotes)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Lab:
        """Check requirements, remove stale namespaces of dead labs, build the internet."""
        with self._lock:
            if self._closed:
                raise errors.LabError(f"lab {self.name!r}", "Closed", "it was stopped")
            if self._started:
                return self
            net.check_requirements()
            self.stale_removed = net.clean_stale()
            self._started = True
            self._add_ns(self.inet)
            net.enable_forwarding(self.inet)
            net.bridge(self.inet, "br-pub")
            net.add_address(self.inet, "br-pub", f"{PUBLIC_NET}.1/24")
            net.bridge(self.inet, "br-isp")
            net.add_address(self.inet, "br-isp", f"{ISP_NET}.1/24")
            return self

    def stop(self) -> None:
        """Stop every node, remove every namespace (and with them the veths); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            nodes = [h.node_handle for h in self._hosts.values() if h.node_handle is not None]
            threads = [threading.Thread(target=n.stop) for n in nodes]
            threads += [
                threading.Thread(target=h.wire.stop) for h in self._hosts.values() if h.wire
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=20)
            Lab._cleanup(self._namespaces, self._zygotes)
            self._finalizer.detach()
            if not self.keep_logs:
                shutil.rmtree(self.workdir, ignore_errors=True)

    close = stop

    @staticmethod
    def _cleanup(namespaces: list[str], zygotes: list[Zygote]) -> None:
        for zygote in zygotes:
            zygote.stop()
        zygotes.clear()
        net.delete_namespaces(list(reversed(namespaces)))
        namespaces.clear()

    def _zygote(self) -> Zygote:
        """The lab's zygote (started on first use: it imports while the lab builds; a new
        one if it ended, say killed, the old one still stopped with the lab)."""
        if not self._zygotes or not self._zygotes[-1].running:
            self._zygotes.append(Zygote(self.workdir / f"zygote{len(self._zygotes) or ''}.log"))
        return self._zygotes[-1]

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ building
    def _add_ns(self, ns: str) -> None:
        net.add_namespace(ns)
        self._namespaces.append(ns)

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name) or name == "inet":
            raise errors.InvalidInput(
                "lab host name", name, "1-16 lowercase letters/digits starting with a letter"
            )
        if name in self._hosts:
            raise errors.InvalidInput("lab host name", name, "a name not used yet in this lab")

    def _start_node(self, host: LabHost, node: bool, config: dict[str, Any]) -> None:
        if not node:
            return
        merged = {**self.node_defaults, **config, "stun": host.is_public}
        # A saved key, so restart_node() brings the node back with the same peer id.
        merged.setdefault("identity_path", str(self.workdir / f"{host.name}.key"))
        for key, value in merged.items():
            if callable(value):
                raise errors.InvalidInput(
                    f"lab node setting {key}", value, "plain data (a node runs in its own process)"
                )
        host.node_config = merged
        host.node_handle = LabNode(
            host.name, host.ns, merged, self.workdir / f"{host.name}.log", self._zygote()
        )

    def add_public_host(self, name: str, *, node: bool = True, **config: Any) -> LabHost:
        """A host with a public address (203.0.113.x) on the internet, no NAT.

        ``config``: :class:`ucsdk.ConnectivityConfig` fields for its node (plain values).
        """
        return self.add_host(name, nat=NatType.NONE, node=node, **config)

    def add_host(
        self,
        name: str,
        nat: NatType | str | None = NatType.PORT_RESTRICTED,
        *,
        node: bool = True,
        latency_ms: float | None = None,
        loss_percent: float | None = None,
        jitter_ms: float | None = None,
        bandwidth_mbps: float | None = None,
        port_preservation: bool = True,
        hairpinning: bool = False,
        udp_timeout_s: float | None = None,
        **config: Any,
    ) -> LabHost:
        """A host behind a NAT of type ``nat`` (see :class:`NatType`), running a node.

        The node's process starts in the background; ``host.node`` waits for it. Optional
        ``latency_ms``, ``jitter_ms``, ``loss_percent`` and ``bandwidth_mbps`` impair the
        host's link from the start (see :meth:`impair`).

        RFC 4787 options of the host's router (see ``docs/lab.md``):
        ``port_preservation=False`` maps inside port ``p`` to public port ``p ^ 0x4000``
        (still endpoint-independent; port-restricted, full-cone and address-restricted NATs);
        ``hairpinning=True`` lets a packet from the host to its own public mapping back in;
        ``udp_timeout_s`` sets how long an idle UDP mapping lives (whole seconds, >= 1).

        Example (as root)::

            lab.add_host("a", nat="full_cone", node=False,
                         hairpinning=True, udp_timeout_s=5)
        """
        kind = NatType.parse(nat)
        _check_nat_options(kind, port_preservation, hairpinning, udp_timeout_s)
        with self._lock:
            self.start()
            self._check_name(name)
            ns = f"{self.prefix}{name}"
            if kind is NatType.NONE:
                self._public_count += 1
                if self._public_count > 240:
                    raise errors.InvalidInput("public host count", self._public_count, "<= 240")
                ip = f"{PUBLIC_NET}.{9 + self._public_count}"
                self._add_ns(ns)
                link = f"p{self._public_count}"
                net.veth(ns, "eth0", self.inet, link)
                net.enslave(self.inet, link, "br-pub")
                net.add_address(ns, "eth0", f"{ip}/24")
                net.default_route(ns, f"{PUBLIC_NET}.1")
                host = LabHost(name, ns, kind, ip, ip)
            else:
                self._nat_count += 1
                n = self._nat_count
                if n > 200:
                    raise errors.InvalidInput("NATed host count", n, "<= 200")
                wan_ip = f"{ISP_NET}.{9 + n}"
                routers = []
                upstream_ns, upstream_gw = self.inet, f"{ISP_NET}.1"
                if kind is NatType.DOUBLE:
                    cgn = f"{ns}-cgn"
                    self._router(cgn, f"n{n}", wan_ip, upstream_gw)
                    net.nft_load(cgn, router_ruleset(NatType.PORT_RESTRICTED, "wan0", "lan0"))
                    routers.append(cgn)
                    upstream_ns, upstream_gw = cgn, f"10.{100 + n}.0.1"
                    home_wan = f"10.{100 + n}.0.2"
                else:
                    home_wan = wan_ip
                gw = f"{ns}-gw"
                self._router(
                    gw,
                    "lan0" if kind is NatType.DOUBLE else f"n{n}",
                    home_wan,
                    upstream_gw,
                    upstream_ns=upstream_ns,
                )
                inside = f"10.{n}.0.2"
                home_nat = NatType.PORT_RESTRICTED if kind is NatType.DOUBLE else kind
                net.nft_load(
                    gw,
                    router_ruleset(
                        home_nat, "wan0", "lan0", forward_to=inside, ports=(LIBP2P_PORT,)
                    )
                    if home_nat is NatType.PORT_FORWARDED
                    else router_ruleset(
                        home_nat,
                        "wan0",
                        "lan0",
                        inside=inside,
                        public_ip=home_wan,
                        port_preservation=port_preservation,
                        hairpinning=hairpinning,
                        udp_timeout_s=udp_timeout_s,
                    ),
                )
                routers.insert(0, gw)
                self._add_ns(ns)
                net.veth(ns, "eth0", gw, "lan0")
                net.add_address(gw, "lan0", f"10.{n}.0.1/24")
                net.add_address(ns, "eth0", f"{inside}/24")
                net.default_route(ns, f"10.{n}.0.1")
                host = LabHost(name, ns, kind, inside, wan_ip, routers)
                if udp_timeout_s is not None:
                    for router in routers:
                        net.set_conntrack_udp_timeout(router, udp_timeout_s)
                host.port_preservation = port_preservation and kind is not NatType.SYMMETRIC
                host.hairpinning = hairpinning
                host.udp_timeout_s = udp_timeout_s
            impairment = {
                "latency_ms": latency_ms,
                "jitter_ms": jitter_ms,
                "loss_percent": loss_percent,
                "bandwidth_mbps": bandwidth_mbps,
            }
            if any(v is not None for v in impairment.values()):
                self.impair(host, **impairment)
            self._hosts[name] = host
            self._start_node(host, node, config)
            return host

    def _router(
        self,
        ns: str,
        upstream_if: str,
        wan_ip: str,
        upstream_gw: str,
        *,
        upstream_ns: str | None = None,
    ) -> None:
        """A router namespace whose ``wan0`` leads to ``upstream_ns`` (default: the
        internet's ISP bridge); its ``lan0`` is added when the next hop is wired."""
        upstream_ns = upstream_ns or self.inet
        self._add_ns(ns)
        net.enable_forwarding(ns)
        net.veth(ns, "wan0", upstream_ns, upstream_if)
        net.add_address(ns, "wan0", f"{wan_ip}/24")
        if upstream_ns == self.inet:
            net.enslave(self.inet, upstream_if, "br-isp")
        else:
            net.add_address(upstream_ns, upstream_if, f"{upstream_gw}/24")
        net.default_route(ns, upstream_gw)

    # ------------------------------------------------------------ using
    def host(self, name: str) -> LabHost:
        try:
            return self._hosts[name]
        except KeyError:
            raise errors.InvalidInput("lab host", name, f"one of {sorted(self._hosts)}") from None

    def _resolve(self, host: LabHost | str) -> LabHost:
        return host if isinstance(host, LabHost) else self.host(host)

    def wait_ready(self, timeout: float = 60.0, *, show_progress: bool | None = None) -> None:
        """Block until every host's node runs (a progress bar counts them; see
        :func:`ucsdk.progress.progress`)."""
        deadline = time.monotonic() + timeout
        handles = [h for h in self._hosts.values() if h.node_handle is not None]
        with progress(len(handles), f"lab {self.name}: nodes up", enabled=show_progress) as bar:
            for h in handles:
                assert h.node_handle is not None
                h.node_handle.wait_ready(max(0.1, deadline - time.monotonic()))
                bar.update(1)

    def impair(
        self,
        host: LabHost | str,
        *,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
        loss_percent: float | None = None,
        bandwidth_mbps: float | None = None,
    ) -> None:
        """Impair the host's link; all ``None`` gives back a clean link.

        - ``latency_ms``: round trip the link adds (half each way);
        - ``jitter_ms``: each one-way delay varies uniformly by up to ``±jitter_ms / 2``, so
          a round trip by up to ``±jitter_ms``; packets are never reordered;
        - ``loss_percent``: share of the packets the host sends that are dropped;
        - ``bandwidth_mbps``: a cap each way (a 100 ms drop-tail queue).

        Where the kernel has netem, ``tc netem`` on the host's interface does it. Elsewhere
        (as on this project's CI machine) the first call splices a wire namespace into the
        host's cable and runs a user-space delay line there (:mod:`ucsdk.lab.delayline`,
        within about 1 ms of the asked round trip from 10 to 200 ms; see
        ``docs/research.md``). ``hosts()`` says which (``link_engine``).

        Example (as root)::

            lab.impair("alice", latency_ms=80, jitter_ms=4)
            lab.impair("alice")  # a clean link again
        """
        h = self._resolve(host)
        values = {
            "latency_ms": latency_ms,
            "jitter_ms": jitter_ms,
            "loss_percent": loss_percent,
            "bandwidth_mbps": bandwidth_mbps,
        }
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise errors.InvalidInput(key, value, "a number >= 0")
        if loss_percent is not None and loss_percent > 100:
            raise errors.InvalidInput("loss_percent", loss_percent, "a number from 0 to 100")
        if bandwidth_mbps is not None and bandwidth_mbps <= 0:
            raise errors.InvalidInput("bandwidth_mbps", bandwidth_mbps, "a number > 0")
        with self._lock:
            if net.netem_available():
                net.impair(h.ns, "eth0", latency_ms, loss_percent, jitter_ms, bandwidth_mbps)
                h.link_engine = "netem" if any(v is not None for v in values.values()) else None
            elif h.wire is not None or any(values.values()):
                if h.wire is None:
                    wire_ns = f"{h.ns}-wire"
                    self._namespaces.append(wire_ns)
                    net.splice_wire(h.ns, wire_ns)
                    h.wire = net.DelayLine(wire_ns, str(self.workdir), h.name)
                    # The peer's side forgot the host's MAC when its cable moved: resolve
                    # both ways now, while the line adds nothing.
                    net.touch_gateway(h.ns, h.gateway)
                h.wire.apply(**values)
                h.link_engine = "user"
            h.latency_ms, h.loss_percent = latency_ms, loss_percent
            h.jitter_ms, h.bandwidth_mbps = jitter_ms, bandwidth_mbps

    def round_trips(
        self, host: LabHost | str, to: LabHost | str, count: int = 20, *, timeout: float = 2.0
    ) -> list[float]:
        """``count`` UDP round trips in ms, one after another, from ``host`` to a small echo
        on ``to`` (at ``to``'s address: a public host, or one reachable from ``host``):
        what the links between them add, without any libp2p on the way. A lost packet
        raises :class:`ucsdk.errors.LabError` after ``timeout``.

        Example (as root)::

            lab.impair("alice", latency_ms=50)
            statistics.median(lab.round_trips("alice", "relay"))  # 50.4
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise errors.InvalidInput("count", count, "a positive integer")
        a, b = self._resolve(host), self._resolve(to)
        server = net.udp_socket(b.ns, ("0.0.0.0", 0))
        client = net.udp_socket(a.ns)
        client.settimeout(timeout)
        target = (b.address, server.getsockname()[1])
        server.settimeout(0.1)
        done = threading.Event()

        def echo() -> None:
            while not done.is_set():
                try:
                    data, addr = server.recvfrom(2048)
                    server.sendto(data, addr)
                except TimeoutError:
                    continue
                except OSError:
                    return

        thread = threading.Thread(target=echo, name="ucsdk-lab-echo", daemon=True)
        thread.start()
        rtts = []
        try:
            for k in range(count):
                payload = k.to_bytes(4, "big") * 16
                started = time.perf_counter()
                client.sendto(payload, target)
                while True:
                    try:
                        data, _ = client.recvfrom(2048)
                    except TimeoutError:
                        raise errors.LabError(
                            f"round trip {a.name} -> {b.name}", "Timeout", f"no echo in {timeout} s"
                        ) from None
                    if data == payload:
                        break
                rtts.append((time.perf_counter() - started) * 1000)
        finally:
            done.set()
            thread.join(2)
            client.close()
            server.close()
        return rtts

    # ------------------------------------------------------------ faults
    def kill_node(self, host: LabHost | str) -> None:
        """SIGKILL the host's node process (a crash: no goodbye to its peers).

        Its sockets are closed by the kernel; the host keeps its namespace, addresses and
        NAT. :meth:`restart_node` brings the node back.
        """
        h = self._resolve(host)
        handle = h.node_handle
        if handle is None:
            raise errors.LabError(f"lab host {h.name!r}", "NoNode", "started with node=False")
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, signal.SIGKILL)
        handle._closed = True
        handle._proc.wait(10)
        handle._reap()

    def restart_node(
        self, host: LabHost | str, *, kill: bool = True, timeout: float = 60.0
    ) -> LabNode:
        """Kill (``kill=True``, a crash) or stop the host's node, then start it again with
        the same configuration, identity (peer id) and listen port; the new node, running.
        """
        h = self._resolve(host)
        if h.node_handle is None or h.node_config is None:
            raise errors.LabError(f"lab host {h.name!r}", "NoNode", "started with node=False")
        with self._lock:
            if self._closed:
                raise errors.LabError(f"lab {self.name!r}", "Closed", "it was stopped")
            if h.node_handle.running:
                if kill:
                    self.kill_node(h)
                else:
                    h.node_handle.stop()
            h.node_handle = LabNode(
                h.name, h.ns, h.node_config, self.workdir / f"{h.name}.log", self._zygote()
            )
        h.node_handle.wait_ready(timeout)
        return h.node_handle

    def flush_conntrack(self, host: LabHost | str) -> int:
        """Flush the conntrack (NAT) table of every router in front of ``host``: each
        mapping is forgotten, so a flow's next packet gets a new one (for a symmetric NAT,
        a new random port). The number of routers flushed (0 for a public host)."""
        h = self._resolve(host)
        if h.routers and shutil.which("conntrack") is None:
            raise errors.LabUnavailable(
                "the conntrack command", "install the Debian package: apt-get install conntrack"
            )
        for router in h.routers:
            net.ns_run(router, ["conntrack", "-F"], check=False)
        return len(h.routers)

    def set_link(self, host: LabHost | str, up: bool) -> None:
        """Take the host's link (its ``eth0``) down or bring it back up.

        Down: nothing leaves or arrives, the host's sockets stay open (as when a cable is
        pulled). Up restores the default route the kernel removed with the link.
        """
        h = self._resolve(host)
        if not isinstance(up, bool):
            raise errors.InvalidInput("up", up, "True or False")
        net.run(["ip", "-n", h.ns, "link", "set", "eth0", "up" if up else "down"])
        if up:
            net.default_route(h.ns, h.gateway)
        h.link_up = up

    def hosts(self) -> pd.DataFrame:
        """The topology: one row per host."""
        rows = []
        for h in self._hosts.values():
            peer_id = None
            if h.node_handle is not None and h.node_handle._info is not None:
                peer_id = h.node_handle._info["peer_id"]
            rows.append(
                {
                    "host": h.name,
                    "nat": h.nat.value,
                    "mapping": h.nat.mapping,
                    "filtering": h.nat.filtering,
                    "address": h.address,
                    "public_ip": h.public_ip,
                    "routers": list(h.routers),
                    "namespace": h.ns,
                    "peer_id": peer_id,
                    "pid": h.node_handle.pid if h.node_handle is not None else None,
                    "latency_ms": h.latency_ms,
                    "jitter_ms": h.jitter_ms,
                    "loss_percent": h.loss_percent,
                    "bandwidth_mbps": h.bandwidth_mbps,
                    "link_engine": _engine(h),
                    "port_preservation": h.port_preservation,
                    "hairpinning": h.hairpinning,
                    "udp_timeout_s": h.udp_timeout_s,
                }
            )
        return pd.DataFrame(
            rows,
            columns=[
                "host",
                "nat",
                "mapping",
                "filtering",
                "address",
                "public_ip",
                "routers",
                "namespace",
                "peer_id",
                "pid",
                "latency_ms",
                "jitter_ms",
                "loss_percent",
                "bandwidth_mbps",
                "link_engine",
                "port_preservation",
                "hairpinning",
                "udp_timeout_s",
            ],
        )

    @property
    def running(self) -> bool:
        """Whether the lab is built and not yet stopped."""
        return self._started and not self._closed

    def network_graph(self, *, timeout: float | None = 10.0) -> NetworkGraph:
        """The lab as a picture (read now): the internet, public hosts, each NATed host
        behind its router(s) labelled with the NAT type, and the connections between lab
        nodes, direct ones solid and relayed ones dashed through the relay. See
        :mod:`ucsdk.graph`; ``.save("lab.svg")`` writes it."""
        connections = {}
        for h in list(self._hosts.values()):
            handle = h.node_handle
            if handle is not None and handle.running:
                try:
                    connections[h.name] = handle.connections(timeout=timeout)
                except errors.UcsdkError as exc:
                    logger.debug("lab graph: %s: %s", h.name, exc)
        return graph.lab_graph(self.hosts(), connections, title=f"NAT lab {self.name}")

    def graph(self, *, refresh: float = 1.0) -> Any:
        """A live :meth:`network_graph` (a :class:`ucsdk.widgets.LiveGraph`): it redraws
        at most every ``refresh`` seconds while the lab runs, so a hole punch shows as a
        dashed link turning solid."""
        from ucsdk import widgets

        return widgets.LiveGraph(self.network_graph, refresh=refresh, owner=self)

    def nat_table(self, host: LabHost | str) -> pd.DataFrame:
        """The conntrack table of the NAT router(s) in front of ``host``: which inside
        ``ip:port`` was mapped to which public ``ip:port`` for which destination."""
        h = self._resolve(host)
        rows = []
        for router in h.routers:
            for row in net.conntrack_rows(router):
                rows.append({"router": router.removeprefix(self.prefix), **row})
        return pd.DataFrame(rows, columns=NAT_TABLE_COLUMNS)

    def mapping(
        self, host: LabHost | str, via: Iterable[LabHost | str] | None = None, local_port: int = 0
    ) -> pd.DataFrame:
        """From one UDP socket on ``host``, ask STUN servers on public hosts (``via``, default
        every public host) which address they see: the NAT's mapping per destination.

        The same ``mapped`` for every server: endpoint-independent mapping; a different port
        per server: endpoint-dependent (symmetric).
        """
        h = self._resolve(host)
        servers = (
            [self._resolve(v) for v in via]
            if via is not None
            else [
                x
                for x in self._hosts.values()
                if x.is_public and x is not h and x.name != BEHAVIOUR_SERVER
            ]
        )
        if not servers:
            raise errors.InvalidInput("STUN servers", [], "at least one public host")
        rows = h.node.call(
            "stun_probe", [(s.address, STUN_PORT) for s in servers], local_port, timeout=None
        )
        for row, server in zip(rows, servers, strict=True):
            row["host"] = h.name
            row["server_host"] = server.name
        return pd.DataFrame(
            rows, columns=["host", "server_host", "local", "server", "mapped", "error"]
        )

    def nat_behaviour(
        self,
        host: LabHost | str,
        *,
        lifetime_waits: Iterable[float] = (),
        timeout: float = 1.0,
    ) -> NatBehaviourReport:
        """Classify the NAT in front of ``host`` from outside as RFC 5780 does: mapping,
        filtering, port preservation, hairpinning and (for each idle wait in
        ``lifetime_waits``, seconds) whether the mapping still admits the server's packet.

        Uses real STUN Binding messages between a UDP socket on ``host`` and a server with
        two addresses and two ports on a public host named ``"rfc5780"`` (no node), added on
        first use. Works with ``node=False`` hosts. ``timeout``: how long to wait for one
        packet. See :mod:`ucsdk.lab.behaviour`.

        Example (as root)::

            report = lab.nat_behaviour("a", lifetime_waits=(1, 5))
            report.mapping, report.filtering
            # ('endpoint_independent', 'address_and_port_dependent')
            report.frame
        """
        h = self._resolve(host)
        waits = list(lifetime_waits)
        for wait in waits:
            if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 600:
                raise errors.InvalidInput("lifetime wait", wait, "seconds from 0 to 600")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise errors.InvalidInput("timeout", timeout, "a number of seconds > 0")
        if h.name == BEHAVIOUR_SERVER:
            raise errors.InvalidInput("host", h.name, "a host other than the probe's server")
        with self._lock:
            server = self._hosts.get(BEHAVIOUR_SERVER)
            if server is None:
                server = self.add_public_host(BEHAVIOUR_SERVER, node=False)
                net.add_address(server.ns, "eth0", f"{BEHAVIOUR_SECOND_IP}/24")
        return behaviour.probe(
            h.name,
            h.ns,
            server.ns,
            server.address,
            BEHAVIOUR_SECOND_IP,
            local_ip=h.address,
            lifetime_waits=waits,
            timeout=float(timeout),
        )

    def reachability(
        self,
        pairs: Iterable[tuple[LabHost | str, LabHost | str]] | None = None,
        timeout: float = 3.0,
        transport: str = "tcp",
    ) -> pd.DataFrame:
        """Try a direct libp2p dial from each host to each other host's public address.

        Every pair starts from a clean slate: existing connections between the two are
        closed before the dial, and a successful dial is closed again afterwards, so each
        row shows whether a fresh direct dial gets through. Dials run in parallel.
        """
        if transport not in ("tcp", "quic"):
            raise errors.InvalidInput("transport", transport, "'tcp' or 'quic'")
        hosts = [h for h in self._hosts.values() if h.node_handle is not None]
        todo = (
            [(self._resolve(a), self._resolve(b)) for a, b in pairs]
            if pairs is not None
            else [(a, b) for a in hosts for b in hosts if a is not b]
        )

        def probe(a: LabHost, b: LabHost) -> dict[str, Any]:
            address = b.multiaddr(transport)
            with contextlib.suppress(errors.UcsdkError):
                a.node.disconnect(b.node.peer_id, timeout=timeout)
            started = time.perf_counter()
            try:
                a.node.connect(address, timeout=timeout)
                ok, error = True, None
            except errors.UcsdkError as exc:
                ok, error = False, f"{getattr(exc, 'kind', type(exc).__name__)}: {exc}"
            elapsed = round((time.perf_counter() - started) * 1000, 1)
            if ok:
                with contextlib.suppress(errors.UcsdkError):
                    a.node.disconnect(b.node.peer_id, timeout=timeout)
            return {
                "dialer": a.name,
                "dialer_nat": a.nat.value,
                "target": b.name,
                "target_nat": b.nat.value,
                "address": address,
                "ok": ok,
                "ms": elapsed,
                "error": error,
            }

        # Rounds run in parallel; a round never holds both a->b and b->a, so no dial races
        # another dial (or disconnect) between the same two nodes.
        rows: list[dict[str, Any]] = []
        left = list(todo)
        with ThreadPoolExecutor(max_workers=16) as pool:
            while left:
                busy: set[frozenset[str]] = set()
                batch, rest = [], []
                for a, b in left:
                    pair = frozenset((a.name, b.name))
                    if pair in busy:
                        rest.append((a, b))
                    else:
                        busy.add(pair)
                        batch.append((a, b))
                rows.extend(pool.map(lambda pair: probe(*pair), batch))
                left = rest
        order = {(a.name, b.name): k for k, (a, b) in enumerate(todo)}
        rows.sort(key=lambda r: order[(r["dialer"], r["target"])])
        return pd.DataFrame(
            rows,
            columns=[
                "dialer",
                "dialer_nat",
                "target",
                "target_nat",
                "address",
                "ok",
                "ms",
                "error",
            ],
        )

    def __repr__(self) -> str:
        state = "stopped" if self._closed else "running" if self._started else "not started"
        return f"Lab({self.name!r}, hosts={list(self._hosts)}, {state})"
