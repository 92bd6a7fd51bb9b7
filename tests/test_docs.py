"""The API reference names every public name, and the docs' links point at real files."""

from __future__ import annotations

import re
from pathlib import Path

import ucsdk
import ucsdk.widgets

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_api_reference_names_every_public_name() -> None:
    api = (DOCS / "api.md").read_text()
    names = [n for n in ucsdk.__all__ if not n.startswith("_")]
    names += ["NodeDashboard", "widget(", "show(", "nat_confidence", "punch_trials"]
    missing = [name for name in names if name not in api]
    assert not missing, missing


def test_doc_links_resolve() -> None:
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}"
