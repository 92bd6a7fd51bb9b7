"""A js-libp2p peer in a real browser (``page/peer.js``, bundled with esbuild) as a Python
object, for the browser tests.

:func:`build_page` installs the pinned npm packages (``npm ci``, once) and bundles the page;
:class:`BrowserPeer` serves it on 127.0.0.1, opens it in headless Chromium through
Playwright, starts the page's node and calls its ``window.ucPeer`` methods.

Example (needs Node.js >= 20, npm, Debian's chromium and Playwright for Python):
    >>> from tests.browser._browser_peer import BrowserPeer, build_page
    >>> with BrowserPeer(build_page()) as browser:  # doctest: +SKIP
    ...     browser.dial("/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooW...")
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.interop._ucjs import JsUnavailable, js_setup, run_js_tool, setup_lock

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

PAGE_DIR = Path(__file__).resolve().parent / "page"
BUNDLE = "peer.bundle.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ESBUILD_ARGS = [
    "--bundle",
    "--format=esm",
    "--platform=browser",
    '--define:process.env.NODE_ENV="production"',
    "--define:global=globalThis",
    "--log-level=warning",
]
MAX_CONSOLE = 2000
"""Console lines kept (the oldest go first)."""

__all__ = ["BrowserPeer", "JsUnavailable", "build_page", "require_browser", "require_page"]


def build_page(page_dir: Path = PAGE_DIR) -> Path:
    """``page_dir`` with its npm packages installed (``npm ci`` when ``package-lock.json``
    is newer than the install) and ``peer.js`` bundled into ``peer.bundle.js`` (when the
    bundle is older than its sources or the install), each under the folder's set-up lock;
    :class:`JsUnavailable` saying why not.
    """
    js_setup(page_dir)  # checks node >= 20 and npm, runs npm ci when needed
    esbuild = page_dir / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        raise JsUnavailable(f"{esbuild} is missing after npm ci")
    bundle = page_dir / BUNDLE
    sources = [page_dir / "peer.js", page_dir / "node_modules" / ".package-lock.json"]
    with setup_lock(page_dir):  # another pytest run may be bundling it too
        if bundle.exists() and all(bundle.stat().st_mtime >= s.stat().st_mtime for s in sources):
            return page_dir
        run_js_tool(
            [str(esbuild), "peer.js", *ESBUILD_ARGS, f"--outfile={BUNDLE}"],
            page_dir,
            300,
            "esbuild",
        )
    return page_dir


def require_browser(
    modules: tuple[str, ...] = ("playwright",), what: str = "the browser peer"
) -> None:
    """Skip, saying why, when Chromium or one of the Python ``modules`` is missing; fail
    instead with UCSDK_REQUIRE_BROWSER=1 (set by CI)."""
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append("Debian package chromium (/usr/bin/chromium)")
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            missing.append(f"Python package {module}")
    if missing:
        reason = f"{what} needs " + ", ".join(missing) + " (make test installs them)"
        if os.environ.get("UCSDK_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def require_page() -> Path:
    """:func:`require_browser`, then :func:`build_page`; when Node.js or npm is missing (or
    the build fails) skip saying why, or fail with UCSDK_REQUIRE_NODE=1 or
    UCSDK_REQUIRE_BROWSER=1."""
    require_browser()
    try:
        return build_page()
    except JsUnavailable as exc:
        for flag in ("UCSDK_REQUIRE_NODE", "UCSDK_REQUIRE_BROWSER"):
            if os.environ.get(flag) == "1":
                pytest.fail(f"{flag}=1 but {exc}")
        pytest.skip(f"the browser peer: {exc}")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def guess_type(self, path: str | os.PathLike[str]) -> str:
        if str(path).endswith(".js"):  # a module script needs a JavaScript MIME type
            return "text/javascript"
        return super().guess_type(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class BrowserPeer:
    """The page in headless Chromium with its js-libp2p node started; ``close()`` (or the
    end of a ``with`` block) stops the node, the browser and the HTTP server."""

    def __init__(
        self,
        page_dir: Path = PAGE_DIR,
        *,
        timeout: float = 30,
        viewport: tuple[int, int] = (1100, 800),
        chromium_args: Sequence[str] = (),
        ice_servers: Sequence[str] = (),
    ) -> None:
        self.timeout = timeout
        self._ice_servers = list(ice_servers)  # STUN URLs for /webrtc (none by default)
        self._chromium_args = [*CHROMIUM_ARGS, *chromium_args]
        self.console: list[str] = []
        """The page's console lines and uncaught errors (``pageerror: ...``)."""
        handler = functools.partial(_QuietHandler, directory=str(page_dir))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="browser-peer-http", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/index.html"
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._page: Page | None = None
        try:
            self._open(viewport)
        except BaseException:
            self.close()
            raise

    def _open(self, viewport: tuple[int, int]) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=self._chromium_args
        )
        page = self._browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.set_default_timeout(self.timeout * 1000)
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self._keep(f"pageerror: {exc}"))
        self._page = page
        page.goto(self.url)
        page.wait_for_function("() => window.ucPeer !== undefined")
        self.peer_id: str = self.call("start", {"iceServers": self._ice_servers})

    def _keep(self, line: str) -> None:
        self.console.append(line)
        del self.console[:-MAX_CONSOLE]

    def _on_console(self, message: ConsoleMessage) -> None:
        self._keep(f"{message.type}: {message.text}")

    @property
    def page(self) -> Page:
        """The Playwright page (for anything the methods here do not cover)."""
        if self._page is None:
            raise RuntimeError("the browser peer is closed")
        return self._page

    def call(self, method: str, *args: Any) -> Any:
        """``await window.ucPeer[method](...args)`` in the page; its JSON-able result."""
        return self.page.evaluate(
            "([method, args]) => window.ucPeer[method](...args)", [method, list(args)]
        )

    # ------------------------------------------------------------------ the page's node
    def dial(self, addr: str) -> dict[str, Any]:
        """Dial ``addr``: ``{ms, transport, remoteAddr, peer}`` (``ms`` from the call to an
        open connection, measured in the page with ``performance.now()``)."""
        return dict(self.call("dial", addr))

    def ping(self, target: str) -> float:
        """Round-trip time in ms (whole ms, the ping service's) to a peer id or multiaddr."""
        return float(self.call("ping", target))

    def publish(self, text: str) -> list[str]:
        """Send ``text`` on universal-connectivity; the peers it went to."""
        return list(self.call("publish", text))

    def messages(self) -> list[dict[str, Any]]:
        """Chat messages received: ``{from, text}``, oldest first."""
        return list(self.call("messages"))

    def peers(self, topic: str = "universal-connectivity") -> list[str]:
        """The peers the page's GossipSub knows as subscribed to ``topic``."""
        return list(self.call("peers", topic))

    def connections(self) -> list[dict[str, Any]]:
        """Open connections: ``{peer, remoteAddr, transport}``."""
        return list(self.call("connections"))

    def wait_for_message(self, text: str, timeout: float | None = None) -> dict[str, Any]:
        """The first received chat message whose text is ``text``, waiting up to
        ``timeout`` s (polled in the page); ``TimeoutError`` if none came."""
        return self._wait(
            "t => window.ucPeer.messages().find(m => m.text === t)", text, timeout, "message"
        )

    def wait_for_subscriber(
        self, peer_id: str, topic: str = "universal-connectivity", timeout: float | None = None
    ) -> None:
        """Wait until the page's GossipSub knows ``peer_id`` as subscribed to ``topic``."""
        self._wait(
            "([p, t]) => window.ucPeer.peers(t).includes(p)", [peer_id, topic], timeout, "peer"
        )

    def _wait(self, predicate: str, arg: Any, timeout: float | None, what: str) -> Any:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        limit = self.timeout if timeout is None else timeout
        try:
            handle = self.page.wait_for_function(
                predicate, arg=arg, timeout=limit * 1000, polling=50
            )
        except PlaywrightTimeout:
            raise TimeoutError(f"no {what} {arg!r} in the page within {limit} s") from None
        try:
            return handle.json_value()
        finally:
            handle.dispose()

    def screenshot(self, path: str | Path) -> Path:
        """A full-page PNG of the page at ``path``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(target), full_page=True)
        return target

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Stop the page's node, close the browser, end Playwright and the HTTP server."""
        try:
            if self._page is not None and not self._page.is_closed():
                try:
                    self.call("stop")
                except Exception as exc:  # the node may not have started
                    self._keep(f"stop failed: {exc}")
        finally:
            self._page = None
            try:
                if self._browser is not None:
                    self._browser.close()
            finally:
                self._browser = None
                try:
                    if self._playwright is not None:
                        self._playwright.stop()
                finally:
                    self._playwright = None
                    self._server.shutdown()
                    self._server.server_close()
                    self._thread.join(timeout=10)

    def __enter__(self) -> BrowserPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
