"""Fuzz every ucsdk handler that parses network input, for minutes: ``make fuzz``.

Run: ``.venv/bin/python bench/fuzz.py [--minutes 5] [--handlers autonat dcutr ...]
[--json PATH]``.

The same rig and strategies as ``tests/security/test_fuzz.py`` (``tests/_fuzz.py``): a
running node on loopback, attacker processes writing Hypothesis-generated and mutated
input on real streams (and mDNS packets over UDP), each input classified as
``accepted``, ``rejected-counted``, ``ignored-by-zeroconf`` (mDNS), and ``UNCOUNTED``
(a rejection no counter saw: a defect). Handlers take turns in rounds until the time is
up; after each round the node must still answer a good peer's ping with every service
running and its tables within their caps. Prints a table of handlers x cases x outcomes
and the node's health, table sizes and RSS growth; exits 1 on any defect.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from _fuzz import DEFECTS, FuzzRig  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

ROUND_EXAMPLES = 50


def fuzz_round(rig: FuzzRig, handler: str, examples: int) -> list[str]:
    """``examples`` generated inputs to ``handler``; the defects found (hex inputs)."""
    defects: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=False,
    )
    @given(payload=rig.strategy(handler))
    def run(payload: bytes) -> None:
        outcome = rig.case(handler, payload)
        if outcome in DEFECTS:
            defects.append(f"{outcome} {payload.hex()}")

    run()
    return defects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--handlers", nargs="*", default=list(FuzzRig.HANDLERS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    unknown = set(args.handlers) - set(FuzzRig.HANDLERS)
    if unknown:
        parser.error(f"unknown handlers {sorted(unknown)}; choose from {FuzzRig.HANDLERS}")
    deadline = time.monotonic() + args.minutes * 60
    defects: dict[str, list[str]] = {}
    problems: list[str] = []
    rounds = 0
    started = time.monotonic()
    with FuzzRig() as rig:
        while time.monotonic() < deadline and not problems:
            for handler in args.handlers:
                if time.monotonic() >= deadline:
                    break
                found = fuzz_round(rig, handler, ROUND_EXAMPLES)
                if found:
                    defects.setdefault(handler, []).extend(found)
                if not rig.healthy():
                    problems.append(f"after {handler}: the node is not healthy")
                try:
                    rig.assert_bounded()
                except AssertionError as exc:
                    problems.append(f"after {handler}: unbounded {exc}")
            rounds += 1
        elapsed = time.monotonic() - started
        print(rig.outcomes.render())
        sizes = rig.bounded()
        total = sum(rig.outcomes.total(h) for h in FuzzRig.HANDLERS)
        print(
            f"\n{total} inputs in {elapsed:.0f} s ({total / max(elapsed, 1e-9):.0f}/s), "
            f"{rounds} rounds; healthy: {rig.healthy()}; tables (used, cap): "
            f"peers {sizes['peers']}, reservations {sizes['reservations']}, "
            f"circuits {sizes['circuits']}; RSS growth {sizes['rss_growth_mb']} MiB"
        )
        dropped = rig.victim.metrics().invalid_message_kinds
        print("dropped counters:", json.dumps(dict(sorted(dropped.items()))))
        for handler, inputs in defects.items():
            print(f"DEFECT {handler}: {len(inputs)}, e.g. {inputs[0][:400]}")
        for problem in problems:
            print("PROBLEM", problem)
        if args.json:
            outcomes = {
                h: {c: dict(o) for c, o in cs.items()} for h, cs in rig.outcomes.table.items()
            }
            report: dict[str, Any] = {
                "outcomes": outcomes,
                "inputs": total,
                "seconds": round(elapsed, 1),
                "sizes": sizes,
                "dropped": dropped,
                "defects": defects,
                "problems": problems,
            }
            args.json.write_text(json.dumps(report, indent=2, default=str))
        sys.stdout.flush()
    return 1 if defects or problems else 0


if __name__ == "__main__":
    sys.exit(main())
