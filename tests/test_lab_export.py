"""Exports of a scenario to Mininet, Containernet and Shadow: valid, complete, faithful.

Neither engine is installed here; the tests check what the files say (a script that
compiles, YAML that parses) against the scenario. No root needed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ucsdk import errors
from ucsdk.lab.export import export, export_warnings, to_mininet, to_shadow
from ucsdk.lab.nat import NatType, router_ruleset
from ucsdk.lab.spec import HostSpec, LinkSpec, Scenario

SCENARIO = Scenario(
    "mix",
    hosts=(
        HostSpec("relay", "none", config={"enable_relay_server": True}),
        HostSpec("home", "port_restricted", link=LinkSpec(latency_ms=40, jitter_ms=4)),
        HostSpec("sym", "symmetric", link=LinkSpec(latency_ms=100, loss_percent=2)),
        HostSpec("cgn", "double", link=LinkSpec(bandwidth_mbps=20)),
    ),
)


@pytest.mark.parametrize("containernet", [False, True])
def test_the_mininet_script_builds_the_same_topology(containernet: bool) -> None:
    script = to_mininet(SCENARIO, containernet=containernet, image="me/ucsdk:1")
    compile(script, "mix.py", "exec")
    assert ("net.addDocker(" in script) is containernet
    assert ("dimage='me/ucsdk:1'" in script) is containernet
    for name in ("relay", "home", "sym", "cgn"):
        assert f"hosts[{name!r}]" in script
    for router in ("home_gw", "sym_gw", "cgn_gw", "cgn_cgn"):
        assert f"RULESETS[{router!r}]" in script
    # The same rulesets as the lab's routers.
    ruleset = router_ruleset(
        NatType.SYMMETRIC, "wan0", "lan0", inside="10.2.0.2", public_ip="198.51.100.11"
    )
    assert repr(ruleset) in script
    # Links: each end delays half the round trip; loss on the host's end; the cap.
    home = next(line for line in script.splitlines() if "intfName1='home-eth0'" in line)
    assert home.count("'delay': '20ms'") == 2 and home.count("'jitter': '2ms'") == 2, home
    sym = next(line for line in script.splitlines() if "intfName1='sym-eth0'" in line)
    assert sym.count("'loss': 2.0") == 1 and sym.count("'delay': '50ms'") == 2, sym
    cgn = next(line for line in script.splitlines() if "intfName1='cgn-eth0'" in line)
    assert cgn.count("'bw': 20.0") == 2, cgn
    assert "ucsdk " in script and "--port" in script


def test_the_shadow_config_keeps_latency_loss_and_bandwidth() -> None:
    text = to_shadow(SCENARIO, stop_time_s=30)
    config = yaml.safe_load(text)
    assert config["general"]["stop_time"] == "30 s"
    assert config["network"]["graph"]["type"] == "gml"
    gml = config["network"]["graph"]["inline"]
    ids = [int(x) for x in re.findall(r"\bid (\d+)", gml)]
    assert ids == list(range(len(SCENARIO.hosts) + 1))  # the core, then one per host
    hosts = config["hosts"]
    assert set(hosts) == {"relay", "home", "sym", "cgn"}
    assert sorted(h["network_node_id"] for h in hosts.values()) == [1, 2, 3, 4]
    assert hosts["relay"]["ip_addr"] == "203.0.113.10"
    edges = re.findall(
        r'source (\d+)\s+target 0\s+latency "(\d+) us"\s+jitter "(\d+) us"'
        r"\s+packet_loss ([\d.]+)",
        gml,
    )
    by_node = {int(s): (int(lat), int(jit), float(loss)) for s, lat, jit, loss in edges}
    assert by_node[hosts["home"]["network_node_id"]] == (20000, 2000, 0.0)
    assert by_node[hosts["sym"]["network_node_id"]][0] == 50000
    assert by_node[hosts["sym"]["network_node_id"]][2] == pytest.approx(0.02)
    assert f"id {hosts['cgn']['network_node_id']}" in gml and '"20 Mbit"' in gml
    process = hosts["sym"]["processes"][0]
    assert process["path"] == "python3" and process["args"][:3] == ["-m", "ucsdk", "node"]
    # Shadow has no NAT: said in the file and by export_warnings.
    warnings = export_warnings(SCENARIO, "shadow")
    assert len([w for w in warnings if "Shadow has no NAT" in w]) == 3
    assert all(f"# {w}" in text for w in warnings)


def test_export_writes_files_and_refuses_unknown_engines(tmp_path: Path) -> None:
    assert export(SCENARIO, "shadow", tmp_path / "s.yaml").read_text().startswith("# Shadow")
    compile(export(SCENARIO, "containernet", tmp_path / "c.py").read_text(), "c.py", "exec")
    with pytest.raises(errors.InvalidInput, match="export engine"):
        export(SCENARIO, "ns-3", tmp_path / "x")
    with pytest.raises(errors.InvalidInput, match="stop_time_s"):
        to_shadow(SCENARIO, stop_time_s=0)


def test_ucsdk_lab_export_from_a_scenario_file(tmp_path: Path) -> None:
    path = SCENARIO.save(tmp_path / "mix.toml")
    out = tmp_path / "mix.shadow.yaml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ucsdk",
            "lab",
            "export",
            str(path),
            "--to",
            "shadow",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Shadow has no NAT" in done.stderr
    assert set(yaml.safe_load(out.read_text())["hosts"]) == {"relay", "home", "sym", "cgn"}
    bad = subprocess.run(
        [sys.executable, "-m", "ucsdk", "lab", "export", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "--to" in bad.stderr
