"""The supervisor: every background service of a node, started, watched and listed.

Services restart themselves after a crash (see :class:`ucsdk._service.Service`); the
supervisor gives them their names and back-off, turns each crash into a
``service_failed`` event, and answers ``node.services()``.

Example:
    >>> import trio
    >>> from ucsdk._service import Service
    >>> from ucsdk.connectivity.recorder import Recorder
    >>> from ucsdk.connectivity.supervisor import Supervisor
    >>> class Broken(Service):
    ...     async def _on_start(self):
    ...         raise OSError("no multicast interface")
    >>> async def main():
    ...     supervisor = Supervisor(Recorder(10, 5))
    ...     started = await supervisor.start("mdns", Broken(), required=False)
    ...     return started, [(h.name, h.state) for h in supervisor.health()]
    >>> trio.run(main)
    (False, [('mdns', 'failed')])
"""

from __future__ import annotations

from ucsdk._service import Service, ServiceHealth
from ucsdk.connectivity.recorder import Recorder


class Supervisor:
    """Starts named services, records their crashes, stops them in reverse order."""

    def __init__(
        self,
        recorder: Recorder,
        *,
        restart_backoff: tuple[float, float] = (0.5, 30.0),
        max_restarts: int = 10,
    ) -> None:
        self._recorder = recorder
        self.restart_backoff = restart_backoff
        self.max_restarts = max_restarts
        self._services: dict[str, Service] = {}

    def failed(self, service: Service, error: str) -> None:
        """Record a crash of ``service`` (every supervised service calls this)."""
        self._recorder.record("service_failed", None, f"{service.service_name}: {error}")

    def adopt(self, name: str, service: Service) -> Service:
        """Put ``service`` under supervision as ``name`` (without starting it)."""
        service.service_name = name
        service.restart_backoff = self.restart_backoff
        service.max_restarts = self.max_restarts
        service.on_failure = self.failed
        self._services[name] = service
        return service

    async def start(self, name: str, service: Service, *, required: bool = True) -> bool:
        """Adopt and start ``service``. When it cannot start it is listed as ``failed``;
        the error is raised if ``required``, else ``False`` is returned."""
        self.adopt(name, service)
        try:
            await service.start()
        except Exception:
            if required:
                raise
            return False
        return True

    def get(self, name: str) -> Service | None:
        return self._services.get(name)

    def health(self) -> list[ServiceHealth]:
        """One row per service, in the order they were started."""
        return [service.health() for service in self._services.values()]

    async def stop_all(self) -> None:
        """Stop every service, the last started first."""
        for service in reversed(list(self._services.values())):
            await service.stop()
