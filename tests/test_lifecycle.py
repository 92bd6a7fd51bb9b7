"""start()/stop() leave nothing behind: no thread, no socket, no task."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import multiaddr
import trio

import ucsdk
from ucsdk import ConnectivityConfig, UniversalConnectivityManager
from ucsdk.host import build_host
from ucsdk.identity import new_key_pair


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    """Threads alive, not counting trio's cached workers ("Trio thread N": an idle one
    ends by itself 10 s after its last job, so one from an earlier test may come or go
    in between)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("Trio thread"))


def _settle(expected_fds: int, expected_threads: int) -> tuple[int, int]:
    """Give exiting threads a moment to end; return the counts then."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        gc.collect()
        if open_fds() <= expected_fds and threads() <= expected_threads:
            break
        time.sleep(0.05)
    return open_fds(), threads()


def _steady() -> tuple[int, int]:
    """The counts once they have not changed for a second (threads of earlier nodes, and
    of earlier tests, end a little after their stop returns)."""
    counts, since = (open_fds(), threads()), time.monotonic()
    deadline = since + 10
    while time.monotonic() < deadline and time.monotonic() - since < 1:
        time.sleep(0.05)
        gc.collect()
        now = (open_fds(), threads())
        if now != counts:
            counts, since = now, time.monotonic()
    return counts


def test_twenty_start_stop_cycles_leak_nothing() -> None:
    # Warm up once: imports and lazily created module state are not leaks.
    with ucsdk.Node.development() as a, ucsdk.Node.development() as b:
        a.connect(b.addrs[0])
    base_fds, base_threads = _steady()

    for _ in range(20):
        with ucsdk.Node.development() as a, ucsdk.Node.development() as b:
            a.connect(b.addrs[0])
            assert a.ping(b.peer_id, count=1)

    fds, thread_count = _settle(base_fds, base_threads)
    assert fds == base_fds, f"file descriptors: {base_fds} before, {fds} after"
    assert thread_count == base_threads, f"threads: {base_threads} before, {thread_count} after"


def test_nodes_share_one_runtime_thread() -> None:
    before = threading.active_count()
    # mDNS off: zeroconf, a library ucsdk cannot change, runs threads of its own.
    nodes = [ucsdk.Node.development(enable_mdns=False) for _ in range(4)]
    try:
        during = threading.active_count()
    finally:
        for node in nodes:
            node.stop()
    # One portal thread for all four nodes (trio may add its own I/O helper threads).
    assert during - before <= 2


def test_manager_stop_ends_its_tasks_and_notifee() -> None:
    async def main() -> tuple[int, int, int]:
        config = ConnectivityConfig.preset("development", metrics_history_interval=0.01)
        host = build_host(config, new_key_pair())
        listen = [multiaddr.Multiaddr(a) for a in config.resolved_listen_addrs()]
        async with host.run(listen):
            network = host.get_network()
            notifees_before = len(network.notifees)  # type: ignore[attr-defined]
            tasks_before = len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks)
            manager = UniversalConnectivityManager(host, config)
            await manager.start()
            await trio.sleep(0.05)
            await manager.stop()
            await manager.stop()  # idempotent
            notifees_after = len(network.notifees)  # type: ignore[attr-defined]
            samples = len(manager.get_metrics_history())
            tasks_after = len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks)
        await host.close()
        assert tasks_after == tasks_before
        return notifees_before, notifees_after, samples

    before, after, samples = trio.run(main)
    assert after == before
    assert samples >= 3


def test_forgotten_nodes_are_stopped_at_interpreter_exit(tmp_path: Path) -> None:
    script = tmp_path / "forget.py"
    script.write_text(
        "import ucsdk\n"
        "a = ucsdk.Node.development()\n"
        "b = ucsdk.Node.development()\n"
        "a.connect(b.addrs[0])\n"
        "print('connected', flush=True)\n"
        # no stop(): the atexit hook must stop both nodes and let the process end
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "connected" in result.stdout
    assert time.monotonic() - started < 30
