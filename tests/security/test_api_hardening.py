"""The API edge under bad input and awkward calls (issue 10, API holes).

- ``timeout=float("inf")`` means "no limit" everywhere (it overflowed threading's waits);
  NaN, zero, negative and non-numbers raise ``InvalidInput`` naming the value;
- raw exceptions from py-libp2p and bad peer ids/content keys come back as ucsdk errors;
- ``Node.stop()`` from the node's own thread (a callback fired by a real peer, in another
  process, connecting) closes the host: its port refuses connections, no thread is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _attacker import Attacker

import ucsdk
from ucsdk import errors

INF = float("inf")
BAD_TIMEOUTS = [float("nan"), -1.0, 0, -INF, "5", True]


def _wait_for(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _tcp_port(node_addrs: list[str]) -> int:
    tcp = next(a for a in node_addrs if "/tcp/" in a and "/ip4/127.0.0.1/" in a)
    return int(tcp.split("/tcp/")[1].split("/")[0])


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


# ------------------------------------------------------------------- timeouts
def test_infinite_timeout_means_no_limit(
    connected_pair: tuple[ucsdk.Node, ucsdk.Node],
) -> None:
    a, b = connected_pair
    # Before: OverflowError("timestamp out of range for platform time_t") from the waits.
    assert len(a.ping(b.peer_id, count=2, timeout=INF)) == 2
    assert a.metrics(timeout=INF).active_connections >= 1
    assert len(a.ping(b.peer_id, count=1, timeout=1e300)) == 1  # past any time_t: no limit
    assert a.connect(b.addrs[0], timeout=INF).peer_id == b.peer_id
    a.disconnect(b.peer_id, timeout=INF)
    assert _wait_for(lambda: not a.connections().shape[0])


def test_infinite_timeout_on_the_node_and_aio(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    _, b = node_pair
    node = ucsdk.Node.development(enable_mdns=False, timeout=INF)
    try:
        assert node.timeout == INF
        assert node.connect(b.addrs[0]).peer_id == b.peer_id  # the node's default: inf
        rtts = asyncio.run(node.aio.ping(b.peer_id, count=1, timeout=INF))
        assert len(rtts) == 1
        usage = asyncio.run(node.aio.resources(timeout=INF))
        assert usage.tasks > 0
    finally:
        node.stop(timeout=INF)
    assert node.wait_stopped(timeout=INF)


@pytest.mark.parametrize("bad", BAD_TIMEOUTS, ids=repr)
def test_bad_timeouts_raise_naming_the_value(
    connected_pair: tuple[ucsdk.Node, ucsdk.Node], bad: Any
) -> None:
    a, b = connected_pair
    calls: list[Callable[[], Any]] = [
        lambda: a.ping(b.peer_id, count=1, timeout=bad),
        lambda: a.metrics(timeout=bad),
        lambda: a.connect(b.addrs[0], timeout=bad),
        lambda: a.stop(timeout=bad),
        lambda: a.wait_stopped(timeout=bad),
        lambda: ucsdk.Node.development(enable_mdns=False, timeout=bad),
        lambda: asyncio.run(a.aio.ping(b.peer_id, count=1, timeout=bad)),
    ]
    for call in calls:
        with pytest.raises(errors.InvalidInput) as info:
            call()
        assert info.value.what == "timeout"
        assert repr(bad) in str(info.value)
    assert a.running  # a bad stop() timeout did not stop the node half-way


# ---------------------------------------------------------------- raw errors
def test_bad_peer_ids_and_keys_are_ucsdk_errors() -> None:
    with ucsdk.Node.development(enable_mdns=False, enable_dht_discovery=True) as node:
        # Before: UnicodeEncodeError from inside py-libp2p's DHT.
        for call in (node.provide, node.find_providers):
            with pytest.raises(errors.InvalidInput, match="content key"):
                call("\ud800", timeout=5)
        # Base58 that decodes to no peer-id multihash: before, disconnect() returned as if
        # it had closed something and find_peer() searched the DHT for it.
        for junk in ("z" * 100, "1" * 46, "3vQB7B6MrGQZaxCuFg4oh"):
            with pytest.raises(errors.InvalidPeerId):
                node.disconnect(junk)
            with pytest.raises(errors.InvalidPeerId):
                node.find_peer(junk, timeout=5)
        # Real peer ids of both kinds still pass (sha2-256 and an inlined Ed25519 key).
        node.disconnect("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        node.disconnect(node.peer_id)


# --------------------------------------------------------- stop from a callback
def test_stop_from_a_callback_closes_the_host_and_leaves_no_thread() -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    holder: list[ucsdk.Node] = []
    fired = threading.Event()

    def stop_on_connect(*_: Any) -> None:
        fired.set()
        holder[0].stop()

    node = ucsdk.Node.development(enable_mdns=False, on_connection_established=stop_on_connect)
    holder.append(node)
    port = _tcp_port(node.addrs)
    assert not _refuses(port)
    with Attacker() as attacker:
        attacker.run("connect", addr=node.addrs[0])
        assert fired.wait(10), "the callback never ran"
        # Before: the node said stopped, the host kept listening for ever.
        assert _wait_for(lambda: _refuses(port)), "the host still listens after stop()"
    assert not node.running
    assert node.wait_stopped(timeout=10)
    with pytest.raises(errors.NodeStopped):
        node.metrics()
    assert _wait_for(lambda: {t.ident for t in threading.enumerate()} <= threads_before), [
        t.name for t in threading.enumerate() if t.ident not in threads_before
    ]
    node.stop()  # again: nothing to do


def test_async_stop_from_a_callback_and_from_asyncio() -> None:
    holder: list[ucsdk.Node] = []

    async def stop_on_connect(*_: Any) -> None:  # an awaited callback, on the loop too
        holder[0].stop()

    node = ucsdk.Node.development(enable_mdns=False, on_connection_established=stop_on_connect)
    holder.append(node)
    other = ucsdk.Node.development(enable_mdns=False)
    try:
        port = _tcp_port(node.addrs)
        with contextlib.suppress(errors.UcsdkError):  # it may fail as the host closes
            other.connect(node.addrs[0], timeout=5)
        assert node.wait_stopped(timeout=10)
        assert _refuses(port)
        assert not node.running
        asyncio.run(other.aio.stop(timeout=10))
        assert not other.running
        assert other.wait_stopped(timeout=1)
    finally:
        other.stop()


# ------------------------------------------------- inbound connection churn
def test_connection_churn_neither_leaks_tasks_nor_locks_out_inbound_connections() -> None:
    """py-libp2p kept each inbound connection's handler task, and its slot of the inbound
    cap (max_connections), until the node stopped: a peer that connected and disconnected
    max_connections times locked every later inbound connection out, for good."""
    victim = ucsdk.Node.development(enable_mdns=False, max_connections=8)
    try:
        with Attacker() as attacker, Attacker() as honest:
            attacker.run("churn", addr=victim.addrs[0], times=2, pause=0.3)  # warm-up
            assert _wait_for(lambda: victim.connections().empty)
            time.sleep(2)  # let the services settle (pubsub starts on first use)
            tasks_before = victim.resources().tasks
            done = attacker.run("churn", addr=victim.addrs[0], times=20, pause=0.3)
            assert done["connected"] >= 16, done  # before: 6 connected, then 14 refused
            # An honest peer (another process) still gets in.
            assert honest.run("connect", addr=victim.addrs[0], timeout=5) == victim.peer_id
        # The handlers of the closed connections are gone.
        assert _wait_for(lambda: victim.resources().tasks <= tasks_before + 5), (
            tasks_before,
            victim.resources().tasks,
        )
    finally:
        victim.stop()


# ------------------------------------------------------------------- resources
def test_resources_reads_the_process(node_pair: tuple[ucsdk.Node, ucsdk.Node]) -> None:
    a, b = node_pair
    before = a.resources()
    a.connect(b.addrs[0])
    after = a.resources()
    assert after.fds > 0 and after.threads >= 2 and after.rss_mb > 10
    assert after.tasks > before.tasks  # the new connection's tasks are counted
    assert asyncio.run(a.aio.resources()).tasks > 0


# ------------------------------------------------------------------- lab nodes
@pytest.mark.lab
def test_lab_node_timeouts_and_resources(lab_required: None) -> None:
    from ucsdk.lab import Lab

    with Lab("apihard") as lab:
        pub = lab.add_public_host("pub")
        lab.wait_ready()
        node = pub.node
        # Before: OverflowError in the lab's wait for the answer.
        assert node.metrics(timeout=INF).active_connections == 0
        usage = node.resources(timeout=INF)
        assert usage.fds > 0 and usage.tasks > 0 and usage.threads >= 2
        for bad in (float("nan"), -1, 0):
            with pytest.raises(errors.InvalidInput):
                node.metrics(timeout=bad)
        assert node.running
