"""How fast a swarm of node processes discovers itself, per mechanism.

Run: ``.venv/bin/python bench/discovery.py [--sizes 10 20 40] [--quick]``.

For each size N, N ``ucsdk node`` processes on 127.0.0.1:
- pubsub: every node knows only node 0 (its bootstrap peer); mDNS and DHT off;
- mdns: no node knows any other; pubsub and DHT off (multicast stays on loopback);
- dht: every node knows only node 0; pubsub and mDNS off; the DHT's random walk and
  routing-table scan must do the work.
Discovered peers are dialled (auto-dial), as in normal use.
Figures: seconds from the last process being ready until every node lists every other
with that mechanism among its sources; CPU seconds (user + system) all processes spent
until then; ``cpu_ms_per_node_announcement``: those CPU seconds per node per announcement
round (one round per announce interval while the table filled), so sizes compare; peak
resident memory per node. Announce interval 1 s, mDNS query interval 5 s.

Targets (issue 16), printed met / NOT met for the sizes run: pubsub at 40 nodes under 5 s
and at 100 nodes under 20 s; mDNS at 100 nodes under 20 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pandas as pd

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ANNOUNCE_INTERVAL = 1.0
TARGETS = [("pubsub", 40, 5.0), ("pubsub", 100, 20.0), ("mdns", 100, 20.0)]
"""(mechanism, nodes, seconds): every node lists every other within that time."""


@dataclass
class Proc:
    process: subprocess.Popen[str]
    addr: str = ""
    peer_id: str = ""
    latest: dict[str, list[str]] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("READY "):
                self.addr = line.split(" ", 1)[1].strip()
                self.peer_id = self.addr.rsplit("/p2p/", 1)[1]
                self.ready.set()
            elif line.startswith("{"):
                table = json.loads(line)
                self.latest = {p["peer_id"]: p["sources"] for p in table["peers"]}

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def start(extra: list[str]) -> Proc:
    command = [sys.executable, "-m", "ucsdk", "node", "--listen-host", "127.0.0.1", "--json"]
    command += ["--interval", "0.5", "--announce-interval", str(ANNOUNCE_INTERVAL), *extra]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    proc = Proc(process)
    threading.Thread(target=proc.read, daemon=True).start()
    return proc


def run(size: int, mechanism: str, limit: float) -> dict[str, object]:
    procs: list[Proc] = []
    try:
        if mechanism in ("pubsub", "dht"):
            flags = ["--no-mdns", "--no-dht" if mechanism == "pubsub" else "--no-pubsub"]
            first = start(flags)
            procs.append(first)
            if not first.ready.wait(60):
                raise RuntimeError("bootstrap node did not start")
            procs += [start([*flags, "--bootstrap", first.addr]) for _ in range(size - 1)]
        else:
            procs += [start(["--no-pubsub", "--no-dht"]) for _ in range(size)]
        for proc in procs:
            if not proc.ready.wait(120):
                raise RuntimeError("a node did not start")
        cpu_start = sum(p.cpu_seconds() for p in procs)
        started = time.monotonic()
        everyone = {p.peer_id for p in procs}
        elapsed = None
        while time.monotonic() - started < limit:
            if all(
                {pid for pid, sources in p.latest.items() if mechanism in sources}
                >= everyone - {p.peer_id}
                for p in procs
            ):
                elapsed = time.monotonic() - started
                break
            time.sleep(0.1)
        found = min(len({pid for pid, s in p.latest.items() if mechanism in s}) for p in procs)
        cpu = sum(p.cpu_seconds() for p in procs) - cpu_start
        rounds = max(1.0, (elapsed if elapsed is not None else limit) / ANNOUNCE_INTERVAL)
        return {
            "nodes": size,
            "mechanism": mechanism,
            "full_table_s": round(elapsed, 2) if elapsed is not None else None,
            "min_peers_found": found,
            "cpu_s": round(cpu, 2),
            "cpu_ms_per_node_announcement": round(cpu * 1000 / size / rounds, 1),
            "rss_mb_per_node": round(sum(p.rss_mb() for p in procs) / len(procs), 1),
        }
    finally:
        for proc in procs:
            proc.process.terminate()
        for proc in procs:
            try:
                proc.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 100])
    parser.add_argument("--mechanisms", nargs="+", default=["pubsub", "mdns", "dht"])
    parser.add_argument("--limit", type=float, default=90.0, help="seconds to wait per run")
    parser.add_argument("--quick", action="store_true", help="3 nodes, for a smoke run")
    args = parser.parse_args()
    sizes = [3] if args.quick else args.sizes
    print(
        f"machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    rows = []
    for size in sizes:
        for mechanism in args.mechanisms:
            rows.append(run(size, mechanism, args.limit))
            print(f"  done: {rows[-1]}", file=sys.stderr, flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    for line in target_lines(rows):
        print(line)
    return 0


def target_lines(rows: list[dict[str, object]]) -> list[str]:
    """One line per target: met / NOT met where its size and mechanism ran."""
    lines = []
    for mechanism, nodes, seconds in TARGETS:
        name = f"target {mechanism} discovery, {nodes} nodes, under {seconds:g} s"
        row = next((r for r in rows if r["mechanism"] == mechanism and r["nodes"] == nodes), None)
        if row is None:
            lines.append(f"{name}: not run (--sizes {nodes} --mechanisms {mechanism})")
            continue
        took = row["full_table_s"]
        verdict = "met" if isinstance(took, float) and took < seconds else "NOT met"
        shown = f"{took} s" if took is not None else f"incomplete, {row['min_peers_found']} found"
        lines.append(f"{name}: {shown}: {verdict}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
