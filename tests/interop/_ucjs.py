"""A js-libp2p peer of the universal-connectivity app (``js/uc-peer.mjs``) as a Python
object, for the interop tests, notebook 05 and ``bench/pubsub.py``.

:func:`js_setup` checks Node.js and installs the pinned npm packages (``npm ci``, once);
:class:`UcJsPeer` runs the peer as a child process, sends it JSON-line commands and
collects the JSON-line events it prints (chat messages, direct messages, discoveries).

Example (needs Node.js >= 20 and npm):
    >>> from tests.interop._ucjs import UcJsPeer, js_setup
    >>> with UcJsPeer(js_setup()) as js:  # doctest: +SKIP
    ...     js.publish("universal-connectivity", "hello")
"""

from __future__ import annotations

import base64
import collections
import contextlib
import fcntl
import itertools
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent / "js"
MAX_EVENTS = 100_000
"""Events kept (the oldest go first)."""


class JsUnavailable(RuntimeError):
    """Node.js or npm is missing or too old, or ``npm ci`` failed."""


class JsError(RuntimeError):
    """The js peer answered a command with an error."""


@contextlib.contextmanager
def setup_lock(js_dir: Path) -> Iterator[None]:
    """Hold ``js_dir``'s set-up lock (``flock`` on ``js_dir/.setup.lock``) for the block.

    ``make test`` runs two pytest processes at once, and both may need the same npm
    packages: two ``npm ci`` in one folder delete and write each other's files (seen as
    ``ETXTBSY`` on esbuild's binary). Whoever holds the lock installs or builds; whoever
    waited finds the work done.
    """
    with open(js_dir / ".setup.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_js_tool(args: list[str], cwd: Path, timeout: float, what: str) -> None:
    """Run a Node.js tool (npm, esbuild) in ``cwd``; :class:`JsUnavailable` with the end of
    its output when it fails."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise JsUnavailable(f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def js_setup(js_dir: Path = JS_DIR) -> Path:
    """``js_dir`` with its pinned npm packages installed (``npm ci`` when the lock file is
    newer than the install, under :func:`setup_lock`); :class:`JsUnavailable` saying why
    not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise JsUnavailable("Node.js >= 20 and npm must be on PATH (Debian: nodejs, npm)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < 20:
        raise JsUnavailable(f"js-libp2p 3 needs Node.js >= 20; this machine has {major}")
    stamp = js_dir / "node_modules" / ".package-lock.json"
    lock = js_dir / "package-lock.json"
    with setup_lock(js_dir):
        if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
            run_js_tool([npm, "ci", "--no-audit", "--no-fund"], js_dir, 600, "npm ci")
    return js_dir


def end_process(proc: subprocess.Popen[Any], grace: float = 10) -> None:
    """Wait up to ``grace`` seconds for ``proc`` (ours) to end, then kill it by its PID."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class UcJsPeer:
    """The js peer process: commands in, events out. ``stop()`` ends it (by its PID)."""

    def __init__(
        self,
        js_dir: Path = JS_DIR,
        *,
        discovery_interval_ms: int = 1000,
        timeout: float = 30,
        webrtc_direct: bool = False,
        webrtc_via: str | None = None,
        script: str = "uc-peer.mjs",
    ) -> None:
        """Start ``js_dir/script`` (``bench-peer.mjs`` for ``bench/peers.py``: it takes
        the same commands' plumbing and ignores the app's options)."""
        extra = ["--webrtc-direct"] if webrtc_direct else []
        if webrtc_via is not None:  # reserve on this relay; take and make /webrtc dials
            extra += ["--webrtc-via", webrtc_via]
        self.proc = subprocess.Popen(
            ["node", script, "--discovery-interval", str(discovery_interval_ms), *extra],
            cwd=js_dir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_EVENTS)
        self.stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._changed = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="ucjs-reader", daemon=True)
        self._reader.start()
        self._errs = threading.Thread(target=self._read_stderr, name="ucjs-stderr", daemon=True)
        self._errs.start()
        try:
            ready = self.wait_event("ready", timeout=timeout)
        except TimeoutError:
            self.stop()
            raise
        self.peer_id: str = ready["peer"]
        self.addrs: list[str] = ready["addrs"]
        self.addr = next(a for a in self.addrs if "/tcp/" in a)
        if "/p2p/" not in self.addr:
            self.addr = f"{self.addr}/p2p/{self.peer_id}"

    # ------------------------------------------------------------------ plumbing
    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
                answer_to = event.get("id") if event.get("event") in ("done", "error") else None
                call_id = int(answer_to) if answer_to is not None else None
            except (ValueError, TypeError, AttributeError):
                continue
            with self._changed:
                if call_id is not None:
                    self._answers[call_id] = event
                else:
                    self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def command(self, cmd: str, *, timeout: float = 20, **fields: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; :class:`JsError` on an error."""
        call_id = next(self._ids)
        payload = json.dumps({"cmd": cmd, "id": call_id, **fields})
        with self._write_lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(payload + "\n")
            self.proc.stdin.flush()
        with self._changed:
            done = self._changed.wait_for(
                lambda: call_id in self._answers or self.proc.poll() is not None, timeout
            )
            answer = self._answers.pop(call_id, None)
        if answer is None:
            why = "exited" if done else f"did not answer in {timeout} s"
            raise TimeoutError(f"js peer {why} to {cmd}: {list(self.stderr)[-5:]}")
        if answer["event"] == "error":
            raise JsError(f"{cmd}: {answer['error']}")
        return answer

    def wait_event(
        self,
        kind: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        timeout: float = 20,
    ) -> dict[str, Any]:
        """The first event of ``kind`` (``message``, ``dm``, ``discovered``, ...) that
        ``predicate`` accepts, waiting up to ``timeout`` seconds."""

        def find() -> dict[str, Any] | None:
            for event in self.events:
                if event.get("event") == kind and (predicate is None or predicate(event)):
                    return event
            return None

        with self._changed:
            self._changed.wait_for(
                lambda: find() is not None or self.proc.poll() is not None, timeout
            )
            found = find()
        if found is None:
            raise TimeoutError(f"no {kind} event from the js peer in {timeout} s")
        return found

    # ------------------------------------------------------------------ commands
    def dial(self, addr: str) -> str:
        return str(self.command("dial", addr=addr)["peer"])

    def publish(self, topic: str, text: str) -> list[str]:
        return list(self.command("publish", topic=topic, text=text)["recipients"])

    def dm(self, peer: str, text: str) -> None:
        self.command("dm", peer=peer, text=text)

    def share(self, data: bytes, name: str = "file") -> str:
        return str(self.command("share", b64=base64.b64encode(data).decode(), name=name)["file_id"])

    def fetch(self, peer: str, file_id: str) -> bytes:
        answer = self.command("fetch", peer=peer, file=file_id, timeout=60)
        return base64.b64decode(answer["b64"])

    def peers(self) -> dict[str, Any]:
        return self.command("peers")

    def subscribers(self, topic: str) -> list[str]:
        return list(self.peers()["subscribers"].get(topic, []))

    def wait_for_subscriber(self, topic: str, peer: str, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if peer in self.subscribers(topic):
                return True
            with self._changed:
                self._changed.wait(0.1)
        return False

    # ------------------------------------------------------------------ life cycle
    def stop(self) -> None:
        """End the process (politely, then by its PID) and the reader threads."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        end_process(self.proc)
        self._reader.join(timeout=5)
        self._errs.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> UcJsPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
