"""AutoNAT v2 and the NAT type on the lab: each node judges its own NAT from what two public
peers see over QUIC and what AutoNAT v2 servers reach, against the lab's ground truth for
every ``NatType``."""

from __future__ import annotations

import pytest

import ucsdk.lab
from ucsdk.lab import NatType
from ucsdk.lab.scenarios import wait_until

pytestmark = pytest.mark.lab

DEFAULTS = {
    "connection_timeout": 3.0,
    "autonat_min_agreement": 1,
    "autonat_boot_delay": 1.0,
    "enable_dht_discovery": False,
}

# What a node behind each lab NAT can see of it. A double NAT (home router behind a
# carrier-grade NAT, both endpoint-independent and port-preserving) behaves, seen from
# inside, exactly as one such NAT: nothing on the wire tells them apart.
EXPECTED = {
    NatType.NONE: ("none", True),
    NatType.PORT_FORWARDED: ("port_forwarded", True),
    NatType.PORT_RESTRICTED: ("endpoint_independent", False),
    NatType.DOUBLE: ("endpoint_independent", False),
    NatType.SYMMETRIC: ("endpoint_dependent", False),
}
NAMES = {
    NatType.NONE: "pub",
    NatType.PORT_FORWARDED: "fwd",
    NatType.PORT_RESTRICTED: "cone",
    NatType.DOUBLE: "dbl",
    NatType.SYMMETRIC: "sym",
}


def test_every_lab_nat_is_judged_as_the_lab_built_it(lab_required: None) -> None:
    with ucsdk.lab.Lab(node_defaults=DEFAULTS) as lab:
        servers = [lab.add_public_host("s1"), lab.add_public_host("s2")]
        hosts = {
            nat: (
                lab.add_public_host(NAMES[nat])
                if nat is NatType.NONE
                else lab.add_host(NAMES[nat], nat=nat)
            )
            for nat in EXPECTED
        }
        lab.wait_ready()
        for host in hosts.values():
            for server in servers:
                host.node.connect(server.multiaddr("quic"))

        for host in hosts.values():
            # Identify tells each node which peers serve AutoNAT v2; then one round now.
            assert wait_until(
                lambda h=host: len(h.node.check_reachability(timeout=60)) > 1, 30, 1.0
            ), host.node.autonat_v2_checks()

        def judged(nat: NatType) -> tuple[str, bool | None]:
            report = hosts[nat].node.nat_type()
            return report.type, report.reachable

        for nat, expected in EXPECTED.items():
            assert wait_until(lambda nat=nat, want=expected: judged(nat) == want, 20, 0.5), (
                nat,
                str(hosts[nat].node.nat_type()),
                hosts[nat].node.reachability().to_string(),
                hosts[nat].node.autonat_v2_checks().to_string(),
            )
            report = hosts[nat].node.nat_type()
            assert nat.value and report.meaning and report._repr_html_().startswith("<div>")
            if nat in (NatType.PORT_RESTRICTED, NatType.DOUBLE):
                assert report.port_preserved is True, str(report)
        # Per address: every QUIC and TCP address of the forwarded host was dialled back
        # with its nonce; none of the home router's.
        fwd = hosts[NatType.PORT_FORWARDED].node.reachability()
        v2 = fwd[fwd["protocol"] == "v2"]
        assert set(v2["status"]) == {"public"}, fwd.to_string()
        cone = hosts[NatType.PORT_RESTRICTED].node.reachability()
        assert set(cone[cone["protocol"] == "v2"]["status"]) == {"private"}, cone.to_string()


def test_diagnose_benchmark_quick_run(lab_required: None, tmp_path: object) -> None:
    """``bench/diagnose.py`` on two NAT types (three pairs): every verdict is right."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "diagnose.py"
    out = Path(str(tmp_path)) / "diagnose.json"
    done = subprocess.run(
        [
            sys.executable,
            str(bench),
            "--types",
            "port_restricted,symmetric",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 3, rows
    assert all(r["right"] for r in rows), done.stdout
    by_pair = {(r["a"], r["b"]): r for r in rows}
    assert by_pair[("port_restricted", "port_restricted")]["happened"] == "direct", rows
    assert by_pair[("symmetric", "symmetric")]["verdict"].startswith("relay only"), rows
