"""The dashboard in a real browser: notebook 04 served by Voila on 127.0.0.1, loaded in
headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

The test connects the page's node to a node of its own by typing that node's address into
the dashboard's box and clicking Connect; the click travels browser -> Voila -> kernel ->
node, a real libp2p connection opens, and the page must then show the peer's id in the
peer table, the connection metrics going up, and a solid link to it in the picture of
the node's connections (whose nodes and edges the test counts in the page). Screenshots
are saved to ``build/screenshots/dashboard.png`` and ``dashboard-graph.png`` (or
``$UCSDK_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ucsdk
from tests._util import proc_stat, wait_for
from tests.browser._browser_peer import CHROMIUM, CHROMIUM_ARGS, require_browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "04_dashboard.ipynb"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _started_by(pid: int) -> set[tuple[int, str]]:
    """(PID, start time) of every process in ``pid``'s session and of all its descendants.
    Jupyter starts each kernel in a session of its own, so the session alone misses the
    kernels and their nodes. The start time tells a process from a later one given its PID."""
    table = {}
    for entry in Path("/proc").iterdir():
        fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            table[int(entry.name)] = (int(fields[1]), int(fields[3]), fields[19])
    found = {p for p, (_, sid, _) in table.items() if sid == pid}
    while more := {p for p, (ppid, _, _) in table.items() if ppid in found | {pid}} - found:
        found |= more
    return {(p, table[p][2]) for p in found}


def _alive(procs: set[tuple[int, str]]) -> set[int]:
    """The PIDs of ``procs`` still running (not zombies), the same processes as recorded."""
    alive = set()
    for pid, start in procs:
        fields = proc_stat(pid)
        if fields is not None and fields[19] == start and fields[0] != "Z":
            alive.add(pid)
    return alive


@pytest.fixture
def voila(tmp_path: Path, jupyter_env: None) -> Iterator[str]:
    """Voila serving notebook 04 on 127.0.0.1; its URL. Everything it started is ended."""
    require_browser(("voila", "playwright"), "the browser check")
    port = _free_port()
    log = (tmp_path / "voila.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            str(NOTEBOOK),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--ServerApp.open_browser=False",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "voila.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Voila did not listen within 60 s"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        ours = _started_by(proc.pid)  # Voila's kernels, seen while Voila still runs
        proc.send_signal(signal.SIGINT)  # Jupyter servers shut their kernels down on SIGINT
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        ours |= _started_by(proc.pid)
        wait_for(lambda: not _alive(ours), 10, 0.2)
        for pid in _alive(ours):  # kernels Voila failed to end: ours, by PID
            os.kill(pid, signal.SIGKILL)
        log.close()
        assert wait_for(lambda: not _alive(ours), 5), _alive(ours)


def _screenshot_path(name: str = "dashboard.png") -> Path:
    folder = Path(os.environ.get("UCSDK_SCREENSHOT_DIR", ROOT / "build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _metric(page: object, name: str) -> int:
    return int(page.inner_text(f".ucsdk-metric-{name}"))  # type: ignore[attr-defined]


@pytest.mark.browser
def test_the_dashboard_updates_live_in_chromium(voila: str) -> None:
    from playwright.sync_api import sync_playwright

    with ucsdk.Node.development(enable_mdns=False) as ours, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            blocked: list[str] = []

            def only_loopback(route: object) -> None:
                url = route.request.url  # type: ignore[attr-defined]
                if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
                    route.continue_()  # type: ignore[attr-defined]
                else:
                    blocked.append(url)
                    route.abort()  # type: ignore[attr-defined]

            page.route("**/*", only_loopback)
            page.goto(voila, timeout=120_000)
            page.wait_for_selector(".ucsdk-dashboard .ucsdk-peer-table", timeout=120_000)
            node_id = page.inner_text(".ucsdk-peer-id").strip()
            assert node_id.startswith("12D3KooW")
            before = _metric(page, "total_connections_established")
            assert before >= 2  # b, and c inbound

            page.fill(".ucsdk-address input", ours.addrs[0])
            page.click(".ucsdk-connect")
            page.wait_for_function(
                "id => document.querySelector('.ucsdk-peer-table').innerText.includes(id)",
                arg=ours.peer_id,
                timeout=30_000,
            )
            page.wait_for_function(
                "n => Number(document.querySelector("
                "'.ucsdk-metric-total_connections_established').innerText) > n",
                arg=before,
                timeout=30_000,
            )
            assert _metric(page, "active_connections") >= 1
            assert "connected to" in page.inner_text(".ucsdk-status")
            # The connection is real: our node sees the page's node as an inbound peer.
            mine = ours.peers().set_index("peer_id")
            assert bool(mine.loc[node_id, "connected"])
            assert "inbound" in mine.loc[node_id, "sources"]
            row = page.inner_text(".ucsdk-peer-table")
            assert ours.peer_id in row
            # The picture of the page node's connections: itself and a solid (direct) link
            # to each peer, ours among them.
            page.wait_for_selector(
                f".ucsdk-dashboard .ucsdk-graph .ucsdk-edge-direct[data-target='{ours.peer_id}']",
                state="attached",  # (a vertical line has no width: Playwright calls it hidden)
                timeout=30_000,
            )
            drawn = page.evaluate(
                "() => ({nodes: document.querySelectorAll('.ucsdk-dashboard .ucsdk-graph "
                ".ucsdk-node').length, direct: document.querySelectorAll('.ucsdk-dashboard "
                ".ucsdk-graph .ucsdk-edge-direct').length, relayed: document.querySelectorAll("
                "'.ucsdk-dashboard .ucsdk-graph .ucsdk-edge-relayed').length})"
            )
            # (b, c, ours, and d too once mDNS has introduced it)
            assert drawn["direct"] >= 3 and drawn["relayed"] == 0, drawn
            assert drawn["nodes"] == drawn["direct"] + 1, drawn
            page.locator(".ucsdk-dashboard .ucsdk-network").screenshot(
                path=str(_screenshot_path("dashboard-graph.png"))
            )
            page.screenshot(path=str(_screenshot_path()), full_page=True)
            assert all(not u.startswith(("http://127.0.0.1", "ws://127.0.0.1")) for u in blocked)
        finally:
            browser.close()
