"""ucsdk against js-libp2p: pubsub peer discovery (@libp2p/pubsub-peer-discovery) and
AutoNAT v1 (@libp2p/autonat).

A real js-libp2p node (pinned versions in ``js/package.json``, installed with ``npm ci``)
runs as a separate process on loopback; ucsdk nodes connect to it, or it dials them, and
each side must accept the other's signed ``Peer`` announcements on GossipSub.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ucsdk
from tests.interop._ucjs import end_process

JS_DIR = Path(__file__).parent / "js"
# Pubsub is the only discovery here, so every "pubsub" source came over GossipSub.
FAST = {"pubsub_announce_interval": 1.0, "enable_mdns": False, "enable_dht_discovery": False}


class JsPeer:
    """The js-libp2p process and the JSON lines it prints."""

    def __init__(self, js_dir: Path, dial: str | None = None, script: str = "peer.mjs") -> None:
        args = ["node", script] + ([dial] if dial else [])
        self.proc = subprocess.Popen(
            args, cwd=js_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.discovered: dict[str, list[str]] = {}
        self.subscribers: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self.lines.get(timeout=30)
        assert first["event"] == "listening", first
        self.peer_id: str = first["peer"]
        self.addr: str = first["addr"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event["event"] == "discovered":
                self.discovered[event["peer"]] = event["addrs"]
            elif event["event"] == "subscribers":
                self.subscribers = event["peers"]
            self.lines.put(event)

    def stop(self) -> None:
        self.proc.terminate()
        end_process(self.proc)
        self._reader.join(timeout=5)


@pytest.fixture
def js_peer(js_ready: Path) -> Iterator[JsPeer]:
    peer = JsPeer(js_ready)
    try:
        yield peer
    finally:
        peer.stop()


def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def _pubsub_found(node: ucsdk.Node) -> dict[str, list[str]]:
    frame = node.peers()
    return {
        pid: list(addrs)
        for pid, sources, addrs in zip(
            frame["peer_id"], frame["sources"], frame["multiaddrs"], strict=True
        )
        if "pubsub" in sources
    }


def _port(addr: str) -> str:
    return addr.split("/tcp/")[1].split("/")[0]


def test_ucsdk_and_js_libp2p_discover_each_other(js_peer: JsPeer) -> None:
    with ucsdk.Node.development(**FAST) as node:
        node.connect(js_peer.addr)
        assert _wait_for(lambda: js_peer.peer_id in _pubsub_found(node), 15), node.peers()
        assert _wait_for(lambda: node.peer_id in js_peer.discovered, 15), js_peer.discovered
        # Each side learnt the other's real listening port from the announcement.
        assert _port(js_peer.addr) in {_port(a) for a in _pubsub_found(node)[js_peer.peer_id]}
        assert _port(node.addrs[0]) in {_port(a) for a in js_peer.discovered[node.peer_id]}
        assert node.peer_id in js_peer.subscribers
        assert node.metrics().invalid_messages == 0


def test_js_libp2p_dials_ucsdk_and_both_discover(js_ready: Path) -> None:
    with ucsdk.Node.development(**FAST) as node:
        js = JsPeer(js_ready, dial=node.addrs[0])
        try:
            assert _wait_for(lambda: js.peer_id in _pubsub_found(node), 15), node.peers()
            assert _wait_for(lambda: node.peer_id in js.discovered, 15), js.discovered
        finally:
            js.stop()


def test_two_ucsdk_nodes_find_each_other_through_a_js_node(js_peer: JsPeer) -> None:
    """js-libp2p validates and forwards ucsdk's signed announcements to another ucsdk node."""
    apart = {**FAST, "auto_dial": False}
    with ucsdk.Node.development(**apart) as a, ucsdk.Node.development(**apart) as b:
        a.connect(js_peer.addr)
        b.connect(js_peer.addr)
        assert _wait_for(
            lambda: b.peer_id in _pubsub_found(a) and a.peer_id in _pubsub_found(b), 20
        ), (
            a.peers(),
            b.peers(),
        )
        assert {a.peer_id, b.peer_id} <= set(js_peer.discovered)
        # a and b never connected to each other: the js node relayed their announcements.
        assert b.peer_id not in set(a.connections()["peer_id"])
        assert a.peer_id not in set(b.connections()["peer_id"])


def test_ucsdk_autonat_client_and_a_js_autonat_server_understand_each_other(
    js_ready: Path,
) -> None:
    """ucsdk's DIAL request reaches js-libp2p's AutoNAT v1 service, which answers it. js
    refuses to dial loopback addresses, so the answer here is a refusal (not evidence)."""
    js = JsPeer(js_ready, script="autonat.mjs")
    try:
        with ucsdk.Node.development(**FAST, autonat_boot_delay=3600) as node:
            node.connect(js.addr)
            time.sleep(1.0)  # identify tells the node that js speaks AutoNAT
            answers = node.probe_nat(timeout=30)
            assert list(answers["server"]) == [js.peer_id]
            row = answers.iloc[0]
            assert row["status"] == "E_DIAL_REFUSED", row
            assert row["status_text"]  # js's own words, decoded from its DialResponse
            assert node.metrics().nat_status == "unknown"  # a refusal is no evidence
    finally:
        js.stop()
