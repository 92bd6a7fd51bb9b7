"""Campaigns on the lab: `ucsdk lab run FILE` measures, sorts each attempt into punchr's
outcomes and saves the results with the scenario inside; a node that goes away mid-attempt
is CANCELLED, not a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ucsdk.lab
from ucsdk.lab.campaigns import (
    CAMPAIGN_DEFAULTS,
    OUTCOMES,
    TRANSPORT_CONFIG,
    _attempt,
    population,
    success_table,
)
from ucsdk.lab.spec import load_results


def test_ucsdk_lab_run_measures_a_campaign_and_saves_it_with_its_scenario(
    tmp_path: Path,
) -> None:
    scenario = population(
        hosts=3,
        nat_mix={"port_restricted": 2, "symmetric": 1},
        latency_ms=20,
        trials=4,
        transports=("tcp",),
        seed=5,
    )
    path = scenario.save(tmp_path / "campaign.toml")
    out = tmp_path / "results.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "ucsdk", "lab", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "success rate (hole-punching stage)" in done.stdout, done.stdout
    frame, again, versions = load_results(out)
    assert again == scenario and versions["ucsdk"] == ucsdk.__version__
    print(frame[["dialer_nat", "target_nat", "outcome", "dcutr_attempts", "reason"]])
    assert len(frame) == 4 and set(frame["outcome"]) <= set(OUTCOMES)
    assert list(frame["dialer_latency_ms"]) == [20.0] * 4
    # Linux conntrack NAT is deterministic: two endpoint-independent NATs punch through,
    # a symmetric one on either side fails after DCUtR's three attempts.
    for row in frame.itertuples():
        if "symmetric" in (row.dialer_nat, row.target_nat):
            assert row.outcome == "FAILED" and row.dcutr_attempts == 3, row
            assert row.reason, row
        else:
            assert row.outcome == "SUCCESS" and row.first_attempt, row
            assert row.time_to_direct_ms > 0 and row.relayed_rtt_ms >= 20, row
    overall = success_table(frame).set_index("dialer_nat").loc["all"]
    assert overall["attempts"] == 4
    assert overall["success"] + overall["failed"] == 4


def test_an_attempt_whose_target_goes_away_is_cancelled() -> None:
    defaults = {**CAMPAIGN_DEFAULTS, **TRANSPORT_CONFIG["tcp"]}
    with ucsdk.lab.Lab("cancel", node_defaults=defaults) as lab:
        relay = lab.add_public_host("relay", enable_relay_server=True)
        a = lab.add_host("a")
        b = lab.add_host("b")
        lab.wait_ready()
        a.node.connect(relay.multiaddr())
        b.node.reserve(relay.multiaddr())
        first = _attempt(1, "tcp", a, b, relay, 20.0, {})
        assert first["outcome"] == "SUCCESS", first
        lab.kill_node(b)
        row = _attempt(2, "tcp", a, b, relay, 20.0, {})
        assert row["outcome"] == "CANCELLED" and "went away" in row["reason"], row
        assert a.node.running  # the campaign's own side carries on
