"""``--compare REV`` for a bench: the same bench on another git revision of ucsdk, side
by side with this tree, in alternating child processes (so both see the same machine
load), with the median of each figure over the rounds.

The bench script itself is this tree's; only the ``ucsdk`` it imports changes (the other
revision is checked out in a temporary ``git worktree``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _revision(rev: str) -> Iterator[tuple[Path, Path]]:
    """A temporary directory and, in it, ``rev`` checked out as a git worktree."""
    with tempfile.TemporaryDirectory(prefix="ucsdk-bench-") as name:
        tmp = Path(name)
        command = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*command, "add", "--detach", "-q", str(tmp / "tree"), rev], check=True)
        try:
            yield tmp, tmp / "tree"
        finally:
            subprocess.run([*command, "remove", "--force", str(tmp / "tree")], check=False)


def _run_json(script: str, args: list[str], ucsdk_tree: Path, tmp: Path, quiet: bool) -> Any:
    """Run ``script args --json FILE`` importing ucsdk from ``ucsdk_tree``; the figures."""
    out = tmp / "out.json"
    subprocess.run(
        [sys.executable, script, *args, "--json", str(out)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ucsdk_tree)},
        cwd=tmp,
        stdout=subprocess.DEVNULL if quiet else None,
    )
    return json.loads(out.read_text())


def run_on_revision(script: str, args: list[str], rev: str) -> Any:
    """``script args --json FILE`` once, with ucsdk of revision ``rev``; its figures."""
    with _revision(rev) as (tmp, tree):
        return _run_json(script, args, tree, tmp, quiet=False)


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--compare REV`` and ``--rounds N``."""
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (--compare)")


def run_compare(script: str, args: argparse.Namespace) -> int:
    """The ``--compare`` run of a bench (see :func:`compare`)."""
    medians = compare(script, forwarded_args(sys.argv[1:]), args.compare, args.rounds)
    write_json(args.json, medians)
    return 0


def machine() -> str:
    """The machine line a bench prints first."""
    import platform

    import ucsdk

    return (
        f"machine: {platform.platform()}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, ucsdk {ucsdk.__version__}, load {os.getloadavg()[0]:.2f}"
    )


def write_json(path: str | None, figures: Any) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)


def below(label: str, value: float, limit: float, unit: str) -> tuple[str, bool, str]:
    """A target met when ``value < limit``."""
    return label, value < limit, f"{value:.{2 if value < 10 else 1}f} {unit}"


def print_targets(targets: list[tuple[str, bool, str]]) -> None:
    """One ``target <label> <value> met|NOT met`` line each."""
    print()
    for label, met, value in targets:
        print(f"target {label:<40} {value:>10}  {'met' if met else 'NOT met'}")


def forwarded_args(argv: list[str]) -> list[str]:
    """A bench's arguments without ``--compare``, ``--rounds`` and ``--json`` (and their
    values), for its child runs."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--compare", "--rounds", "--json"):
            skip = True
        elif not arg.startswith(("--compare=", "--rounds=", "--json=")):
            out.append(arg)
    return out


def compare(script: str, args: list[str], rev: str, rounds: int) -> dict[str, dict[str, float]]:
    """Run ``script args --json`` ``rounds`` times on ``rev`` and on this tree, in turn;
    print and return the median figures, by ``rev`` and ``"this tree"``."""
    runs: dict[str, list[dict[str, float]]] = {rev: [], "this tree": []}
    with _revision(rev) as (tmp, tree):
        for round_ in range(rounds):
            for label, path in ((rev, tree), ("this tree", ROOT)):
                print(f"round {round_ + 1}/{rounds}: {label}", flush=True)
                runs[label].append(_run_json(script, args, path, tmp, quiet=True))
    medians = {
        label: {name: statistics.median(r[name] for r in found) for name in found[0]}
        for label, found in runs.items()
    }
    print(f"\nmedians over {rounds} alternating rounds, load {os.getloadavg()[0]:.2f}")
    print(f"{'figure':<34}{rev[:12]:>14}{'this tree':>14}")
    for name in medians["this tree"]:
        before, after = medians[rev].get(name, float("nan")), medians["this tree"][name]
        print(f"{name:<34}{before:>14.3f}{after:>14.3f}")
    return medians
