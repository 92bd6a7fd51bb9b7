"""Soak in CI: 60 s of relay/hole-punch and plain connect/ping/disconnect cycles on the NAT
lab (``bench/soak.py``); every node process's fds, threads, trio tasks and RSS stay flat
within the bench's stated slack after 20 s of warm-up.

Before the inbound-handler fix (``ucsdk.host.end_inbound_handlers_with_their_connection``)
the public peer that accepts the plain cycles' connections grew by one trio task per
connection (+84 tasks in 45 s, slack 30) and this test failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import soak

DURATION = 60.0
WARMUP = 20.0


@pytest.mark.lab
def test_sixty_seconds_of_cycles_stay_flat(lab_required: None) -> None:
    frame, counts = soak.soak_lab(DURATION, interval=5.0, plain=3)
    print(frame.to_string(index=False))
    print(counts)
    assert counts["punch_cycles"] >= 10 and counts["plain_cycles"] >= 30, counts
    assert counts["punched"] >= counts["punch_cycles"] * 0.8, counts  # the cycles really punch
    assert counts["failed_cycles"] <= max(1, counts["punch_cycles"] // 10), counts
    result = soak.verdict(frame, WARMUP)
    print(result.summary())
    assert set(result.excess) == {"relay", "p", "a", "b"}
    assert result.flat, result.summary()


def test_the_verdict_sees_growth() -> None:
    """The judge itself: a figure growing past its slack after warm-up is NOT flat."""
    import pandas as pd

    rows = [
        {
            "time_s": t,
            "node": "n",
            "cycles": t,
            "fds": 10,
            "threads": 4,
            "tasks": 40 + t,
            "rss_mb": 100.0,
        }
        for t in range(0, 60, 5)
    ]
    frame = pd.DataFrame(rows, columns=soak.COLUMNS)
    grew = soak.verdict(frame, warmup=10)
    assert not grew.flat and grew.excess["n"]["tasks"] == 45
    frame["tasks"] = 40
    assert soak.verdict(frame, warmup=10).flat
