"""The browser peer (:class:`tests.browser._browser_peer.BrowserPeer`) in another network
namespace: a NAT lab host's, so that Chromium sits behind that host's NAT.

``python -m tests.browser._in_namespace`` (started with ``ip netns exec NS``) runs a
BrowserPeer there (its page served on the namespace's own 127.0.0.1) and answers JSON
lines on stdin: ``{"method": M, "args": [...]}`` calls ``BrowserPeer.M(*args)`` and prints
``{"ok": result}`` or ``{"error": text}``. :class:`NamespacedBrowserPeer` starts it and
calls it from the test's process.

Example (as root, in a lab):
    >>> stun = ["stun:203.0.113.10:3478"]
    >>> with NamespacedBrowserPeer(host.ns, ice_servers=stun) as b:  # doctest: +SKIP
    ...     b.call("dial", circuit + "/webrtc/p2p/" + peer_id)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class NamespacedBrowserPeer:
    """A BrowserPeer process in network namespace ``ns``; ``close()`` ends it (its PID)."""

    def __init__(self, ns: str, *, ice_servers: Sequence[str] = (), timeout: float = 60) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.browser._in_namespace"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True, name="ns-browser-stderr").start()
        try:
            self.peer_id: str = self._send({"start": {"iceServers": list(ice_servers)}})
        except BaseException:
            self.close()
            raise

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            del self.stderr[:-200]

    def _send(self, request: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(self.timeout)
        if not result or not result[0]:
            tail = "\n".join(self.stderr[-20:])
            raise RuntimeError(f"the browser in the namespace did not answer {request}:\n{tail}")
        answer = json.loads(result[0])
        if "error" in answer:
            raise RuntimeError(f"{request.get('method', 'start')}: {answer['error']}")
        return answer["ok"]

    def call(self, method: str, *args: Any) -> Any:
        """``BrowserPeer.<method>(*args)`` over there; its JSON-able result."""
        return self._send({"method": method, "args": list(args)})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # the driver closes the browser and ends
                self.proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> NamespacedBrowserPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve() -> None:
    from tests.browser._browser_peer import BrowserPeer, build_page

    first = json.loads(sys.stdin.readline())
    try:
        browser = BrowserPeer(build_page(), ice_servers=first["start"]["iceServers"])
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    try:
        print(json.dumps({"ok": browser.peer_id}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            try:
                result = getattr(browser, request["method"])(*request["args"])
                print(json.dumps({"ok": result}, default=str), flush=True)
            except Exception as exc:
                console = "\n".join(browser.console[-15:])
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}\n{console}"}), flush=True)
    finally:
        browser.close()


if __name__ == "__main__":
    _serve()
