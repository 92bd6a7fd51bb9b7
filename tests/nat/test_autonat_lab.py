"""AutoNAT on the NAT lab: separate node processes behind real NAT."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import ucsdk.lab

pytestmark = pytest.mark.lab


def test_autonat_tells_public_from_private_behind_every_nat(lab_required: None) -> None:
    fast = {"connection_timeout": 3.0}  # the dial-back timeout; a NAT drops the SYN
    with ucsdk.lab.Lab(node_defaults=fast) as lab:
        servers = [lab.add_public_host(f"server{i}") for i in range(3)]
        public = lab.add_public_host("public")
        cone = lab.add_host("cone", nat="port_restricted")
        symmetric = lab.add_host("symmetric", nat="symmetric")
        forwarded = lab.add_host("forwarded", nat="port_forwarded")
        double = lab.add_host("double", nat="double")
        clients = [public, cone, symmetric, forwarded, double]
        lab.wait_ready()
        for client in clients:
            for server in servers:
                client.node.connect(server.multiaddr())

        def verdict(host: ucsdk.lab.LabHost) -> str:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                status = host.node.metrics().nat_status
                if status != "unknown":
                    return status
                time.sleep(0.3)
            return "unknown"

        # Identify shows the servers speak AutoNAT, which starts a round at once.
        with ThreadPoolExecutor(len(clients)) as pool:
            status = dict(zip([c.name for c in clients], pool.map(verdict, clients), strict=True))
        assert status == {
            "public": "public",
            "forwarded": "public",  # the port forward makes it reachable: that is the truth
            "cone": "private",
            "symmetric": "private",
            "double": "private",
        }, status

        # Why: every server's answer, with the address it dialled back (or failed to).
        reports = cone.node.autonat_reports()
        errors_ = reports[reports["status"] == "E_DIAL_ERROR"]
        assert set(errors_["server"]) == {s.node.peer_id for s in servers}
        assert errors_["status_text"].str.contains(f"/ip4/{cone.public_ip}/").all()
        ok = public.node.autonat_reports()
        ok = ok[ok["status"] == "OK"]
        assert ok["dialed_addr"].str.startswith(f"/ip4/{public.address}/").all()
        events = cone.node.events()
        changes = events[events["kind"] == "nat_status"]
        assert changes["detail"].str.startswith("unknown -> private").any()
