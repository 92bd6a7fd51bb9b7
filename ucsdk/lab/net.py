"""Linux plumbing for the NAT lab: network namespaces, veth pairs, nftables, tc, conntrack.

Every object the lab creates lives inside namespaces named ``ucsdk-<pid>-<lab>-<name>``,
where ``<pid>`` is the process that built the lab. Interfaces are created directly inside
their namespaces (``ip -n NS link add ... peer ... netns OTHER``), so the lab never adds
an interface or a route to the machine's own namespace and its traffic cannot leave.
A namespace whose ``<pid>`` no longer runs is stale; :func:`clean_stale` removes it, and the
processes still inside it, at the next lab start.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from ucsdk import errors

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

NS_PREFIX = "ucsdk-"
NETNS_DIR = "/var/run/netns"
WORKDIR_PREFIX = "ucsdk-lab-"
_NS_RE = re.compile(r"^ucsdk-(\d+)-(\d+)-([a-z0-9-]+)$")

# Tools checked before a lab starts: command, Debian package that provides it.
REQUIRED_TOOLS: dict[str, str] = {"ip": "iproute2", "nft": "nftables", "tc": "iproute2"}
OPTIONAL_TOOLS: dict[str, str] = {"conntrack": "conntrack"}


def check_requirements() -> None:
    """Raise :class:`ucsdk.errors.LabUnavailable` unless the lab can run here.

    Example:
        >>> from ucsdk import errors
        >>> try:
        ...     check_requirements()
        ... except errors.LabUnavailable as exc:
        ...     reason = str(exc)  # e.g. "the NAT lab needs root: ..."
    """
    if os.name != "posix" or not os.path.exists("/proc/self/ns/net"):
        raise errors.LabUnavailable("Linux network namespaces", "run it on Linux")
    if os.geteuid() != 0:
        raise errors.LabUnavailable(
            "root", "network namespaces and NAT rules need root; run as root (e.g. sudo)"
        )
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        tools = ", ".join(t for t, p in REQUIRED_TOOLS.items() if shutil.which(t) is None)
        raise errors.LabUnavailable(
            f"the commands {tools}",
            f"install the Debian packages: apt-get install {' '.join(missing)}",
        )


def run(
    args: Sequence[str], *, check: bool = True, timeout: float = 20.0, stdin: str | None = None
) -> str:
    """Run one command (``stdin``: text to feed it); raise :class:`ucsdk.errors.LabError`
    with its stderr on failure."""
    try:
        done = subprocess.run(
            list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.LabError(" ".join(args), type(exc).__name__, str(exc)) from exc
    if check and done.returncode != 0:
        raise errors.LabError(" ".join(args), f"exit {done.returncode}", done.stderr.strip())
    return done.stdout


def ns_run(ns: str, args: Sequence[str], *, check: bool = True) -> str:
    """Run a command inside namespace ``ns``."""
    return run(["ip", "netns", "exec", ns, *args], check=check)


def nft_load(ns: str, ruleset: str) -> None:
    """Load an nftables ruleset (``nft -f -``) inside ``ns``."""
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=ruleset,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.LabError(f"nft in {ns}", type(exc).__name__, str(exc)) from exc
    if done.returncode != 0:
        raise errors.LabError(f"nft in {ns}", f"exit {done.returncode}", done.stderr.strip())


def list_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_namespace(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def pids_in(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def delete_namespace(ns: str) -> None:
    """Stop what runs inside ``ns`` (processes a lab started there), then remove it."""
    delete_namespaces([ns])


def _namespace_pids(namespaces: Sequence[str]) -> list[int]:
    """Processes inside any of ``namespaces``: one pass over ``/proc`` comparing each
    process's network namespace with the namespaces' files (what ``ip netns pids`` does
    for one namespace)."""
    wanted = set()
    for ns in namespaces:
        with contextlib.suppress(OSError):
            st = os.stat(os.path.join(NETNS_DIR, ns))
            wanted.add((st.st_dev, st.st_ino))
    if not wanted:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in wanted:
            pids.append(int(entry))
    return pids


def delete_namespaces(namespaces: Sequence[str]) -> None:
    """Stop what runs inside ``namespaces`` (SIGTERM, then SIGKILL after 3 s), then remove
    them all with one ``ip -batch``."""
    if not namespaces:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _namespace_pids(namespaces)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and _namespace_pids(namespaces):
            time.sleep(0.05)
    batch = "".join(f"netns delete {ns}\n" for ns in namespaces)
    try:
        run(["ip", "-force", "-batch", "-"], check=False, timeout=60, stdin=batch)
    except errors.LabError as exc:
        logger.warning("removing lab namespaces: %s", exc)


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair from ``ns_a``/``if_a`` to ``ns_b``/``if_b``, created inside the namespaces."""
    run(
        ["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b]
    )
    run(["ip", "-n", ns_a, "link", "set", if_a, "up"])
    run(["ip", "-n", ns_b, "link", "set", if_b, "up"])


def add_address(ns: str, ifname: str, cidr: str) -> None:
    run(["ip", "-n", ns, "addr", "add", cidr, "dev", ifname])


def default_route(ns: str, via: str) -> None:
    run(["ip", "-n", ns, "route", "replace", "default", "via", via])


def route(ns: str, prefix: str, via: str) -> None:
    run(["ip", "-n", ns, "route", "replace", prefix, "via", via])


def enable_forwarding(ns: str) -> None:
    ns_run(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])


