"""AutoNAT under attack, by hostile peers in processes of their own (``tests/_attacker.py``).

1. Verdict poisoning: three lying AutoNAT "servers" from one /16 (127.0.0.2-4, answering OK
   to every DIAL without dialling) must not turn a node's verdict to public under the
   default rule (3 servers from 2 IP groups); with the rule lowered to one group (the
   development and lab presets) the same three do, which shows the attack is real.
2. Server limits: streams beyond the per-peer and total caps are reset before anything is
   read, requests that never (fully) arrive are dropped at the read deadline, each counted,
   and a well-behaved client is served afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest
from _attacker import Attacker

import ucsdk
from ucsdk.config import ConnectivityConfig

HALF_REQUEST = "0a0801"  # a length prefix of 10, then 2 of those 10 bytes


def victim(**overrides: Any) -> ucsdk.Node:
    """A node on loopback with the default AutoNAT rule, no automatic rounds."""
    settings: dict[str, Any] = dict(
        listen_host="127.0.0.1",
        enable_mdns=False,
        auto_dial=False,
        autonat_boot_delay=3600.0,
    )
    settings.update(overrides)
    return ucsdk.Node(ConnectivityConfig.preset("private", **settings))


@pytest.fixture
def three_liars() -> Iterator[list[Attacker]]:
    """Three AutoNAT servers on 127.0.0.2-4 (one /16) that answer OK to every DIAL."""
    with ExitStack() as stack:
        liars = [stack.enter_context(Attacker(listen=f"/ip4/127.0.0.{i}/tcp/0")) for i in (2, 3, 4)]
        for liar in liars:
            assert liar.run("autonat_lying_server") == 0
        yield liars


def ask_all(node: ucsdk.Node, liars: list[Attacker]) -> Any:
    """Connect to every liar and probe until each has answered at least once."""
    for liar in liars:
        node.connect(liar.addr)
    wanted = {liar.peer_id for liar in liars}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        node.probe_nat()  # asks the connected peers identify says speak AutoNAT
        reports = node.autonat_reports()
        if wanted <= set(reports["server"]):
            return reports
    raise AssertionError(f"not every liar was asked: {node.autonat_reports()}")


@pytest.mark.parametrize("min_groups", [None, 1], ids=["default_rule", "one_group_allowed"])
def test_three_servers_from_one_network_cannot_flip_the_verdict(
    three_liars: list[Attacker], min_groups: int | None
) -> None:
    overrides = {} if min_groups is None else {"autonat_min_groups": min_groups}
    node = victim(**overrides)
    try:
        reports = ask_all(node, three_liars)
        assert (reports["status"] == "OK").all()
        assert sum(liar.run("autonat_lying_server") for liar in three_liars) >= 3
        status = node.metrics().nat_status
        if min_groups is not None:
            # The control: the same liars do decide it when one group is enough.
            assert status == "public"
            return
        # Three identities, one network: no verdict, and the reports say why.
        assert status == "unknown", reports
        assert set(reports["server_ip"]) == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
        assert set(reports["server_group"]) == {"127.0.0.0/16"}
        last = reports["vote"].iloc[-1]
        assert "public 3 server(s) in 1 group(s)" in last
        assert "needs 3 in 2 group(s)" in last
        events = node.events()
        said = events[events["kind"] == "autonat_report"]["detail"]
        assert len(said) == len(reports) and said.str.contains("from 127.0.0.").all()
    finally:
        node.stop()


@pytest.mark.parametrize("payload", ["", HALF_REQUEST], ids=["silent", "half_message"])
def test_server_caps_streams_per_peer_and_frees_them_at_the_read_deadline(
    payload: str,
) -> None:
    node = victim()  # defaults: 2 streams per peer, 5 s to send a request
    try:
        with Attacker() as attacker:
            attacker.run("connect", addr=node.addrs[0])
            started = time.monotonic()
            held = attacker.run(
                "autonat_hold_streams", peer=node.peer_id, count=6, hex=payload, wait=20
            )
            took = time.monotonic() - started
            assert len(held) == 6, held
            # A refused stream is reset as soon as it is negotiated: opening it fails, or
            # it ends at once.
            refused = [s for s in held if not s["opened"] or s["after_s"] < 2.0]
            served = [s for s in held if s["opened"] and s["after_s"] >= 2.0]
            assert len(refused) == 4, held  # beyond the per-peer cap: reset at once
            assert all(s["ended"] != "timeout" for s in held), held
            assert len(served) == 2 and all(4.0 <= s["after_s"] <= 8.0 for s in served), held
            assert took < 15, took
            dropped = node.metrics().invalid_message_kinds
            assert dropped.get("autonat_peer_busy") == 4, dropped
            assert dropped.get("autonat_read_timeout") == 2, dropped
            # The same peer, well-behaved now, is served (dialled back: OK).
            answer = attacker.run("autonat_ask", peer=node.peer_id)
            assert answer["status"] == 0, answer
        services = node.services()
        row = services[services["name"] == "autonat"].iloc[0]
        assert (row["state"], row["restarts"]) == ("running", 0)
    finally:
        node.stop()


def test_server_caps_streams_in_total() -> None:
    node = victim(
        autonat_server_max_streams=3,
        autonat_server_max_streams_per_peer=2,
        autonat_server_read_timeout=2.0,
    )
    try:
        with Attacker() as a, Attacker(listen="/ip4/127.0.0.5/tcp/0") as b:
            for attacker in (a, b):
                attacker.run("connect", addr=node.addrs[0])

            def hold(attacker: Attacker) -> list[dict[str, Any]]:
                result: list[dict[str, Any]] = attacker.run(
                    "autonat_hold_streams", peer=node.peer_id, count=2, hex=HALF_REQUEST, wait=20
                )
                return result

            with ThreadPoolExecutor(2) as pool:
                held = [s for answer in pool.map(hold, (a, b)) for s in answer]
            assert len(held) == 4 and all(s["ended"] != "timeout" for s in held), held
            # The fourth stream is reset at once (opening it fails, or it ends at once).
            assert sum(not s["opened"] or s["after_s"] < 1.0 for s in held) == 1, held
            assert sum(s["opened"] and 1.5 <= s["after_s"] <= 5.0 for s in held) == 3, held
            dropped = node.metrics().invalid_message_kinds
            assert dropped.get("autonat_busy") == 1, dropped
            assert dropped.get("autonat_read_timeout") == 3, dropped
            assert a.run("autonat_ask", peer=node.peer_id)["status"] == 0
    finally:
        node.stop()
