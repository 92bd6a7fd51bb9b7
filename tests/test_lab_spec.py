"""Scenario files: TOML and YAML round trips, results with the scenario inside, bad input.

No root needed: nothing here builds a lab (tests/lab/test_campaign.py runs one).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucsdk import errors
from ucsdk.lab import NatType
from ucsdk.lab.campaigns import ATTEMPT_COLUMNS, nat_counts, population
from ucsdk.lab.spec import (
    CampaignSpec,
    HostSpec,
    LinkSpec,
    Scenario,
    load_results,
    save_results,
)

EXAMPLE = """
name = "two-homes"
description = "two peers behind home routers and a public relay"
seed = 7

[node_defaults]
connection_timeout = 3.0

[[hosts]]
name = "relay"
nat = "none"
config = { enable_relay_server = true }

[[hosts]]
name = "alice"
nat = "port_restricted"
hairpinning = true
link = { latency_ms = 40, jitter_ms = 2.5 }

[[hosts]]
name = "bob"
nat = "symmetric"
udp_timeout_s = 30
link = { latency_ms = 80, loss_percent = 1, bandwidth_mbps = 20 }
config = { enable_dcutr = true, transports = ["tcp"] }

[campaign]
trials = 4
transports = ["tcp", "quic"]
"""


def test_a_scenario_file_round_trips_through_toml_and_yaml(tmp_path: Path) -> None:
    scenario = Scenario.loads(EXAMPLE, "toml")
    assert [h.name for h in scenario.hosts] == ["relay", "alice", "bob"]
    bob = scenario.host("bob")
    assert bob.nat is NatType.SYMMETRIC
    assert bob.link == LinkSpec(latency_ms=80, loss_percent=1, bandwidth_mbps=20)
    assert bob.udp_timeout_s == 30.0 and scenario.host("alice").hairpinning is True
    assert scenario.campaign == CampaignSpec(trials=4, transports=("tcp", "quic"))
    for name in ("s.toml", "s.yaml", "s.yml"):
        path = scenario.save(tmp_path / name)
        assert Scenario.load(path) == scenario, path.read_text()
    # TOML -> YAML -> TOML gives the same text back.
    again = Scenario.loads(Scenario.loads(scenario.dumps("yaml"), "yaml").dumps("toml"), "toml")
    assert again.dumps("toml") == scenario.dumps("toml")
    frame = scenario.hosts_frame().set_index("host")
    assert frame.loc["bob", "bandwidth_mbps"] == 20 and frame.loc["relay", "nat"] == "none"


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_results_keep_the_scenario_and_versions(tmp_path: Path, suffix: str) -> None:
    scenario = population(hosts=4, trials=3, seed=3)
    rows = [
        {c: None for c in ATTEMPT_COLUMNS}
        | {"attempt": k, "transport": "tcp", "outcome": o, "first_attempt": o == "SUCCESS"}
        for k, o in enumerate(["SUCCESS", "FAILED", "NO_STREAM"], 1)
    ]
    frame = pd.DataFrame(rows, columns=list(ATTEMPT_COLUMNS))
    frame["reason"] = ["", "no answer from 198.51.100.10:4001, twice", 'a "quoted" reason']
    path = save_results(frame, tmp_path / f"results.{suffix}", scenario)
    loaded, again, versions = load_results(path)
    assert again == scenario
    assert {"ucsdk", "libp2p", "python", "kernel", "created"} <= set(versions)
    assert list(loaded["outcome"]) == ["SUCCESS", "FAILED", "NO_STREAM"]
    assert list(loaded["reason"].fillna("")) == list(frame["reason"])
    assert list(loaded["first_attempt"]) == [True, False, False]


def test_a_population_is_reproducible_and_follows_its_mix() -> None:
    a = population(hosts=10, nat_mix={"cone": 0.7, "symmetric": 0.3}, latency_ms=(10, 90))
    assert a == population(hosts=10, nat_mix={"cone": 0.7, "symmetric": 0.3}, latency_ms=(10, 90))
    assert a != population(
        hosts=10, nat_mix={"cone": 0.7, "symmetric": 0.3}, latency_ms=(10, 90), seed=1
    )
    kinds = [h.nat for h in a.hosts if h.name != "relay"]
    assert kinds.count(NatType.PORT_RESTRICTED) == 7 and kinds.count(NatType.SYMMETRIC) == 3
    latencies = [h.link.latency_ms for h in a.hosts if h.name != "relay"]
    assert all(lat is not None and 10 <= lat <= 90 for lat in latencies)
    # The drawn values are in the file: loading it gives the same population.
    assert Scenario.loads(a.dumps("toml")) == a


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=200),
    shares=st.dictionaries(
        st.sampled_from(["none", "cone", "symmetric", "double", "port_forwarded"]),
        st.floats(min_value=0.01, max_value=10),
        min_size=1,
    ),
)
def test_nat_counts_add_up_and_stay_within_one_host_of_the_mix(
    n: int, shares: dict[str, float]
) -> None:
    counts = nat_counts(n, shares)
    assert sum(counts.values()) == n
    total = sum(shares.values())
    for kind, count in counts.items():
        exact = n * sum(v for k, v in shares.items() if NatType.parse(k) is kind) / total
        assert abs(count - exact) < 1


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('name = "x"\n[[hosts]]\nname = "a"\nnat = "full-cone-please"', "NAT type"),
        ('name = "x"\n[[hosts]]\nname = "a"\nlatency = 5', "host a key"),
        ('name = "x"\n[[hosts]]\nname = "a"\nlink = { latency_ms = -1 }', "latency_ms"),
        ('name = "x"\n[[hosts]]\nname = "a"\nlink = { loss_percent = 120 }', "loss_percent"),
        ('name = "x"\n[[hosts]]\nname = "a"\n[[hosts]]\nname = "a"', "each name once"),
        ('name = "x"\n[[hosts]]\nname = "a"\n[campaign]\nrelay = "r"', "campaign relay"),
        ('name = "x"\n[campaign]\ntrials = 0\nrelay = "a"', "campaign trials"),
        ('name = "x"\n[campaign]\ntransports = ["udp"]', "campaign transports"),
        ('name = "x"\nhosts = 3', "scenario hosts"),
        ('name = "x"\ncolour = "red"', "scenario key"),
        ("name = ", "scenario TOML"),
    ],
)
def test_bad_scenarios_are_refused_with_the_bad_value_named(text: str, named: str) -> None:
    with pytest.raises(errors.InvalidInput, match=named):
        Scenario.loads(text, "toml")


def test_bad_files_and_formats_are_named(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match=r"a \.toml, \.yaml or \.yml file"):
        Scenario.load(tmp_path / "s.json")
    with pytest.raises(errors.InvalidInput, match="readable file"):
        Scenario.load(tmp_path / "missing.toml")
    with pytest.raises(errors.InvalidInput, match="scenario YAML"):
        Scenario.loads("hosts: [", "yaml")
    with pytest.raises(errors.InvalidInput, match="results file"):
        save_results(pd.DataFrame(), tmp_path / "r.xlsx", Scenario("x"))
    plain = tmp_path / "plain.csv"
    pd.DataFrame({"a": [1]}).to_csv(plain, index=False)
    with pytest.raises(errors.InvalidInput, match="written by save_results"):
        load_results(plain)
    with pytest.raises(errors.InvalidInput, match="plain data"):
        HostSpec("a", config={"on_peer_discovered": print})
