"""The lab's live picture shows a hole punch: the link between two NATed hosts is first
dashed through the relay, then solid once DCUtR made it direct."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import ucsdk.lab
from ucsdk.lab.scenarios import wait_until

pytestmark = pytest.mark.lab

DEFAULTS = {"connection_timeout": 3.0, "autonat_min_agreement": 1}


def _links(svg: str) -> set[tuple[str, str, str, str]]:
    """(kind, source, target, via) of each live link drawn (cables left out)."""
    root = ET.fromstring(svg)
    out = set()
    for el in root.iter():
        cls = el.attrib.get("class", "")
        if "ucsdk-edge" in cls and "ucsdk-edge-wire" not in cls:
            kind = cls.split("ucsdk-edge-")[-1]
            out.add(
                (
                    kind,
                    el.attrib["data-source"],
                    el.attrib["data-target"],
                    el.attrib.get("data-via", ""),
                )
            )
    return out


def test_the_lab_picture_shows_a_relayed_link_turn_direct(lab_required: None) -> None:
    with ucsdk.lab.Lab(node_defaults=DEFAULTS) as lab:
        relay = lab.add_public_host("relay", enable_relay_server=True)
        a = lab.add_host("a", nat="port_restricted")
        b = lab.add_host("b", nat="port_restricted")
        lab.wait_ready()
        view = lab.graph(refresh=0.2)
        sent: list[str] = []
        view.observe(lambda change: sent.append(change["new"]), "value")
        picture = lab.network_graph()
        kinds = {n.id: n.kind for n in picture.nodes}
        assert kinds == {
            "internet": "internet",
            "relay": "public",
            "a": "host",
            "b": "host",
            f"router:{a.nat_router}": "router",
            f"router:{b.nat_router}": "router",
        }
        a.node.connect(relay.multiaddr())
        b.node.connect(relay.multiaddr())
        assert wait_until(lambda: len(b.node.reservations()) == 1, 30, 0.2)
        circuit = next(x for x in b.node.reservations().iloc[0]["circuit_addrs"] if "/tcp/" in x)
        a.node.connect(f"{circuit}/p2p/{b.node.peer_id}")
        direct_ab = ("direct", "a", "b", "")
        relayed_ab = ("relayed", "a", "b", "relay")

        def done() -> bool:
            links = _links(view.value)
            return direct_ab in links and relayed_ab not in links

        assert wait_until(done, 15), _links(view.value)
        pictures = [_links(svg) for svg in sent]
        first_relayed = next(i for i, p in enumerate(pictures) if relayed_ab in p)
        first_direct = next(i for i, p in enumerate(pictures) if direct_ab in p)
        assert first_relayed < first_direct or relayed_ab in pictures[first_direct], pictures
        # The cables to the relay stayed as they were: both hosts hold a direct link to it.
        assert ("direct", "a", "relay", "") in _links(view.value)
        lab.stop()
        assert wait_until(lambda: not view.running, 5)


def test_the_docs_pictures_example_draws_a_real_lab(lab_required: None, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "pictures.py"
    done = subprocess.run(
        [sys.executable, str(example), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "UCSDK_PROGRESS": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    relayed = _links((tmp_path / "lab-relayed.svg").read_text())
    assert ("relayed", "alice", "carol", "relay") in relayed, relayed
    after = _links((tmp_path / "lab-after-punch.svg").read_text())
    assert ("direct", "alice", "bob", "") in after and (
        "relayed",
        "alice",
        "carol",
        "relay",
    ) in after
    for name in ("success-heatmap", "time-to-direct", "rtt-relayed-vs-direct", "metrics-over-time"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
