"""``js_setup`` when two pytest runs (``make test``'s two streams) need the same npm
packages at once: the second waits for the first's set-up lock and then finds the packages
installed, instead of running a second ``npm ci`` over the first's files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests._util import wait_for
from tests.interop._ucjs import JS_DIR, setup_lock

ROOT = Path(__file__).resolve().parents[2]
SETUP = (
    "import sys, pathlib; from tests.interop._ucjs import js_setup; "
    "js_setup(pathlib.Path(sys.argv[1]))"
)


def _blocked_on(path: Path, pid: int) -> bool:
    """Whether process ``pid`` waits for a lock on ``path`` (``/proc/locks`` lists waiters
    with ``->``)."""
    inode = path.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and str(pid) in fields and any(f.endswith(f":{inode}") for f in fields):
            return True
    return False


def test_a_second_setup_waits_for_the_first_and_does_not_reinstall(
    js_ready: Path, tmp_path: Path
) -> None:
    for name in ("package.json", "package-lock.json"):
        shutil.copy(JS_DIR / name, tmp_path / name)
    stamp = tmp_path / "node_modules" / ".package-lock.json"
    with setup_lock(tmp_path):  # this test is "the first installer"
        second = subprocess.Popen(
            [sys.executable, "-c", SETUP, str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its npm too, if the lock failed, ends with it below
        )
        try:
            waiting = wait_for(lambda: _blocked_on(tmp_path / ".setup.lock", second.pid), 30)
            assert waiting, "the second js_setup did not wait for the set-up lock"
            assert not stamp.exists()
            # The first installer's work, done while the second waits: a fresh install stamp.
            stamp.parent.mkdir()
            stamp.write_text("{}")
        except BaseException:
            os.killpg(second.pid, signal.SIGKILL)  # our child's own process group
            second.wait(timeout=10)
            raise
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, out
    # No npm ci ran: node_modules holds only the stamp written above.
    assert [p.name for p in stamp.parent.iterdir()] == [".package-lock.json"]
