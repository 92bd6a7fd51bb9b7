"""`Service`: the start()/stop() life cycle every ucsdk component shares.

A service owns its background tasks in one nursery that runs as a trio *system task*, so
``start()`` and ``stop()`` may be awaited from different tasks (a portal call each, in the
blocking facade) and ``stop()`` always waits until every task it owns has ended.

Example:
    >>> import trio
    >>> from ucsdk._service import Service
    >>> class Ticker(Service):
    ...     ticks = 0
    ...     async def _run(self, nursery):
    ...         while True:
    ...             self.ticks += 1
    ...             await trio.sleep(0.01)
    >>> async def main():
    ...     ticker = Ticker()
    ...     await ticker.start()
    ...     await trio.sleep(0.05)
    ...     await ticker.stop()
    ...     return ticker.running, ticker.ticks > 0
    >>> trio.run(main)
    (False, True)
"""

from __future__ import annotations

import logging

import trio

logger = logging.getLogger("UniversalConnectivity")


class Service:
    """Base class: override ``_on_start`` / ``_run`` / ``_on_stop`` (all optional)."""

    def __init__(self) -> None:
        self._cancel_scope: trio.CancelScope | None = None
        self._finished: trio.Event | None = None
        self._running = False

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._running

    async def _on_start(self) -> None:
        """Set-up that must finish before ``start()`` returns (runs in the caller's task)."""

    async def _run(self, nursery: trio.Nursery) -> None:
        """The service's background work; may start more tasks in ``nursery``."""

    async def _on_stop(self) -> None:
        """Tear-down after every background task has ended."""

    async def start(self) -> None:
        """Start the service; a second call while running does nothing."""
        if self._running:
            return
        await self._on_start()
        cancel_scope = trio.CancelScope()
        finished = trio.Event()
        self._cancel_scope, self._finished = cancel_scope, finished
        trio.lowlevel.spawn_system_task(
            self._supervise, cancel_scope, finished, name=f"ucsdk:{type(self).__name__}"
        )
        self._running = True

    async def _supervise(self, cancel_scope: trio.CancelScope, finished: trio.Event) -> None:
        try:
            with cancel_scope:
                async with trio.open_nursery() as nursery:
                    await self._run(nursery)
                    await trio.sleep_forever()
        except Exception:
            # A system task must never raise: that would crash the whole trio run.
            logger.exception("%s stopped after an unexpected error", type(self).__name__)
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
