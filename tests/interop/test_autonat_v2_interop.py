"""AutoNAT v2 between ucsdk and js-libp2p (``@libp2p/autonat-v2``), both ways, on the NAT
lab: the js peer (``js/autonat-v2.mjs``) runs in a public lab host's namespace, so that
every address on either side is a lab "internet" address, not loopback.

* js asks ucsdk: js reports its TCP address reachable once ucsdk's server dialled it back
  (from its own dial-back identity) with the nonce of js's request;
* ucsdk asks js: a public ucsdk node's TCP address comes out ``public`` with the js peer
  as the server (response OK, dial OK, dial-back nonce received);
* a ucsdk node behind a port-restricted NAT asks js: ``private`` (js's dial fails).

js-libp2p counts the documentation ranges the lab is made of (203.0.113.0/24,
198.51.100.0/24) as private: it would neither ask about nor dial such an address. The js
peer runs with ``--documentation-ranges-public``, which drops those ranges from js's
private-IP table only (ucsdk makes the same choice, see ``ucsdk.addresses.scope_of``).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import ucsdk.lab
from tests.interop._ucjs import end_process
from ucsdk.lab.scenarios import wait_until

pytestmark = pytest.mark.lab

JS_PORT = 4001
DEFAULTS = {
    "connection_timeout": 3.0,
    "autonat_min_agreement": 1,  # one AutoNAT v2 server (the js peer) per ucsdk node
    "autonat_boot_delay": 1.0,
    "enable_dht_discovery": False,
}


class JsAutonatV2Peer:
    """``node autonat-v2.mjs`` in network namespace ``ns``: its JSON-line events, collected.
    ``stop()`` ends it by its PID (``ip netns exec`` execs node, so the PID is node's)."""

    def __init__(self, js_dir: Path, ns: str, dial: Sequence[str] = (), timeout: float = 30):
        node = shutil.which("node")
        assert node is not None  # js_ready checked it
        args = ["--port", str(JS_PORT), "--documentation-ranges-public", *dial]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, node, "autonat-v2.mjs", *args],
            cwd=js_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "DEBUG": "libp2p:auto-nat-v2*"},
        )
        self.events: list[dict[str, Any]] = []
        self.stderr: collections.deque[str] = collections.deque(maxlen=300)
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read, daemon=True, name="js-autonat2-out"),
            threading.Thread(target=self._drain, daemon=True, name="js-autonat2-err"),
        ]
        for thread in self._threads:
            thread.start()
        try:
            ready = self.wait_for(lambda e: e["event"] == "listening", timeout)
            assert ready is not None, f"the js peer did not start: {self.tail()}"
        except BaseException:
            self.stop()
            raise
        self.peer_id: str = ready["peer"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def find(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        with self._changed:
            return next((e for e in self.events if predicate(e)), None)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        """The first event ``predicate`` accepts, waiting up to ``timeout`` seconds (less
        if the process ends)."""
        with self._changed:
            self._changed.wait_for(
                lambda: any(predicate(e) for e in self.events) or self.proc.poll() is not None,
                timeout,
            )
        return self.find(predicate)

    def tail(self) -> str:
        with self._changed:
            events = [json.dumps(e) for e in self.events[-30:]]
        errors = list(self.stderr)[-40:]
        return "\nstdout:\n" + "\n".join(events) + "\nstderr:\n" + "\n".join(errors)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # node stops libp2p and exits
        end_process(self.proc)
        for thread in self._threads:
            thread.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _v2_checks(node: ucsdk.lab.LabNode, server: str, prefix: str) -> pd.DataFrame:
    """``node``'s AutoNAT v2 checks by ``server`` of an address starting with ``prefix``."""
    checks = node.autonat_v2_checks()
    about = checks["addr"].fillna(checks["asked"]).fillna("")
    return checks[(checks["server"] == server) & about.str.startswith(prefix)]


def _v2_status(rows: pd.DataFrame, addr: str) -> list[str]:
    """The v2 verdicts on ``addr`` in a reachability frame."""
    return list(rows[(rows["protocol"] == "v2") & (rows["addr"] == addr)]["status"])


def test_autonat_v2_with_js_libp2p_both_ways(lab_required: None, js_ready: Path) -> None:
    with ucsdk.lab.Lab(node_defaults=DEFAULTS) as lab:
        s1 = lab.add_public_host("s1")
        nat1 = lab.add_host("nat1", nat="port_restricted")
        js_host = lab.add_public_host("js", node=False)
        lab.wait_ready()
        s1_tcp = s1.multiaddr("tcp").split("/p2p/")[0]
        js_tcp = f"/ip4/{js_host.public_ip}/tcp/{JS_PORT}"
        js = JsAutonatV2Peer(js_ready, js_host.ns, dial=[s1.multiaddr("tcp")])
        try:
            assert js.wait_for(lambda e: e["event"] in ("dialled", "dial_failed"), 30), js.tail()
            assert js.find(lambda e: e["event"] == "dialled"), js.tail()
            js_addr = f"{js_tcp}/p2p/{js.peer_id}"

            # A. js asks ucsdk: s1 dials js's TCP address back with js's nonce, js marks
            # the address verified.
            confirmed = js.wait_for(
                lambda e: e["event"] == "address" and e["addr"] == js_tcp and e["reachable"],
                60,
            )
            assert confirmed is not None and not confirmed["private"], js.tail()
            back = js.find(lambda e: e["event"] == "dial_back" and e["nonce_known"])
            assert back is not None, js.tail()
            # From s1's IP, and (ucsdk's dial-back host) not as s1 itself.
            assert back["addr"].startswith(f"/ip4/{s1.public_ip}/tcp/"), back
            assert back["peer"] != s1.node.peer_id, back

            # B. ucsdk asks js: s1's TCP address is public, js being the server.
            s1.node.connect(js_addr)

            def s1_public() -> bool:
                # The round's own verdict: s1 runs further rounds by itself meanwhile (js
                # dials back as itself; each dial-back is a new connection, identify on it
                # pokes s1's AutoNAT v2 into a new round), and a later E_DIAL_BACK_ERROR
                # from js leaves the address "unknown" in reachability().
                rows = s1.node.check_reachability(timeout=120)
                mine = _v2_checks(s1.node, js.peer_id, s1_tcp)
                good = mine[
                    (mine["addr"] == s1_tcp)
                    & (mine["response"] == "OK")
                    & (mine["dial"] == "OK")
                    & mine["reachable"].map(lambda v: v is True)
                ]
                return not good.empty and _v2_status(rows, s1_tcp) == ["public"]

            assert wait_until(s1_public, 90, 0.5), (
                s1.node.autonat_v2_checks().to_string(),
                s1.node.reachability().to_string(),
                js.tail(),
            )
            served = js.find(lambda e: e["event"] == "served" and e["addr"] == s1_tcp)
            assert served is not None and served["dial_status"] == "OK", js.tail()

            # Negative: behind a port-restricted NAT, js's dial to the NAT's address fails.
            nat_prefix = f"/ip4/{nat1.public_ip}/tcp/"
            nat1.node.connect(js_addr)

            def nat1_private() -> bool:
                rows = nat1.node.check_reachability(timeout=120)
                mine = _v2_checks(nat1.node, js.peer_id, nat_prefix)
                failed = mine[
                    (mine["response"] == "OK")
                    & (mine["dial"] == "E_DIAL_ERROR")
                    & mine["reachable"].map(lambda v: v is False)
                ]
                return not failed.empty and all(
                    _v2_status(rows, addr) == ["private"] for addr in set(failed["addr"])
                )

            assert wait_until(nat1_private, 120, 0.5), (
                nat1.node.autonat_v2_checks().to_string(),
                nat1.node.reachability().to_string(),
                js.tail(),
            )
            refused = js.find(lambda e: e["event"] == "served" and e["addr"].startswith(nat_prefix))
            assert refused is not None and refused["dial_status"] == "E_DIAL_ERROR", js.tail()
            # Nothing of nat1 came out public.
            rows = nat1.node.reachability()
            assert "public" not in set(rows[rows["protocol"] == "v2"]["status"]), rows.to_string()
        finally:
            js.stop()