def bridge(ns: str, name: str) -> None:
    run(["ip", "-n", ns, "link", "add", name, "type", "bridge"])
    run(["ip", "-n", ns, "link", "set", name, "up"])


def enslave(ns: str, ifname: str, bridge_name: str) -> None:
    run(["ip", "-n", ns, "link", "set", ifname, "master", bridge_name])


_NETEM: bool | None = None


def netem_available() -> bool:
    """Whether the kernel has the ``netem`` qdisc (``sch_netem``), needed for latency."""
    global _NETEM
    if _NETEM is None:
        ns = f"{NS_PREFIX}{os.getpid()}-0-netemprobe"
        try:
            add_namespace(ns)
            try:
                ns_run(ns, ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
                _NETEM = True
            except errors.LabError:
                _NETEM = False
        finally:
            run(["ip", "netns", "delete", ns], check=False)
    return _NETEM


def impair(
    ns: str,
    ifname: str,
    latency_ms: float | None,
    loss_percent: float | None,
    jitter_ms: float | None = None,
    bandwidth_mbps: float | None = None,
) -> None:
    """With the kernel's netem: delay (with jitter), drop and rate-limit the packets leaving
    ``ifname`` (``tc netem``); all ``None`` removes it.

    Loss alone, on a kernel without netem, uses nftables ``numgen``; the lab's
    :class:`DelayLine` does all four in user space where netem is missing.
    """
    ns_run(ns, ["tc", "qdisc", "del", "dev", ifname, "root"], check=False)
    ns_run(ns, ["nft", "delete", "table", "ip", "ucsdk_impair"], check=False)
    if latency_ms or jitter_ms or bandwidth_mbps:
        if not netem_available():
            raise errors.LabUnavailable(
                "the kernel's netem qdisc (sch_netem)",
                "use the lab's user-space delay line (Lab.impair chooses it by itself)",
            )
        args = ["delay", f"{latency_ms or 0:g}ms"]
        if jitter_ms:
            args.append(f"{jitter_ms:g}ms")
        if loss_percent:
            args += ["loss", f"{loss_percent:g}%"]
        if bandwidth_mbps:
            args += ["rate", f"{bandwidth_mbps:g}mbit"]
        ns_run(ns, ["tc", "qdisc", "replace", "dev", ifname, "root", "netem", *args])
        return
    if loss_percent:
        percent = round(loss_percent)
        match = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
        nft_load(
            ns,
            "table ip ucsdk_impair {\n"
            "    chain output {\n"
            "        type filter hook output priority filter; policy accept;\n"
            f'        oifname "{ifname}" {match}drop\n'
            "    }\n"
            "}\n",
        )


def parse_name(ns: str) -> tuple[int, int, str] | None:
    """``(pid, lab number, name)`` of a lab namespace name, else ``None``.

    Example:
        >>> parse_name("ucsdk-4242-1-relay")
        (4242, 1, 'relay')
        >>> parse_name("somebody-elses") is None
        True
    """
    match = _NS_RE.match(ns)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale() -> list[str]:
    """Remove lab namespaces left by processes that are gone; the names removed."""
    removed = []
    for ns in list_namespaces():
        parsed = parse_name(ns)
        if parsed is None or pid_alive(parsed[0]):
            continue
        logger.info("removing stale lab namespace %s", ns)
        removed.append(ns)
    delete_namespaces(removed)
    tmp = tempfile.gettempdir()
    for entry in os.listdir(tmp):
        if entry.startswith(WORKDIR_PREFIX):
            pid = entry[len(WORKDIR_PREFIX) :].split("-")[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)
    return removed


def conntrack_rows(ns: str) -> list[dict[str, object]]:
    """The NAT's connection-tracking table in ``ns`` (``conntrack -L``) as dictionaries.

    ``orig_*`` is the packet as the inside host sent it; ``reply_*`` is what the far end
    answers to, so for a translated flow ``reply_dst:reply_dport`` is the public mapping.
    """
    if shutil.which("conntrack") is None:
        raise errors.LabUnavailable(
            "the conntrack command", "install the Debian package: apt-get install conntrack"
        )
    out = ns_run(ns, ["conntrack", "-L"], check=False)
    rows: list[dict[str, object]] = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].isalpha():
            continue
        proto = parts[0]
        fields: list[tuple[str, str]] = [
            (k, v) for k, _, v in (p.partition("=") for p in parts) if _ and k
        ]
        srcs = [v for k, v in fields if k == "src"]
        dsts = [v for k, v in fields if k == "dst"]
        sports = [v for k, v in fields if k == "sport"]
        dports = [v for k, v in fields if k == "dport"]
        if len(srcs) < 2 or len(dsts) < 2:
            continue
        state = next((p for p in parts[3:5] if p.isupper() and "=" not in p), "")
        rows.append(
            {
                "proto": proto,
                "state": state,
                "inside": f"{srcs[0]}:{sports[0]}" if sports else srcs[0],
                "destination": f"{dsts[0]}:{dports[0]}" if dports else dsts[0],
                "mapped_to": f"{dsts[1]}:{dports[1]}" if len(dports) > 1 else dsts[1],
                "translated": (srcs[0], sports[:1]) != (dsts[1], dports[1:2]),
                "assured": "[ASSURED]" in parts,
            }
        )
    return rows


