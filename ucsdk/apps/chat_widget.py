"""The chat as a notebook widget: ``chat.show()`` / ``chat.widget()``.

A message list (newest last), an input box with a Send button (a line starting with
``/dm <peer id> `` sends a direct message instead), and the chat's peers. One thread per
widget redraws it when the chat changed (at most every ``refresh`` seconds) and runs the
sends, so a click never blocks the kernel; the thread ends when the widget is closed, the
chat stops or its node stops.

Example:
    >>> import ucsdk
    >>> from ucsdk.apps.uc import Chat
    >>> with ucsdk.Node.development(enable_mdns=False) as node, Chat(node) as chat:
    ...     view = chat.widget()
    ...     view.input.value = "hello"
    ...     view.send(), "hello" in view.message_list.value
    (True, True)
"""

from __future__ import annotations

import html
import queue
import threading
from typing import Any

import ipywidgets as widgets

from ucsdk import errors
from ucsdk.widgets import MIN_REFRESH, html_table

_CSS = """<style>
.ucsdk-chat-lines { font-family: monospace; max-height: 24em; overflow-y: auto; }
.ucsdk-chat-line-in .ucsdk-chat-nick { color: #0969da; }
.ucsdk-chat-line-out .ucsdk-chat-nick { color: #1a7f37; }
.ucsdk-chat-dm { color: #8250df; }
.ucsdk-error { color: #cf222e; }
</style>"""


def line_html(line: Any) -> str:
    """One chat line (a :class:`ucsdk.apps.uc.ChatMessage`) as HTML, text escaped."""
    stamp = line.time.strftime("%H:%M:%S")
    css = "ucsdk-chat-dm" if line.kind == "dm" else "ucsdk-chat-text"
    return (
        f"<div class='ucsdk-chat-line-{line.direction}'>{stamp} "
        f"<b class='ucsdk-chat-nick'>{html.escape(line.who())}</b>: "
        f"<span class='{css}'>{html.escape(line.body())}</span></div>"
    )


class ChatWidget(widgets.VBox):
    """A live view of a :class:`ucsdk.apps.uc.Chat` with an input box.

    ``ChatWidget(chat, refresh=0.5, max_lines=50)``. Parts: ``message_list``
    (``ucsdk-chat-lines``), ``input`` and ``send_button`` (``ucsdk-chat-send``),
    ``peer_table`` (``ucsdk-chat-peers``), ``status`` (``ucsdk-chat-status``).
    :meth:`send` sends what the input box holds (what the button does, but waiting);
    :meth:`refresh` redraws and waits.
    """

    def __init__(self, chat: Any, *, refresh: float = 0.5, max_lines: int = 50) -> None:
        numeric = isinstance(refresh, int | float) and not isinstance(refresh, bool)
        if not numeric or not refresh >= MIN_REFRESH:
            raise errors.InvalidInput("refresh", refresh, f"seconds, at least {MIN_REFRESH}")
        if isinstance(max_lines, bool) or not isinstance(max_lines, int) or max_lines < 1:
            raise errors.InvalidInput("max_lines", max_lines, "a positive integer")
        self.chat = chat
        self.refresh_period = float(refresh)
        self.max_lines = max_lines
        self.message_list = widgets.HTML()
        self.message_list.add_class("ucsdk-chat-lines")
        self.input = widgets.Text(
            placeholder="say something (or /dm <peer id> <text>)",
            layout=widgets.Layout(width="70%"),
        )
        self.send_button = widgets.Button(description="Send", icon="paper-plane")
        self.send_button.add_class("ucsdk-chat-send")
        self.peer_table = widgets.HTML()
        self.peer_table.add_class("ucsdk-chat-peers")
        self.status = widgets.HTML()
        self.status.add_class("ucsdk-chat-status")
        self.send_button.on_click(lambda _: self._enqueue())
        self.input.on_submit(lambda _: self._enqueue())
        super().__init__(
            [
                widgets.HTML(_CSS),
                widgets.HTML(f"<b>universal-connectivity</b> as <code>{chat.node.peer_id}</code>"),
                self.message_list,
                widgets.HBox([self.input, self.send_button]),
                self.status,
                widgets.HTML("<h4>Peers</h4>"),
                self.peer_table,
            ]
        )
        self.add_class("ucsdk-chat")
        self._texts: queue.Queue[str] = queue.Queue()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0
        self._ticks = 0
        self._drawn_version = -1
        self._draw()
        self._thread = threading.Thread(
            target=self._loop, name=f"ucsdk-chat-{chat.node.peer_id[-8:]}", daemon=True
        )
        self._thread.start()
        hooks = getattr(chat.node, "_stop_hooks", None)
        if hooks is not None:
            hooks.append(self._node_stopped)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def send(self, timeout: float = 10.0) -> bool:
        """Send the input box's text now (as the Send button does) and wait until it was
        sent and drawn; ``False`` if that took longer than ``timeout``."""
        with self._idle:
            self._enqueue()
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def refresh(self, timeout: float = 5.0) -> bool:
        """Redraw now and wait for it (``False`` if the widget stopped or it took longer
        than ``timeout``): a notebook's last cell, so a saved copy shows the final chat."""
        with self._idle:
            if not self._thread.is_alive():
                return False
            target = self._ticks + 1
            self._wake.set()
            done = self._idle.wait_for(
                lambda: self._ticks >= target or not self._thread.is_alive(), timeout
            )
            return done and self._ticks >= target

    def close(self) -> None:
        """Stop the widget's thread and close its parts."""
        if not hasattr(self, "_closing"):
            super().close()
            return
        self._closing.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        hooks = getattr(self.chat.node, "_stop_hooks", [])
        if self._node_stopped in hooks:
            hooks.remove(self._node_stopped)
        for child in self.children:
            for part in getattr(child, "children", (child,)):
                part.close()
            child.close()
        super().close()

    # ---------------------------------------------------------------- thread
    def _enqueue(self) -> None:
        text = self.input.value
        if not text.strip():
            return
        self.input.value = ""
        with self._idle:
            self._busy += 1
        self._texts.put(text)
        self._wake.set()

    def _node_stopped(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.refresh_period)
            self._wake.clear()
            if self._closing.is_set() or not self.chat.running or not self.chat.node.running:
                break
            while not self._texts.empty():
                self._send_now(self._texts.get_nowait())
            try:
                self._draw()
            except errors.NodeStopped:
                break
            with self._idle:
                self._busy = self._texts.qsize()
                self._ticks += 1
                self._idle.notify_all()
        self.status.value = "<b>stopped</b>: the chat no longer updates"
        with self._idle:
            self._busy = 0
            self._idle.notify_all()

    def _send_now(self, text: str) -> None:
        try:
            if text.startswith("/dm "):
                _, peer, body = [*text.split(" ", 2), "", ""][:3]
                self.chat.dm(peer, body)
            else:
                self.chat.send(text)
            self.status.value = ""
        except errors.UcsdkError as exc:
            self.status.value = f"<span class='ucsdk-error'>{html.escape(str(exc))}</span>"

    def _draw(self) -> None:
        if self.chat.version != self._drawn_version:
            self._drawn_version = self.chat.version
            lines = self.chat.lines()[-self.max_lines :]
            self.message_list.value = (
                "".join(line_html(x) for x in lines) or "<i>no messages yet</i>"
            )
        peers = self.chat.peers()
        table = html_table(
            peers,
            ["nick", "peer_id", "connected", "chat_messages"],
            "ucsdk-chat-peer-table",
            "no peers",
        )
        if self.peer_table.value != table:
            self.peer_table.value = table
