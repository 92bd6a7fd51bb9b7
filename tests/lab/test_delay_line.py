"""The lab's user-space delay line, measured with real packets between namespaces: the
round trip it adds (within 2 ms of the asked one from 10 to 200 ms), jitter without
reordering, a bandwidth cap, loss, a live change of settings, and nothing left after."""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ucsdk.lab
from ucsdk import errors
from ucsdk.lab import Lab, LabHost, net

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


class Echo:
    """A UDP echo server on a public lab host, and a client on another host."""

    def __init__(self, lab: Lab, server: LabHost, client: LabHost) -> None:
        self.target = (server.address, 7000)
        self.server = net.udp_socket(server.ns, ("0.0.0.0", 7000))
        self.client = net.udp_socket(client.ns)
        self.client.settimeout(2.0)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.server.settimeout(0.1)
        while not self._done.is_set():
            try:
                data, addr = self.server.recvfrom(2048)
                self.server.sendto(data, addr)
            except TimeoutError:
                continue
            except OSError:
                return

    def rtts(self, count: int) -> list[float]:
        """``count`` round trips in ms, one after another (numbered, so late ones are
        told apart from lost ones)."""
        out = []
        for k in range(count):
            payload = k.to_bytes(4, "big") * 16
            started = time.perf_counter()
            self.client.sendto(payload, self.target)
            while True:
                data, _ = self.client.recvfrom(2048)
                if data == payload:
                    break
            out.append((time.perf_counter() - started) * 1000)
        return out

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.client.close()
        self.server.close()


@pytest.fixture
def echo_lab() -> Iterator[tuple[Lab, LabHost, Echo]]:
    with ucsdk.lab.Lab("wire") as lab:
        server = lab.add_public_host("echo", node=False)
        host = lab.add_host("h", node=False)
        echo = Echo(lab, server, host)
        try:
            yield lab, host, echo
        finally:
            echo.close()


def test_the_delay_line_adds_the_asked_round_trip(echo_lab: tuple[Lab, LabHost, Echo]) -> None:
    lab, host, echo = echo_lab
    base = statistics.median(lab.round_trips(host, "echo", 20))
    figures = []
    for target in (10, 50, 200):
        lab.impair(host, latency_ms=target)
        rtts = sorted(lab.round_trips(host, "echo", 15))
        median = statistics.median(rtts)
        figures.append((target, round(median, 2), round(rtts[-1], 2)))
        assert abs(median - base - target) < 2.0, (target, base, rtts)
    print("asked, median, max (ms):", figures, "base", round(base, 3))
    lab.impair(host)  # a clean link again: the line still runs, adding nothing
    assert statistics.median(echo.rtts(10)) < base + 1.0
    assert lab.hosts().set_index("host").loc["h", "link_engine"] == (
        "netem" if net.netem_available() else "user"
    )


def test_jitter_spreads_round_trips_without_reordering(
    echo_lab: tuple[Lab, LabHost, Echo],
) -> None:
    lab, host, echo = echo_lab
    if net.netem_available():
        pytest.skip("netem's jitter reorders packets; this checks the delay line")
    echo.rtts(1)  # ARP resolved first: its exchange would count as one more round trip
    lab.impair(host, latency_ms=40, jitter_ms=20)
    rtts = echo.rtts(40)
    # Each way 20 ± 10 ms, so a round trip within 40 ± 20 ms (and a little for the echo).
    assert all(19.5 <= r <= 62 for r in rtts), rtts
    assert statistics.pstdev(rtts) > 2, rtts
    # A burst sent at once comes back in the order it went.
    for k in range(30):
        echo.client.sendto(k.to_bytes(4, "big"), echo.target)
    order = [int.from_bytes(echo.client.recvfrom(64)[0], "big") for _ in range(30)]
    assert order == list(range(30)), order


def test_a_bandwidth_cap_holds_a_tcp_transfer(echo_lab: tuple[Lab, LabHost, Echo]) -> None:
    lab, host, _echo = echo_lab
    server = lab.host("echo")
    lab.impair(host, latency_ms=10, bandwidth_mbps=10)
    listener = net.in_namespace(server.ns, lambda: socket.create_server(("0.0.0.0", 7001)))
    received = [0]

    def sink() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                received[0] += len(data)

    thread = threading.Thread(target=sink)
    thread.start()
    conn = net.in_namespace(
        host.ns, lambda: socket.create_connection((server.address, 7001), timeout=10)
    )
    started = time.perf_counter()
    chunk = b"x" * 65536
    while time.perf_counter() - started < 2.0:
        conn.sendall(chunk)
    conn.close()
    thread.join(10)
    listener.close()
    mbps = received[0] * 8 / (time.perf_counter() - started) / 1e6
    print(f"TCP through a 10 Mbit/s cap: {mbps:.2f} Mbit/s")
    assert 8.0 <= mbps <= 10.5, mbps


def test_loss_drops_about_the_asked_share(echo_lab: tuple[Lab, LabHost, Echo]) -> None:
    lab, host, echo = echo_lab
    lab.impair(host, loss_percent=30)
    for k in range(200):
        echo.client.sendto(k.to_bytes(4, "big"), echo.target)
        time.sleep(0.001)  # paced, so no queue overflows: only the loss drops
    echo.client.settimeout(0.5)
    echoes: set[bytes] = set()
    with contextlib.suppress(TimeoutError):
        while len(echoes) < 200:
            echoes.add(echo.client.recvfrom(64)[0])
    answered = len(echoes)
    print(f"30 % loss on the way out: {200 - answered} of 200 lost")
    assert 30 <= 200 - answered <= 95, answered  # 60 expected; loose bounds


def test_the_wire_is_removed_with_the_lab_and_bad_values_are_named() -> None:
    lab = ucsdk.lab.Lab("wire2").start()
    try:
        host = lab.add_host("h", node=False, latency_ms=20)
        assert host.wire is not None or net.netem_available()
        with pytest.raises(errors.InvalidInput, match="jitter_ms"):
            lab.impair(host, jitter_ms=-1)
        with pytest.raises(errors.InvalidInput, match="bandwidth_mbps"):
            lab.impair(host, bandwidth_mbps=0)
        namespaces = set(net.list_namespaces())
        assert f"{host.ns}-wire" in namespaces or net.netem_available()
    finally:
        lab.stop()
    assert not [ns for ns in net.list_namespaces() if ns.startswith(lab.prefix)]
    if host.wire is not None:
        assert not host.wire.running and host.wire.counters is not None
        assert not net.pid_alive(host.wire.pid)


def test_latency_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "latency.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert {"error_ms_10", "error_ms_100", "worst_error_ms"} <= set(figures), figures
    assert "target ±1 ms from 10 to 200 ms:" in done.stdout, done.stdout
