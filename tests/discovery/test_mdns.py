"""mDNS discovery between node processes in network namespaces the test creates.

Multicast never leaves these namespaces: each test builds its own (named with the test's
PID) and removes them afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ucsdk.discovery.mdns import decode_txt, encode_txt, parse_dnsaddrs

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create network namespaces",
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def namespaces(*names: str) -> Iterator[list[str]]:
    prefix = f"ucsdk-t{os.getpid()}-"
    full = [prefix + name for name in names]
    try:
        for ns in full:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "lo", "multicast", "on")
        yield full
    finally:
        for ns in full:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class NodeProcess:
    """`ucsdk node` inside a namespace; collects its output lines."""

    def __init__(self, ns: str, listen_host: str) -> None:
        command = ["ip", "netns", "exec", ns, sys.executable, "-m", "ucsdk", "node"]
        command += ["--listen-host", listen_host, "--interval", "0.5"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def peer_id(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith("READY "):
                    return line.rsplit("/p2p/", 1)[1]
            time.sleep(0.05)
        raise AssertionError(f"node never became ready: {self.lines[-5:]}")

    def sees(self, peer_id: str, source: str) -> bool:
        short = f"{peer_id[:8]}…{peer_id[-6:]}"
        return any(short in line and source in line and "True" in line for line in self.lines)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def _discover_each_other(a: NodeProcess, b: NodeProcess) -> None:
    a_id, b_id = a.peer_id, b.peer_id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (a.sees(b_id, "mdns") and b.sees(a_id, "mdns")):
        time.sleep(0.2)
    assert a.sees(b_id, "mdns"), a.lines[-6:]
    assert b.sees(a_id, "mdns"), b.lines[-6:]


@needs_netns
def test_mdns_across_two_namespaces_joined_by_veth() -> None:
    with namespaces("a", "b") as (ns_a, ns_b):
        veth_a, veth_b = f"uv{os.getpid() % 100000}a", f"uv{os.getpid() % 100000}b"
        _ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        _ip("link", "set", veth_a, "netns", ns_a)
        _ip("link", "set", veth_b, "netns", ns_b)
        _ip("-n", ns_a, "addr", "add", "10.77.0.1/24", "dev", veth_a)
        _ip("-n", ns_b, "addr", "add", "10.77.0.2/24", "dev", veth_b)
        _ip("-n", ns_a, "link", "set", veth_a, "up")
        _ip("-n", ns_b, "link", "set", veth_b, "up")
        a, b = NodeProcess(ns_a, "10.77.0.1"), NodeProcess(ns_b, "10.77.0.2")
        try:
            _discover_each_other(a, b)
        finally:
            a.stop()
            b.stop()
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"ucsdk-t{os.getpid()}-" not in listing


@needs_netns
def test_mdns_between_two_nodes_in_one_namespace() -> None:
    with namespaces("one") as (ns,):
        a, b = NodeProcess(ns, "127.0.0.1"), NodeProcess(ns, "127.0.0.1")
        try:
            _discover_each_other(a, b)
        finally:
            a.stop()
            b.stop()


def test_txt_records_round_trip_and_garbage_is_rejected() -> None:
    pid = "12D3KooWGJgrwNyt6xdxbn6GkzD5uTZRV6wtmWkCZxiRqKNe1nUT"
    rdata = encode_txt([f"dnsaddr=/ip4/10.0.0.1/tcp/4001/p2p/{pid}", "other=x"])
    assert parse_dnsaddrs(decode_txt(rdata)) == (pid, ["/ip4/10.0.0.1/tcp/4001"])
    with pytest.raises(ValueError):
        decode_txt(b"\x09short")
    with pytest.raises(ValueError):
        parse_dnsaddrs(["dnsaddr=/ip4/10.0.0.1/tcp/4001"])
    with pytest.raises(Exception):  # noqa: B017 - any parse error is a rejection
        parse_dnsaddrs(["dnsaddr=/not/a/multiaddr"])
