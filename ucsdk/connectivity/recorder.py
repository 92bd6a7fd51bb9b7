"""The recorder: a node's events, counters and metrics history, and user callbacks.

Every part reports what happened here; the recorder keeps the bounded event log, bumps
``version`` (views poll it to know when to redraw) and calls user callbacks so that one
that raises is counted and logged, never fatal.

Example:
    >>> from ucsdk.connectivity.recorder import Recorder
    >>> recorder = Recorder(max_events=10, history_size=5)
    >>> _ = recorder.record("started", None, "hello")
    >>> recorder.call_user(lambda: 1 / 0)
    >>> [e.kind for e in recorder.events()], recorder.callback_errors
    (['started', 'callback_error'], 1)
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from ucsdk.metrics import ConnectivityMetrics, Event, EventLog, MetricsHistory, utcnow

logger = logging.getLogger("UniversalConnectivity")


def callback_name(callback: Callable[..., Any]) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)


class Recorder:
    """Events, counters and history of one node (touched only on its event loop)."""

    def __init__(self, max_events: int, history_size: int) -> None:
        self._events = EventLog(max_events)
        self._history = MetricsHistory(history_size)
        self.version = 0
        """Grows by one on every change."""
        self.changed_at = utcnow()
        self.established = 0
        self.failed = 0
        self.callback_errors = 0
        self.invalid_messages = 0
        self.invalid_kinds: Counter[str] = Counter()
        self.spawn: Callable[..., bool] | None = None
        """Starts a task on the node's loop, ``False`` when it cannot (not running);
        awaitable callbacks use it."""

    def touch(self) -> None:
        self.version += 1
        self.changed_at = utcnow()

    def record(self, kind: str, peer_id: str | None, detail: str) -> Event:
        event = self._events.add(kind, peer_id, detail)
        logger.debug("%s %s %s", kind, peer_id or "", detail)
        self.touch()
        return event

    def count_invalid(self, what: str, peer_id: str | None = None) -> None:
        """Count (and log at debug) a malformed message from the network."""
        self.invalid_messages += 1
        self.invalid_kinds[what] += 1
        logger.debug("dropped invalid input from %s: %s", peer_id or "network", what)
        self.touch()

    def events(self) -> list[Event]:
        return self._events.snapshot()

    def sample(self, metrics: ConnectivityMetrics) -> None:
        self._history.add(metrics)

    def history(self) -> list[ConnectivityMetrics]:
        return self._history.snapshot()

    def call_user(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        """Call a user callback; an exception (or a failing coroutine) is counted."""
        if callback is None:
            return
        try:
            result = callback(*args)
        except Exception as exc:
            self._callback_failed(callback, exc)
            return
        started = self.spawn is not None and inspect.isawaitable(result)
        if started and self.spawn is not None:
            started = self.spawn(self._await_callback, callback, result)
        if inspect.isawaitable(result) and not started:
            # Not running: close the coroutine rather than leave it un-awaited.
            close = getattr(result, "close", None)
            if callable(close):
                close()

    async def _await_callback(self, callback: Callable[..., Any], awaitable: Any) -> None:
        try:
            await awaitable
        except Exception as exc:
            self._callback_failed(callback, exc)

    def _callback_failed(self, callback: Callable[..., Any], exc: Exception) -> None:
        self.callback_errors += 1
        logger.warning("callback %s raised %r", callback_name(callback), exc, exc_info=exc)
        self.record("callback_error", None, f"{callback_name(callback)} raised {exc!r}")
