"""The test suite as two pytest runs at once; ``make test`` calls this.

- ``lab``: the tests marked ``lab``. Their nodes live in network namespaces of their own.
- ``host``: everything else, on this machine's loopback, one test at a time as before,
  because mDNS there lets nodes of tests that ran together find each other.

Most of the suite waits on the network (about a third of one core busy on average, measured
over a whole run), so the two runs share the machine well. Each run's lines are printed as
they come, led by its name, and each keeps its own summary. The exit status is the first
failing run's (pytest's 5, "no tests ran", included), else 0.

Usage: ``python scripts/test_streams.py [pytest options...]``
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

STREAMS = {"lab": "lab", "host": "not lab"}


def main(args: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="ucsdk-test-streams.") as tmp:
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "pytest", "-m", mark, f"--basetemp={tmp}/{name}", *args],
                cwd=root,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            for name, mark in STREAMS.items()
        }

        def copy(name: str, proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                with lock:
                    sys.stdout.write(f"{name:<4} | {line}")
                    sys.stdout.flush()

        readers = [threading.Thread(target=copy, args=item) for item in procs.items()]
        for reader in readers:
            reader.start()
        try:
            codes = {name: proc.wait() for name, proc in procs.items()}
        except KeyboardInterrupt:
            for proc in procs.values():
                proc.send_signal(signal.SIGINT)
            codes = {name: proc.wait() for name, proc in procs.items()}
        for reader in readers:
            reader.join()
    print("test streams: " + ", ".join(f"{name} exited {code}" for name, code in codes.items()))
    return next((code for code in codes.values() if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
