"""The NAT lab builds real NAT: namespaces, nftables, separate node processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import ucsdk.lab
from tests._util import alive
from ucsdk import errors
from ucsdk.lab import NatType, net
from ucsdk.lab.scenarios import wait_until

pytestmark = pytest.mark.lab


def _our_namespaces(prefix: str) -> list[str]:
    return [ns for ns in net.list_namespaces() if ns.startswith(prefix)]


def test_the_nat_is_real() -> None:
    with ucsdk.lab.Lab() as lab:
        relay = lab.add_public_host("relay")
        obs = lab.add_public_host("obs")
        cone = lab.add_host("cone", nat=NatType.PORT_RESTRICTED)
        sym = lab.add_host("sym", nat="symmetric")
        fwd = lab.add_host("fwd", nat="port_forwarded")
        dbl = lab.add_host("dbl", nat="double")
        lab.wait_ready()
        pairs = [(relay, h) for h in (cone, sym, fwd, dbl)] + [
            (h, relay) for h in (cone, sym, fwd, dbl)
        ]
        frame = lab.reachability(pairs, timeout=3)
        ok = {(r.dialer, r.target): r.ok for r in frame.itertuples()}
        # Without NAT traversal a public host cannot dial a NATed host ...
        assert not ok[("relay", "cone")]
        assert not ok[("relay", "sym")]
        assert not ok[("relay", "dbl")]
        errors_seen = frame.set_index(["dialer", "target"]).loc[("relay", "cone"), "error"]
        assert "Timeout" in errors_seen or "DialError" in errors_seen
        # ... except through a port forward; every NATed host can dial out.
        assert ok[("relay", "fwd")]
        for h in ("cone", "sym", "fwd", "dbl"):
            assert ok[(h, "relay")], frame

        # The public side sees the router's address, not the inside one.
        cone.node.connect(relay.multiaddr())
        # connect() returns when the dialer's side is done; the relay records it a moment later.
        assert wait_until(
            lambda: (relay.node.connections()["peer_id"] == cone.node.peer_id).any(), 10, 0.1
        )
        seen = relay.node.connections()
        row = seen[seen["peer_id"] == cone.node.peer_id].iloc[0]
        assert row["remote_addr"].startswith(f"/ip4/{cone.public_ip}/tcp/")
        table = lab.nat_table(cone)
        flows = table[(table["destination"] == f"{relay.address}:4001") & table["translated"]]
        assert len(flows) >= 1
        assert all(m.startswith(cone.public_ip + ":") for m in flows["mapped_to"])

        # Mapping, observed by two STUN servers from one socket.
        def ports(frame_) -> set[str]:  # type: ignore[no-untyped-def]
            assert frame_["error"].isna().all(), frame_
            return set(frame_["mapped"])

        cone_map = lab.mapping(cone, via=[relay, obs], local_port=40000)
        assert ports(cone_map) == {f"{cone.public_ip}:40000"}  # same mapping, port kept
        dbl_map = lab.mapping(dbl, via=[relay, obs], local_port=40000)
        assert len(ports(dbl_map)) == 1 and next(iter(ports(dbl_map))).startswith(dbl.public_ip)
        sym_map = lab.mapping(sym, via=[relay, obs], local_port=40000)
        assert len(ports(sym_map)) == 2  # a new public port per destination
        assert all(m.startswith(sym.public_ip + ":") for m in ports(sym_map))


def test_five_hosts_up_and_nothing_left_behind() -> None:
    # How fast is bench/lab.py's to print (met / NOT met), not a test's to assert.
    threads_before = threading.active_count()
    started = time.monotonic()
    lab = ucsdk.lab.Lab()
    with lab:
        lab.add_public_host("relay")
        for i, nat in enumerate(["port_restricted", "symmetric", "port_forwarded", "double"]):
            lab.add_host(f"h{i}", nat=nat)
        lab.wait_ready()
        up = time.monotonic() - started
        hosts = lab.hosts()
        pids = [int(p) for p in hosts["pid"]]
        assert hosts["peer_id"].notna().all()
        assert len(set(hosts["peer_id"])) == 5
        assert len(_our_namespaces(lab.prefix)) == 1 + 5 + 4 + 1  # inet, hosts, routers, CGN
        workdir = lab.workdir
        assert all(alive(p) for p in pids)
    print(f"5 hosts up in {up:.2f} s")
    assert _our_namespaces(lab.prefix) == []
    assert not any(alive(p) for p in pids)
    assert not workdir.exists()
    assert wait_until(lambda: threading.active_count() <= threads_before, 5)
    with pytest.raises(errors.LabError, match="stopped"):
        lab.start()


CRASHING_PARENT = textwrap.dedent(
    """
    import sys, time, ucsdk.lab
    lab = ucsdk.lab.Lab()
    lab.start()
    a = lab.add_host("a", nat="symmetric")
    lab.wait_ready()
    print(lab.prefix, a.node.pid, lab.workdir, flush=True)
    time.sleep(600)
    """
)


def test_a_crashed_lab_is_cleaned_at_the_next_start() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CRASHING_PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        prefix, agent_pid, workdir = parent.stdout.readline().split()
    finally:
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs
        parent.wait(10)
    stale = _our_namespaces(prefix)
    assert len(stale) == 3  # inet, the router, the host
    # The node process ends with its lab: its command pipe closed.
    assert wait_until(lambda: not alive(int(agent_pid)), 10)
    with ucsdk.lab.Lab() as lab:
        assert set(stale) <= set(lab.stale_removed)
        assert _our_namespaces(prefix) == []
        assert not Path(workdir).exists()


def test_link_latency() -> None:
    # netem where the kernel has it, else the user-space delay line (this CI machine).
    with ucsdk.lab.Lab() as lab:
        relay = lab.add_public_host("relay")
        slow = lab.add_host("slow", nat="port_restricted", latency_ms=100)
        slow.node.connect(relay.multiaddr())
        rtts = slow.node.ping(relay.node.peer_id, count=3)
        assert 100 <= min(rtts) < 120, rtts
        engine = lab.hosts().set_index("host").loc["slow", "link_engine"]
        assert engine == ("netem" if net.netem_available() else "user"), engine
        lab.impair(slow)  # removed again
        fast = slow.node.ping(relay.node.peer_id, count=3)
        assert min(fast) < 50, fast


def test_link_loss() -> None:
    with ucsdk.lab.Lab() as lab:
        relay = lab.add_public_host("relay")
        lossy = lab.add_host("lossy", nat="port_restricted", loss_percent=100)
        lab.wait_ready()
        assert lab.hosts().set_index("host").loc["lossy", "loss_percent"] == 100
        frame = lab.reachability([(lossy, relay)], timeout=2)
        assert not frame["ok"].iloc[0]
        lab.impair(lossy)  # removed
        assert lab.reachability([(lossy, relay)], timeout=5)["ok"].iloc[0]


def test_bad_lab_input_is_named() -> None:
    with ucsdk.lab.Lab() as lab:
        with pytest.raises(errors.InvalidInput, match="NAT type"):
            lab.add_host("x", nat="full-cone-please")
        with pytest.raises(errors.InvalidInput, match="lab host name"):
            lab.add_host("Bad Name!")
        lab.add_host("h", nat="none", node=False)
        with pytest.raises(errors.InvalidInput, match="not used yet"):
            lab.add_host("h")
        with pytest.raises(errors.InvalidInput, match="loss_percent"):
            lab.impair("h", loss_percent=120)
        with pytest.raises(errors.InvalidInput, match="lab node setting on_peer_discovered"):
            lab.add_host("cb", on_peer_discovered=print)


def test_missing_tools_are_reported_with_the_package_to_install(tmp_path: Path) -> None:
    code = "from ucsdk.lab import check_requirements; check_requirements()"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "LabUnavailable" in done.stderr
    assert "apt-get install iproute2 nftables" in done.stderr


def test_lab_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "lab.json"
    bench = Path(__file__).resolve().parents[2] / "bench" / "lab.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--sizes", "3", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())
    assert row["hosts"] == 3 and row["namespaces"] == 6  # inet, 3 hosts, 2 routers
    assert row["build_s"] > 0 and row["teardown_s"] > 0
    assert 20 < row["rss_mb_median"] < 1000
    assert row["ping_ms_median"] > 0


def test_the_lab_page_example_runs(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "lab.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "lab_example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "port_restricted" in out and "symmetric" in out
    assert "198.51.100." in out  # the routers' public side shows up in the tables


def test_an_exception_inside_the_lab_removes_everything() -> None:
    with pytest.raises(RuntimeError, match="experiment failed"), ucsdk.lab.Lab() as lab:
        lab.add_host("a", nat="double", node=False)
        lab.add_public_host("b", node=False)
        prefix = lab.prefix
        assert len(_our_namespaces(prefix)) == 5
        raise RuntimeError("experiment failed")
    assert _our_namespaces(prefix) == []
