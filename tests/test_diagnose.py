"""``node.diagnose``, ``node.nat_type`` and ``node.reachability`` on loopback: bad input is
refused with a clear error; two nodes that connect are reachable directly, with no NAT
between them, and AutoNAT v2 on the development preset verifies each loopback address."""

from __future__ import annotations

import pytest

import ucsdk
from ucsdk import errors
from ucsdk.lab.scenarios import wait_until

QUIET = {"enable_mdns": False, "auto_dial": False}
UNKNOWN = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def test_bad_peer_ids_are_refused_clearly() -> None:
    with ucsdk.Node.development(**QUIET) as node:
        with pytest.raises(errors.InvalidInput, match="not-a-peer"):
            node.diagnose("not-a-peer")
        with pytest.raises(errors.PeerNotFound, match=UNKNOWN):
            node.diagnose(UNKNOWN)
        with pytest.raises(errors.InvalidInput, match="this node"):
            node.diagnose(node.peer_id)
        with pytest.raises(errors.InvalidInput):
            node.diagnose(UNKNOWN, timeout=-1)


def test_two_connected_nodes_are_reachable_directly_and_verified_per_address() -> None:
    with (
        ucsdk.Node.development(**QUIET) as a,
        ucsdk.Node.development(**QUIET) as b,
    ):
        a.connect(b.addrs[0])
        report = a.diagnose(b.peer_id)
        assert report.connected == "direct", str(report)
        assert report.verdict.startswith("reachable directly"), str(report)
        frame = report.frame()
        assert list(frame.columns) == ["path", "via", "tried", "outcome", "ms", "reason"]
        assert ((frame["path"] == "direct") & (frame["outcome"] == "connected")).any(), frame
        assert str(report).startswith(f"peer {b.peer_id}: reachable directly")
        assert report._repr_html_().startswith("<div>")

        # AutoNAT v2: b asks a (a serves; loopback allowed by the development preset).
        def verified() -> bool:
            rows = b.check_reachability()
            v2 = rows[rows["protocol"] == "v2"]
            return bool(len(v2)) and set(v2["status"]) == {"public"}

        assert wait_until(verified, 20, 0.2), (b.reachability(), b.autonat_v2_checks())
        checks = b.autonat_v2_checks()
        ok = checks[checks["reachable"] == True]  # noqa: E712 - a column of objects
        assert set(ok["server"]) == {a.peer_id}
        assert (ok["dial"] == "OK").all() and (ok["dial_data"] == 0).all()
        # Over loopback nothing is translated: peers see the node at its own address.
        assert wait_until(lambda: b.nat_type().type == "none", 10, 0.2), str(b.nat_type())
