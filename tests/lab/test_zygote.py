"""A lab's node processes are forked by its zygote into their namespaces (issue 16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import ucsdk.lab
from tests._util import alive, proc_stat
from ucsdk.lab import net
from ucsdk.lab.scenarios import wait_until

pytestmark = pytest.mark.lab


def _ppid(pid: int) -> int:
    fields = proc_stat(pid)
    assert fields is not None, f"process {pid} is gone"
    return int(fields[1])


def _netns(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_a_lab_node_is_a_forked_child_in_its_namespace() -> None:
    with ucsdk.lab.Lab() as lab:
        relay = lab.add_public_host("relay")
        home = lab.add_host("home", nat="port_restricted")
        lab.wait_ready()
        zygote = lab._zygotes[0].pid
        # The zygote stays in the lab's own namespace; each node is its child, in its host's.
        assert _netns(f"/proc/{zygote}/ns/net") == _netns("/proc/self/ns/net")
        for host in (relay, home):
            pid = host.node.pid
            assert _ppid(pid) == zygote
            assert _netns(f"/proc/{pid}/ns/net") == _netns(f"{net.NETNS_DIR}/{host.ns}")
            assert host.node.resources().rss_bytes > 0  # answered from that process
            # Its interfaces are the namespace's: it listens on 0.0.0.0 and finds the
            # host's address there, and only addresses of the lab.
            mine = f"/ip4/{host.address}/tcp/{ucsdk.lab.LIBP2P_PORT}/"
            assert any(a.startswith(mine) for a in host.node.addrs), host.node.addrs
            ips = {a.split("/")[2] for a in host.node.addrs if a.startswith("/ip4/")}
            assert ips <= {host.address, "127.0.0.1"}, ips
        # The node works through the NAT as before, and STUN answers on the public host.
        home.node.connect(relay.multiaddr())
        mapped = lab.mapping(home)["mapped"].iloc[0]
        assert mapped.startswith(f"{home.public_ip}:")
        # Killed, its exit status comes back from the zygote, which reaped it.
        old = relay.node.pid
        lab.kill_node(relay)
        assert relay.node_handle is not None
        assert relay.node_handle._proc.returncode == -signal.SIGKILL
        assert not alive(old)
        again = lab.restart_node(relay)
        assert again.pid != old and _ppid(again.pid) == zygote
        pids = [relay.node.pid, home.node.pid, zygote]
        namespaces = list(lab._namespaces)
    # Stopped: no node, no zygote, no namespace left.
    assert not any(alive(p) for p in pids)
    assert not set(namespaces) & set(net.list_namespaces())


CRASHING_PARENT = textwrap.dedent(
    """
    import sys, time, ucsdk.lab
    lab = ucsdk.lab.Lab()
    lab.start()
    lab.add_public_host("relay")
    for i in range(3):
        lab.add_host(f"h{i}", nat="symmetric")
    lab.wait_ready()
    pids = [h.node.pid for h in lab._hosts.values()] + [lab._zygotes[0].pid]
    print(lab.prefix, *pids, flush=True)
    time.sleep(600)
    """
)


def test_killing_the_lab_process_ends_every_node_and_its_zygote() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CRASHING_PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        prefix, *pids = parent.stdout.readline().split()
        assert len(pids) == 5
    finally:
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs
        parent.wait(10)
    # Each node's request pipe and the zygote's socket closed with the lab's process.
    assert wait_until(lambda: not any(alive(int(p)) for p in pids), 15, 0.05)
    stale = [ns for ns in net.list_namespaces() if ns.startswith(prefix)]
    assert len(stale) == 8  # inet, relay, three hosts and their routers
    with ucsdk.lab.Lab() as lab:  # removes the dead lab's namespaces
        assert set(stale) <= set(lab.stale_removed)
    assert not [ns for ns in net.list_namespaces() if ns.startswith(prefix)]


def test_a_big_lab_builds_and_leaves_nothing_behind() -> None:
    """Twenty hosts of every NAT type: nodes all answer, and stop() removes everything."""
    kinds = ["port_restricted", "symmetric", "port_forwarded", "double", "none"]
    with ucsdk.lab.Lab() as lab:
        lab.add_public_host("relay")
        for i in range(19):
            lab.add_host(f"h{i}", nat=kinds[i % len(kinds)])
        lab.wait_ready(timeout=120)
        frame = lab.hosts()
        assert frame["peer_id"].nunique() == 20
        pids = [int(p) for p in frame["pid"]] + [lab._zygotes[0].pid]
        prefix = lab.prefix
        started = time.monotonic()
    print(f"20-host lab stopped in {time.monotonic() - started:.2f} s")
    assert not any(alive(p) for p in pids)
    assert not [ns for ns in net.list_namespaces() if ns.startswith(prefix)]


def test_a_killed_zygote_is_replaced_and_its_nodes_run_on() -> None:
    with ucsdk.lab.Lab() as lab:
        a = lab.add_public_host("a")
        lab.wait_ready()
        first = lab._zygotes[0]
        os.kill(first.pid, signal.SIGKILL)
        assert wait_until(lambda: not first.running, 10, 0.05)
        assert a.node.peer_id  # the node did not need its zygote any more
        b = lab.add_public_host("b")  # forked by a new zygote
        b.node.connect(a.multiaddr())
        assert lab._zygotes[-1] is not first
        assert _ppid(b.node.pid) == lab._zygotes[-1].pid
        pids = [a.node.pid, b.node.pid, lab._zygotes[-1].pid]
    assert wait_until(lambda: not any(alive(p) for p in pids), 10, 0.05)