_CLONE_NEWNET = 0x40000000


def in_namespace(ns: str, fn: Callable[[], _T]) -> _T:
    """Run ``fn`` in a short-lived thread that has entered namespace ``ns`` (``setns(2)``
    through libc: Python 3.11 has no ``os.setns``); its result, or its exception re-raised.

    Only that thread switches namespace, so the caller's own threads stay where they are.
    A socket made inside ``fn`` belongs to ``ns`` for its whole life, whichever thread
    uses it later: that is how the lab opens sockets in a host from this process.
    """
    result: list[_T] = []
    failure: list[BaseException] = []

    def enter_and_run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(os.path.join(NETNS_DIR, ns), "rb") as fh:
                if libc.setns(fh.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise errors.LabError(f"setns into {ns}", "OSError", os.strerror(err))
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=enter_and_run, name=f"ucsdk-setns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def udp_socket(ns: str, address: tuple[str, int] = ("0.0.0.0", 0)) -> socket.socket:
    """A UDP socket inside namespace ``ns``, bound to ``address`` (see :func:`in_namespace`).

    Example (as root, with a lab running)::

        sock = udp_socket("ucsdk-4242-1-alice")
        sock.getsockname()  # ('0.0.0.0', 40123)
    """

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return sock

    return in_namespace(ns, make)


def set_conntrack_udp_timeout(ns: str, seconds: float) -> None:
    """Set both conntrack UDP timeouts (unreplied and stream) of namespace ``ns``: how long
    an idle UDP mapping of a router there lives (whole seconds, at least 1)."""
    value = max(1, math.ceil(seconds))
    ns_run(
        ns,
        [
            "sysctl",
            "-q",
            "-w",
            f"net.netfilter.nf_conntrack_udp_timeout={value}",
            f"net.netfilter.nf_conntrack_udp_timeout_stream={value}",
        ],
    )


def _ip_json(args: Sequence[str]) -> list[dict[str, object]]:
    out = run(["ip", "-j", *args])
    data = json.loads(out or "[]")
    return data if isinstance(data, list) else []


_STALE_ON = ("nud", "stale", "dev")


def touch_gateway(ns: str, gateway: str, timeout: float = 2.0) -> bool:
    """One UDP round trip from ``ns`` to its ``gateway`` (port 9, answered by the
    gateway's ICMP "port unreachable"), so both sides have resolved each other's MAC
    address; whether the answer came within ``timeout``."""

    def probe() -> bool:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(timeout)
        try:
            sock.connect((gateway, 9))
            sock.send(b"ucsdk")
            sock.recv(16)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        finally:
            sock.close()
        return True

    return in_namespace(ns, probe)


def splice_wire(host_ns: str, wire_ns: str, ifname: str = "eth0") -> None:
    """Put namespace ``wire_ns`` (created here) into the cable of ``host_ns``'s
    ``ifname``, keeping everything else as it was.

    The host's interface moves into the wire as ``up0``, still joined to its peer (the
    router's ``lan0`` or the internet's port), so nothing on that side changes. A new veth
    joins ``down0`` in the wire to a new ``ifname`` in the host, with the old one's MAC
    address (neighbour caches stay right), addresses and default route. Until a
    :mod:`ucsdk.lab.delayline` runs in the wire, the two ends are not connected.
    """
    link = _ip_json(["-n", host_ns, "link", "show", ifname])
    if not link:
        raise errors.LabError(f"splice {host_ns}", "NoLink", f"no {ifname} there")
    mac = str(link[0]["address"])
    addrs = [
        f"{a['local']}/{a['prefixlen']}"
        for entry in _ip_json(["-n", host_ns, "addr", "show", ifname])
        for a in entry.get("addr_info", [])  # type: ignore[attr-defined]
        if a.get("family") == "inet"
    ]
    gateways = [
        str(r["gateway"])
        for r in _ip_json(["-n", host_ns, "route", "show", "default"])
        if "gateway" in r
    ]
    # The host's resolved neighbours (its gateway), kept across the new cable: otherwise
    # the first packet after the splice would wait for ARP through the delayed line.
    neighbours = [
        (str(n["dst"]), str(n["lladdr"]))
        for n in _ip_json(["-n", host_ns, "neigh", "show", "dev", ifname])
        if "lladdr" in n and "." in str(n.get("dst", ""))
    ]
    add_namespace(wire_ns)
    run(["ip", "-n", host_ns, "link", "set", ifname, "netns", wire_ns])
    run(["ip", "-n", wire_ns, "link", "set", ifname, "name", "up0"])
    run(
        [
            "ip",
            "-n",
            wire_ns,
            "link",
            "add",
            "down0",
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            host_ns,
        ]
    )
    run(["ip", "-n", host_ns, "link", "set", ifname, "address", mac])
    for ns, name in ((wire_ns, "up0"), (wire_ns, "down0"), (host_ns, ifname)):
        run(["ip", "-n", ns, "link", "set", name, "up"])
    for cidr in addrs:
        add_address(host_ns, ifname, cidr)
    for gateway in gateways[:1]:
        default_route(host_ns, gateway)
    for dst, lladdr in neighbours:
        run(
            ["ip", "-n", host_ns, "neigh", "replace", dst, "lladdr", lladdr, *_STALE_ON, ifname],
            check=False,
        )


class DelayLine:
    """A running :mod:`ucsdk.lab.delayline` in a wire namespace (made by
    :func:`splice_wire`): latency, jitter, loss and a bandwidth cap on one host's link.

    :meth:`apply` changes the settings and returns once the line uses them; :meth:`stop`
    ends the process (only this one, by its PID) and returns its counters.
    """

    def __init__(self, wire_ns: str, workdir: str, name: str) -> None:
        from ucsdk.lab import delayline

        self.ns = wire_ns
        self.control = os.path.join(workdir, f"{name}.wire.json")
        self._seq = 0
        self._write({})
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                wire_ns,
                sys.executable,
                "-I",
                delayline.__file__,
                "down0",
                "up0",
                self.control,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.counters: dict[str, object] | None = None
        ready = self._read_until("ready", None, 10.0)
        if ready is None:
            self.stop()
            raise errors.LabError(
                f"delay line in {wire_ns}", "NotStarted", self._stderr() or "no answer in 10 s"
            )
        self._read_until("applied", 0, 5.0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def _write(self, params: dict[str, float | None]) -> None:
        tmp = f"{self.control}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({**params, "seq": self._seq}, fh)
        os.replace(tmp, self.control)

    def _stderr(self) -> str:
        if self.proc.stderr is None or self.running:
            return ""
        return self.proc.stderr.read().decode(errors="replace").strip()[-500:]

    def _read_until(self, key: str, value: object, timeout: float) -> dict[str, object] | None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = self.proc.stdout.readline()
            if not line:
                return None
            message = json.loads(line)
            if key in message and (value is None or message[key] == value):
                return dict(message)
        return None

    def apply(self, **params: float | None) -> None:
        """Use ``latency_ms``, ``jitter_ms``, ``loss_percent``, ``bandwidth_mbps`` from now."""
        if not self.running:
            raise errors.LabError(
                f"delay line in {self.ns}",
                "Crashed",
                f"it ended with exit {self.proc.returncode}: {self._stderr()}",
            )
        self._seq += 1
        self._write(params)
        self.proc.send_signal(signal.SIGHUP)
        if self._read_until("applied", self._seq, 5.0) is None:
            raise errors.LabError(f"delay line in {self.ns}", "NoAnswer", "no answer in 5 s")

    def stop(self, timeout: float = 3.0) -> dict[str, object] | None:
        """End the line (SIGTERM, then SIGKILL); its counters, if it could say them."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            message = self._read_until("counters", None, timeout)
            if message is not None:
                self.counters = dict(message["counters"])  # type: ignore[call-overload]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.counters
