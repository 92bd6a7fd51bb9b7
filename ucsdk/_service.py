"""`Service`: the start()/stop() life cycle every ucsdk component shares, with supervision.

A service owns its background tasks in one nursery that runs as a trio *system task*, so
``start()`` and ``stop()`` may be awaited from different tasks (a portal call each, in the
blocking facade) and ``stop()`` always waits until every task it owns has ended.

A crash of the background work is never swallowed: the service records the exception
(``health()``), logs it once, tells its ``on_failure`` listener (the manager's supervisor
turns that into a ``service_failed`` event) and runs ``_run`` again after a capped
exponential back-off. After ``max_restarts`` crashes in a row (a run of 60 s without a
crash resets the count) it stays ``failed``.

Example:
    >>> import trio
    >>> from ucsdk._service import Service
    >>> class Flaky(Service):
    ...     runs = 0
    ...     async def _run(self, nursery):
    ...         self.runs += 1
    ...         if self.runs == 1:
    ...             raise RuntimeError("first run breaks")
    >>> async def main():
    ...     flaky = Flaky(restart_backoff=(0.01, 0.01))
    ...     await flaky.start()
    ...     while flaky.runs < 2:
    ...         await trio.sleep(0.01)
    ...     health = flaky.health()
    ...     await flaky.stop()
    ...     return health.state, health.restarts, health.last_error, flaky.health().state
    >>> trio.run(main)
    ('running', 1, "RuntimeError('first run breaks')", 'stopped')
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import trio

from ucsdk.metrics import utcnow

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger("UniversalConnectivity")

HEALTHY_RUN = 60.0
"""Seconds of running without a crash after which the consecutive-crash count resets."""

SERVICE_STATES = ("running", "restarting", "failed", "stopped")


@dataclass(frozen=True)
class ServiceHealth:
    """One row of ``node.services()``: a background service and how it is doing.

    ``state`` is ``running``, ``restarting`` (crashed, waiting to run again), ``failed``
    (crashed too often, or could not start) or ``stopped``.

    Example:
        >>> ServiceHealth("mdns", "running", None, 0, None, None).state
        'running'
    """

    name: str
    state: str
    started_at: datetime | None
    restarts: int
    last_error: str | None
    last_error_at: datetime | None


def describe_error(exc: BaseException) -> str:
    """A one-line ``repr`` of an exception, unwrapping single-exception groups.

    Example:
        >>> describe_error(ExceptionGroup("g", [ValueError("bad expire")]))
        "ValueError('bad expire')"
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return repr(exc)[:500]


class Service:
    """Base class: override ``_on_start`` / ``_run`` / ``_on_stop`` (all optional).

    ``_run`` may return (the service then idles until stopped) or run forever; if it, or a
    task it started in ``nursery``, raises, the service is restarted (see the module doc).
    """

    def __init__(
        self,
        *,
        restart_backoff: tuple[float, float] = (0.5, 30.0),
        max_restarts: int = 10,
    ) -> None:
        self._cancel_scope: trio.CancelScope | None = None
        self._finished: trio.Event | None = None
        self._running = False
        self.service_name = type(self).__name__
        self.restart_backoff = restart_backoff
        self.max_restarts = max_restarts
        self.on_failure: Callable[[Service, str], None] | None = None
        """Called (on the event loop) with the service and the error, at every crash."""
        self._state = "stopped"
        self._started_at: datetime | None = None
        self._restarts = 0
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._running

    def health(self) -> ServiceHealth:
        """This service's state, restarts and last error."""
        return ServiceHealth(
            name=self.service_name,
            state=self._state,
            started_at=self._started_at,
            restarts=self._restarts,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
        )

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> bool:
        """Start ``fn(*args)`` in this service's nursery; ``False`` (and nothing started)
        while the service is not running, restarting or stopping."""
        if not self._running or self._nursery is None:
            return False
        try:
            self._nursery.start_soon(fn, *args)
        except RuntimeError:  # the nursery is closing (a crash or stop under way)
            return False
        return True

    async def _on_start(self) -> None:
        """Set-up that must finish before ``start()`` returns (runs in the caller's task)."""

    async def _run(self, nursery: trio.Nursery) -> None:
        """The service's background work; may start more tasks in ``nursery``."""

    async def _on_stop(self) -> None:
        """Tear-down after every background task has ended."""

    async def start(self) -> None:
        """Start the service; a second call while running does nothing.

        If the set-up itself fails, the service is marked ``failed`` and the error raised.
        """
        if self._running:
            return
        try:
            await self._on_start()
        except Exception as exc:
            self._note_failure(exc)
            self._state = "failed"
            raise
        cancel_scope = trio.CancelScope()
        finished = trio.Event()
        self._cancel_scope, self._finished = cancel_scope, finished
        self._started_at = utcnow()
        self._state = "running"
        trio.lowlevel.spawn_system_task(
            self._supervise, cancel_scope, finished, name=f"ucsdk:{self.service_name}"
        )
        self._running = True

    def _note_failure(self, exc: BaseException) -> None:
        self._last_error = describe_error(exc)
        self._last_error_at = utcnow()
        logger.error("service %s crashed: %s", self.service_name, self._last_error, exc_info=exc)
        if self.on_failure is not None:
            try:
                self.on_failure(self, self._last_error)
            except Exception:
                logger.exception("the failure listener of %s raised", self.service_name)

    async def _supervise(self, cancel_scope: trio.CancelScope, finished: trio.Event) -> None:
        crashes = 0
        try:
            with cancel_scope:
                while True:
                    began = trio.current_time()
                    try:
                        async with trio.open_nursery() as nursery:
                            self._nursery = nursery
                            try:
                                await self._run(nursery)
                                await trio.sleep_forever()
                            finally:
                                self._nursery = None
                    except Exception as exc:
                        # A system task must never raise (that would end the whole trio run).
                        if trio.current_time() - began >= HEALTHY_RUN:
                            crashes = 0
                        crashes += 1
                        self._note_failure(exc)
                        if crashes > self.max_restarts:
                            self._state = "failed"
                            await trio.sleep_forever()
                        self._state = "restarting"
                        first, largest = self.restart_backoff
                        await trio.sleep(min(largest, first * 2 ** (crashes - 1)))
                        self._restarts += 1
                        self._state = "running"
        finally:
            finished.set()

    async def stop(self) -> None:
        """Stop the service and wait for its tasks; safe to call twice or before start."""
        if not self._running:
            return
        self._running = False
        assert self._cancel_scope is not None and self._finished is not None
        self._cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await self._finished.wait()
            await self._on_stop()
        self._state = "stopped"
