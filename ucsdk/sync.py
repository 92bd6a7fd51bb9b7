"""`Node`: a libp2p node you can use from plain Python and Jupyter, without async code.

The node's trio event loop runs in one background thread shared by every Node of the
process (an anyio blocking portal); each blocking method hands its work to that loop and
waits at most ``timeout`` seconds. Answers are plain objects and pandas DataFrames.

It is long (~680 lines) because it holds two front doors, ``Node`` and ``AsyncNode``, over
the whole API; each method is a few lines that hand one call to the loop.

Example:
    >>> from ucsdk import Node
    >>> with Node.development() as a, Node.development() as b:
    ...     peer = a.connect(b.addrs[0])
    ...     rtts = a.ping(b.peer_id, count=3)
    ...     (peer.peer_id == b.peer_id, len(rtts), bool(a.peers().loc[0, "connected"]))
    (True, 3, True)
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import html
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import multiaddr
import pandas as pd
import trio
from anyio.from_thread import BlockingPortal, BlockingPortalProvider

from ucsdk import errors, frames
from ucsdk.config import ConnectivityConfig
from ucsdk.connectivity.diagnosis import Diagnosis, NatReport
from ucsdk.diagnostics import ResourceUsage
from ucsdk.host import build_host
from ucsdk.identity import load_or_create_key_pair
from ucsdk.manager import UniversalConnectivityManager
from ucsdk.messaging.pubsub import Message
from ucsdk.messaging.streams import DEFAULT_MAX_MESSAGE, READ_CHUNK, BlockingStream, Stream
from ucsdk.metrics import ConnectivityMetrics
from ucsdk.nat.relay import Reservation
from ucsdk.peers import DiscoveredPeer, PeerInfo

logger = logging.getLogger("UniversalConnectivity")

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
_GRACE = 2.0  # extra wait for the loop thread beyond the in-loop deadline

_RUNTIME = BlockingPortalProvider(backend="trio")
_LIVE_NODES: weakref.WeakSet[Node] = weakref.WeakSet()


def _stop_all_nodes() -> None:
    for node in list(_LIVE_NODES):
        node.stop(timeout=5.0)


atexit.register(_stop_all_nodes)


def run_stop_hooks(hooks: list[Callable[[], None]]) -> None:
    """Tell what follows a node (its dashboards) that it stops; a failing hook is logged.

    Shared by :class:`Node` and the lab's node handles."""
    for hook in list(hooks):
        try:
            hook()
        except Exception:
            logger.exception("a stop hook failed")
    hooks.clear()


# A deadline further away than this is no deadline: threading's waits cannot take longer
# ones (they overflow the platform's time_t), and 10**9 s is over 31 years.
NO_LIMIT = 1e9


def check_timeout(timeout: Any, what: str = "timeout") -> float:
    """``timeout`` as seconds: a positive number; ``float("inf")`` means no limit.

    NaN, zero, negative numbers and non-numbers raise :class:`ucsdk.errors.InvalidInput`
    naming the value. Any value of :data:`NO_LIMIT` (10**9 s) or more, ``inf`` included,
    means "wait as long as it takes" (returned as ``inf``).

    Example:
        >>> check_timeout(2), check_timeout(float("inf"))
        (2.0, inf)
        >>> try:
        ...     check_timeout(float("nan"))
        ... except ValueError as exc:
        ...     print(type(exc).__name__, exc.value)
        InvalidInput nan
    """
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or math.isnan(timeout)
        or not timeout > 0
    ):
        raise errors.InvalidInput(what, timeout, "a positive number of seconds (inf for no limit)")
    return math.inf if timeout >= NO_LIMIT else float(timeout)


def wait_seconds(limit: float, grace: float = 0.0) -> float | None:
    """What a thread's wait takes for a checked ``limit``: ``None`` (no limit) for ``inf``."""
    return None if math.isinf(limit) else limit + grace


class Node:
    """A running libp2p node with a blocking API (see the module docstring).

    ``Node(config=None, **overrides)`` starts at once: ``config`` is a
    :class:`ConnectivityConfig` (default: ``ConnectivityConfig()``) and keyword arguments
    override its fields. Use it as a context manager or call :meth:`stop`; nodes still
    running at interpreter exit are stopped then.

    Every blocking method takes ``timeout=`` (default ``Node.timeout``, 10 s) and raises
    :class:`ucsdk.errors.Timeout` rather than hang. ``node.aio`` has the same methods as
    coroutines for ``await`` in a notebook (asyncio) without blocking the kernel.

    Example:
        >>> from ucsdk import Node
        >>> node = Node(listen_host="127.0.0.1", connect_to_bootstrap=False)
        >>> node.addrs[0].endswith("/p2p/" + node.peer_id)
        True
        >>> node.stop()
    """

    def __init__(
        self,
        config: ConnectivityConfig | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        **overrides: Any,
    ) -> None:
        base = config if config is not None else ConnectivityConfig()
        if not isinstance(base, ConnectivityConfig):
            raise errors.ConfigError("config", base, "a ucsdk.ConnectivityConfig or None")
        self.config = base.replace(**overrides) if overrides else base.validate()
        self.timeout = check_timeout(timeout)
        self._state_lock = threading.Lock()
        self._stopped = False
        self._closed_event = threading.Event()
        self._stop_hooks: list[Callable[[], None]] = []
        self._stop_requested: trio.Event | None = None
        self._manager: UniversalConnectivityManager | None = None
        self._loop_thread: int | None = None
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._call_nursery: trio.Nursery | None = None
        self._portal: BlockingPortal = _RUNTIME.__enter__()
        try:
            self._lifetime_future, self.peer_id = self._portal.start_task(
                self._lifetime, name="ucsdk-node"
            )
        except BaseException as exc:
            self._stopped = True
            self._closed_event.set()
            _RUNTIME.__exit__(None, None, None)
            if isinstance(exc, errors.UcsdkError):
                raise
            raise errors.NodeStartError(self.config.resolved_listen_addrs(), repr(exc)) from exc
        self.aio = AsyncNode(self)
        _LIVE_NODES.add(self)

    @classmethod
    def development(cls, **overrides: Any) -> Node:
        """A node with the ``development`` preset: loopback only, no public bootstrap."""
        timeout = overrides.pop("timeout", DEFAULT_TIMEOUT)
        return cls(ConnectivityConfig.preset("development", **overrides), timeout=timeout)

    # ------------------------------------------------------------------ life cycle
    async def _lifetime(self, *, task_status: Any) -> None:
        self._loop_thread = threading.get_ident()
        self._trio_token = trio.lowlevel.current_trio_token()
        self._stop_requested = trio.Event()
        config = self.config
        key_pair = load_or_create_key_pair(config.identity_path)
        host = build_host(config, key_pair)
        listen = [multiaddr.Multiaddr(a) for a in config.resolved_listen_addrs()]
        listening = False
        try:
            async with host.run(listen):
                listening = True
                # py-libp2p logs a failed listener and carries on; a node that is not
                # listening where it was asked to must not look started.
                actual = [str(a) for a in host.get_transport_addrs()]
                missing = [
                    a for a in config.resolved_listen_addrs() if not _listening_on(a, actual)
                ]
                if missing:
                    raise errors.NodeStartError(
                        missing, "the address is in use or not available on this machine"
                    )
                manager = UniversalConnectivityManager(host, config)
                await manager.start()
                try:
                    self._manager = manager
                    async with trio.open_nursery() as calls:
                        self._call_nursery = calls
                        task_status.started(host.get_id().to_base58())
                        await self._stop_requested.wait()
                        self._call_nursery = None
                        calls.cancel_scope.cancel()
                finally:
                    with trio.CancelScope(shield=True):
                        await manager.stop()
        except Exception as exc:
            if listening:
                raise
            raise errors.NodeStartError(config.resolved_listen_addrs(), _first_line(exc)) from exc
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await host.close()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the node and release its sockets; calling it again does nothing.

        From any other thread it returns once the host is closed (or, past ``timeout``,
        after cancelling it). Called on the node's own event-loop thread (inside a
        callback) it cannot wait for the loop it runs on: it asks the node to stop and
        returns at once, and the host closes as soon as the callback returns (a helper
        thread waits for that and ends). Either way :attr:`running` is ``False`` from the
        moment ``stop()`` is called, and :meth:`wait_stopped` returns ``True`` once the
        host is closed and its sockets released.
        """
        limit = self.timeout if timeout is None else check_timeout(timeout)
        with self._state_lock:
            if self._stopped:
                return
            self._stopped = True
        _LIVE_NODES.discard(self)
        run_stop_hooks(self._stop_hooks)
        if threading.get_ident() == self._loop_thread:
            if self._stop_requested is not None:
                self._stop_requested.set()
            threading.Thread(
                target=self._finish_stop, args=(limit,), name=f"ucsdk-stop-{self.peer_id[-8:]}"
            ).start()
            return
        try:
            if self._stop_requested is not None:
                self._portal.call(self._stop_requested.set)
        except Exception as exc:
            logger.warning("node %s: could not ask the loop to stop: %r", self.peer_id, exc)
        self._finish_stop(limit)

    def _finish_stop(self, limit: float) -> None:
        """Wait (on a thread other than the loop's) until the node's task has ended."""
        try:
            self._lifetime_future.result(wait_seconds(limit))
        except concurrent.futures.TimeoutError:
            logger.warning("node %s did not stop within %g s; cancelling it", self.peer_id, limit)
            self._lifetime_future.cancel()
        except Exception as exc:
            logger.warning("node %s stopped with an error: %r", self.peer_id, exc)
        finally:
            # Drop the host: py-libp2p can leave a connection that was still being set up
            # at shutdown un-closed; without references the garbage collector closes it.
            self._manager = None
            _RUNTIME.__exit__(None, None, None)
            self._closed_event.set()

    close = stop

    @property
    def running(self) -> bool:
        """``True`` until :meth:`stop` is called (calls are refused from then on)."""
        return not self._stopped

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the node has stopped and its host is closed; ``True`` when it has,
        ``False`` if ``timeout`` (default: no limit) passed first.

        Useful after ``stop()`` was called from a callback, which returns before the host
        is closed.

        Example:
            >>> from ucsdk import Node
            >>> node = Node.development(enable_mdns=False)
            >>> node.stop()
            >>> node.running, node.wait_stopped(timeout=1)
            (False, True)
        """
        limit = math.inf if timeout is None else check_timeout(timeout)
        if self._closed_event.is_set():
            return True
        if threading.get_ident() == self._loop_thread:
            raise errors.WrongThread("wait for the node to stop")
        return self._closed_event.wait(wait_seconds(limit))

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------- cross-thread calls
    def _submit(
        self, operation: str, fn: str | Callable[..., Any], *args: Any, timeout: float | None
    ) -> tuple[_LoopCall, float]:
        """Hand ``fn(*args)`` to the loop thread without waiting for the loop to take it.

        ``run_sync_soon`` only queues: a caller is never blocked by a busy loop, so the
        caller's own deadline always holds.
        """
        if self._stopped:
            raise errors.NodeStopped(operation)
        if threading.get_ident() == self._loop_thread:
            raise errors.WrongThread(operation)
        limit = self.timeout if timeout is None else check_timeout(timeout)
        assert self._trio_token is not None
        # A manager call's failure reaches the caller as a ucsdk error, cause chained.
        call = _LoopCall(self._trio_token, wrap=isinstance(fn, str))
        fn = self._resolve(operation, fn)

        def spawn() -> None:
            nursery = self._call_nursery
            if nursery is None:
                call.fail(errors.NodeStopped(operation))
            else:
                nursery.start_soon(call.run, operation, limit, fn, args)

        try:
            self._trio_token.run_sync_soon(spawn)
        except trio.RunFinishedError:
            raise errors.NodeStopped(operation) from None
        return call, limit

    def _resolve(self, operation: str, fn: str | Callable[..., Any]) -> Callable[..., Any]:
        """A manager method given by name, looked up only while the node runs."""
        if not isinstance(fn, str):
            return fn
        manager = self._manager
        if manager is None or self._stopped:
            raise errors.NodeStopped(operation)
        return getattr(manager, fn)  # type: ignore[no-any-return]

    def _call(
        self, operation: str, fn: str | Callable[..., Any], *args: Any, timeout: float | None = None
    ) -> Any:
        call, limit = self._submit(operation, fn, *args, timeout=timeout)
        try:
            return call.future.result(wait_seconds(limit, _GRACE))
        except concurrent.futures.TimeoutError:
            call.cancel()
            raise errors.Timeout(operation, limit) from None

    def _snapshot(
        self, operation: str, fn: str | Callable[[], T], timeout: float | None = None
    ) -> T:
        """Run a quick, non-blocking getter on the loop thread (no task is spawned).

        About 100 µs against 140 µs for a portal call; still bounded by ``timeout``.
        """
        if self._stopped:
            raise errors.NodeStopped(operation)
        fn = self._resolve(operation, fn)
        if threading.get_ident() == self._loop_thread:
            return fn()
        limit = self.timeout if timeout is None else check_timeout(timeout)
        assert self._trio_token is not None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

        try:
            self._trio_token.run_sync_soon(run)
        except trio.RunFinishedError:
            raise errors.NodeStopped(operation) from None
        try:
            return future.result(wait_seconds(limit))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise errors.Timeout(operation, limit) from None

    @property
    def manager(self) -> UniversalConnectivityManager:
        """The async manager behind this node (use it only from the node's event loop)."""
        if self._manager is None:
            raise errors.NodeStopped("use the manager")
        return self._manager

    # -------------------------------------------------------------------- identity
    @property
    def addrs(self) -> list[str]:
        """Addresses others can dial, each ending in ``/p2p/<peer_id>``."""
        return self._snapshot("read addresses", self._addrs_now)

    def _addrs_now(self) -> list[str]:
        # Public first, then private, then loopback: addrs[0] is the one a remote peer
        # is most likely to reach.
        return [f"{addr}/p2p/{self.peer_id}" for addr in self.manager.get_own_addrs()]

    # ------------------------------------------------------------------- actions
    def connect(self, multiaddr: str, *, timeout: float | None = None) -> PeerInfo:
        """Connect to ``multiaddr`` (which must end in ``/p2p/<peer id>``), that address
        only; :meth:`dial_peer` is the call that tries every address and relay it knows."""
        return self._call(f"connect to {multiaddr}", "connect", multiaddr, timeout=timeout)

    def dial_peer(
        self,
        peer_id: str,
        addrs: Sequence[str] | None = None,
        use_relay: bool = True,
        *,
        timeout: float | None = None,
    ) -> bool:
        """The seed's dial strategy: ``True`` when connected, ``False`` when it failed."""
        return self._call(
            f"dial {peer_id}", "dial_peer", peer_id, addrs, use_relay, timeout=timeout
        )

    def ping(self, peer_id: str, count: int = 5, *, timeout: float | None = None) -> list[float]:
        """Ping ``peer_id`` ``count`` times; round-trip times in milliseconds."""
        return self._call(f"ping {peer_id}", "ping", peer_id, count, timeout=timeout)

    def find_peer(self, peer_id: str, *, timeout: float | None = None) -> DiscoveredPeer:
        """Where is ``peer_id``? Known addresses, else a DHT lookup (``PeerNotFound``)."""
        return self._call(f"find {peer_id}", "find_peer", peer_id, timeout=timeout)

    def provide(self, key: str, *, timeout: float | None = None) -> bool:
        """Announce on the DHT that this node provides ``key`` (needs the DHT enabled)."""
        return self._call(f"provide {key!r}", "provide", key, timeout=timeout)

    def find_providers(
        self, key: str, count: int = 20, *, timeout: float | None = None
    ) -> list[DiscoveredPeer]:
        """Peers that provide ``key`` according to the DHT, each listed once."""
        return self._call(
            f"find providers of {key!r}", "find_providers", key, count, timeout=timeout
        )

    def disconnect(self, peer_id: str, *, timeout: float | None = None) -> None:
        """Close every connection to ``peer_id``."""
        self._call(f"disconnect {peer_id}", "disconnect", peer_id, timeout=timeout)

    # ------------------------------------------------------------------ snapshots
    def metrics(self, *, timeout: float | None = None) -> ConnectivityMetrics:
        """The current :class:`ConnectivityMetrics`."""
        return self._snapshot("read metrics", "get_metrics", timeout)

    get_metrics = metrics

    def resources(self, detail: bool = False, *, timeout: float | None = None) -> ResourceUsage:
        """The node process's open fds, threads, trio tasks and resident memory, now
        (a :class:`ucsdk.diagnostics.ResourceUsage`; the figures are the whole process's);
        ``detail=True`` adds ``task_names``, the live trio tasks by function, for leak hunts.

        Example:
            >>> from ucsdk import Node
            >>> with Node.development(enable_mdns=False) as node:
            ...     usage = node.resources()
            >>> usage.fds > 0 and usage.tasks > 0 and usage.rss_mb > 0
            True
        """
        return self._snapshot(
            "read resources", lambda: self.manager.resources(bool(detail)), timeout
        )

    def get_discovered_peers(self, *, timeout: float | None = None) -> list[DiscoveredPeer]:
        """Every peer this node has heard of, as :class:`DiscoveredPeer` objects."""
        return self._snapshot("read peers", "get_discovered_peers", timeout)

    def peers(self, *, timeout: float | None = None) -> pd.DataFrame:
        """One row per known peer (see ``ucsdk.frames.PEER_COLUMNS``)."""
        return frames.peers_frame(self.get_discovered_peers(timeout=timeout))

    def connections(self, *, timeout: float | None = None) -> pd.DataFrame:
        """One row per open connection (see ``ucsdk.frames.CONNECTION_COLUMNS``)."""
        return frames.connections_frame(
            self._snapshot("read connections", "get_connections", timeout)
        )

    def events(self, *, timeout: float | None = None) -> pd.DataFrame:
        """The node's event log, oldest first (time, kind, peer_id, detail)."""
        return frames.events_frame(self._snapshot("read events", "get_events", timeout))

    def metrics_history(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Metrics sampled every ``config.metrics_history_interval`` seconds."""
        return frames.metrics_frame(
            self._snapshot("read metrics history", "get_metrics_history", timeout)
        )

    def reserve(self, relay: str, *, timeout: float | None = None) -> Reservation:
        """Reserve a slot on a relay (its full multiaddr, or a connected relay's peer id);
        others can then reach this node at ``reservation.circuit_addrs``."""
        return self._call(f"reserve on {relay}", "reserve", relay, timeout=timeout)

    def reservations(self, *, timeout: float | None = None) -> pd.DataFrame:
        """The relay reservations this node holds."""
        return frames.reservations_frame(
            self._snapshot("read reservations", "get_reservations", timeout)
        )

    def hole_punches(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Every DCUtR hole punch this node took part in: peer, transport, attempts, rtt_ms,
        time_to_direct_ms, outcome, reason."""
        return frames.hole_punches_frame(
            self._snapshot("read hole punches", "get_hole_punches", timeout)
        )

    def services(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Is every part of this node working? One row per background service, the manager
        first (see ``ucsdk.frames.SERVICE_COLUMNS``): ``state`` (``running``,
        ``restarting``, ``failed``), ``restarts`` and the ``last_error`` of a crash.

        Example:
            >>> from ucsdk import Node
            >>> with Node.development(enable_mdns=False) as node:
            ...     frame = node.services()
            >>> list(frame["name"][:3]), set(frame["state"])
            (['manager', 'identify', 'dialer'], {'running'})
        """
        return frames.services_frame(self._snapshot("read services", "get_services", timeout))

    def addresses(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Where can others reach this node, and what does it tell them? One row per
        listen, observed and circuit address, with its scope, how many peers observed it,
        whether it is confirmed and whether it is advertised (``ADDRESS_COLUMNS``)."""
        return frames.addresses_frame(self._snapshot("read addresses", "get_addresses", timeout))

    def dial_attempts(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Why did that dial take 3 s, or fail? One row per address each dial tried (the
        newest 1000; ``DIAL_ATTEMPT_COLUMNS``): transport, when it started after the
        dial began (``started_ms``), how it ended (``connected``, ``failed``, ``timeout``,
        ``cancelled``, ``skipped``), the ``error`` and how long it took (``ms``)."""
        return frames.dial_attempts_frame(
            self._snapshot("read dial attempts", "get_dial_attempts", timeout)
        )

    def autonat_reports(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Every AutoNAT answer so far: which server said what, and the verdict after it."""
        return frames.autonat_frame(
            self._snapshot("read AutoNAT reports", "autonat_reports", timeout)
        )

    def probe_nat(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Ask the connected AutoNAT servers now; their answers (``autonat_reports`` rows)."""
        return frames.autonat_frame(self._call("probe NAT status", "probe_nat", timeout=timeout))

    def reachability(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Is each of this node's addresses reachable from outside? ``REACHABILITY_COLUMNS``:
        the first row is AutoNAT v1's verdict on the node (``addr`` empty, ``protocol``
        ``"v1"``), then one row per address AutoNAT v2 checked (``"v2"``): ``status``
        ``public``/``private``/``unknown``, ``confidence`` (servers agreeing, at most 3),
        ``servers`` (verdicts), ``last_checked``.

        >>> from ucsdk import Node
        >>> with Node.development(enable_mdns=False) as node:
        ...     list(node.reachability().columns)
        ['addr', 'status', 'confidence', 'servers', 'last_checked', 'protocol']
        """
        return frames.reachability_frame(
            self._snapshot("read reachability", "reachability", timeout)
        )

    def nat_type(self, *, timeout: float | None = None) -> NatReport:
        """The NAT this node is behind, from what its peers see and what AutoNAT says: a
        :class:`ucsdk.connectivity.diagnosis.NatReport` (``type``, ``mapping``,
        ``port_preserved``, ``reachable``, the evidence rows, what it means for hole
        punching; shown as a table in a notebook).

        >>> from ucsdk import Node
        >>> with Node.development(enable_mdns=False) as node:
        ...     node.nat_type().type in ("none", "unknown")
        True
        """
        result: NatReport = self._snapshot("read the NAT type", "nat_type", timeout)
        return result

    def diagnose(
        self, peer_id: str, *, probe: bool = False, timeout: float | None = None
    ) -> Diagnosis:
        """Why can (or can't) this node reach ``peer_id``? A
        :class:`ucsdk.connectivity.diagnosis.Diagnosis`: one row per path (direct per
        address, relayed per relay, DCUtR over TCP and QUIC, WebRTC) tried or not, with its
        outcome, time and reason (``.frame()``); a ``verdict``; what would ``help``. Printed
        as text, shown as a table in a notebook. ``probe=True`` dials the peer first and
        waits (``timeout``, default 15 s) for the connection to go direct or a hole punch
        to end; otherwise it explains from what the node saw.

        >>> from ucsdk import Node, errors
        >>> with Node.development(enable_mdns=False) as node:
        ...     try:
        ...         node.diagnose("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
        ...     except errors.PeerNotFound as exc:
        ...         print("unknown peer")
        unknown peer
        """
        limit = 15.0 if timeout is None else check_timeout(timeout)
        result: Diagnosis = self._call(
            f"diagnose {peer_id}", "diagnose", peer_id, probe, limit, timeout=limit + 15.0
        )
        return result

    def check_reachability(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Run an AutoNAT v2 round now (each address, each connected server), then
        :meth:`reachability`."""
        return frames.reachability_frame(
            self._call("check reachability", "check_reachability", timeout=timeout)
        )

    def autonat_v2_checks(self, *, timeout: float | None = None) -> pd.DataFrame:
        """Every AutoNAT v2 check (``AUTONAT_V2_COLUMNS``): the address asked about, the one
        the server dialled, its answer, and whether our dial-back handler saw the nonce."""
        return frames.autonat_v2_frame(
            self._snapshot("read AutoNAT v2 checks", "autonat_v2_checks", timeout)
        )

    # ------------------------------------------------------------------ messaging
    def subscribe(
        self,
        topic: str,
        on_message: Callable[[Message], Any] | None = None,
        *,
        validator: Callable[[Message], Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Subscribe to the GossipSub ``topic``. ``on_message(message)`` gets each new
        :class:`ucsdk.Message` (on the node's loop: keep it short; it may call
        :meth:`publish`). ``validator(message)`` answers :class:`ucsdk.Verdict` (or
        ``True``/``False``) before a message is delivered or forwarded; what it rejects or
        ignores is counted in :meth:`topics`. Every message is kept in :meth:`messages`.

        Example:
            >>> from ucsdk import Node
            >>> a = Node.development(enable_mdns=False)
            >>> b = Node.development(enable_mdns=False)
            >>> a.subscribe("news"); b.subscribe("news")
            >>> _ = a.connect(b.addrs[0])
            >>> b.wait_for_subscribers("news", 1)
            True
            >>> msg_id = b.publish("news", "hello")
            >>> a.wait_for_message("news", timeout=10).text
            'hello'
            >>> a.stop(); b.stop()
        """
        self._call(
            f"subscribe to {topic}", "subscribe", topic, on_message, validator, timeout=timeout
        )

    def unsubscribe(self, topic: str, *, timeout: float | None = None) -> None:
        """Leave ``topic`` (its callbacks and validator go; its history stays)."""
        self._call(f"unsubscribe from {topic}", "unsubscribe", topic, timeout=timeout)

    def publish(self, topic: str, data: bytes | str, *, timeout: float | None = None) -> str:
        """Sign and publish ``data`` (bytes, or str sent as UTF-8) on ``topic``; return the
        message id (hex). No subscription is needed. From a callback on the node's loop
        the message is sent in the background."""
        if threading.get_ident() == self._loop_thread:
            return self.manager.publish_nowait(topic, data)
        return self._call(  # type: ignore[no-any-return]
            f"publish on {topic}", "publish", topic, data, timeout=timeout
        )

    def topics(self, *, timeout: float | None = None) -> pd.DataFrame:
        """One row per topic this node subscribed to or heard of (``TOPIC_COLUMNS``):
        subscribed, mesh_peers, known_peers and message counts."""
        return frames.topics_frame(self._snapshot("read topics", "get_topics", timeout))

    def messages(self, topic: str | None = None, *, timeout: float | None = None) -> pd.DataFrame:
        """The pubsub messages this node saw, oldest first (the newest
        ``config.pubsub_history_size``), of one topic or all (``MESSAGE_COLUMNS``)."""
        return frames.messages_frame(self.get_messages(topic, timeout=timeout))

    def get_messages(
        self, topic: str | None = None, *, timeout: float | None = None
    ) -> list[Message]:
        """:meth:`messages` as :class:`ucsdk.Message` objects."""
        manager = self.manager
        return self._snapshot("read messages", lambda: manager.get_messages(topic), timeout)

    def wait_for_message(
        self,
        topic: str | None = None,
        predicate: Callable[[Message], bool] | None = None,
        *,
        after: int | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Wait for a message from another peer on ``topic`` (any topic when ``None``)
        that ``predicate`` accepts, among those after the first ``after`` of the history
        (default: every message still in the history); return it, or raise
        :class:`ucsdk.errors.Timeout`."""
        limit = self.timeout if timeout is None else check_timeout(timeout)
        manager = self.manager
        start = 0 if after is None else after
        done = threading.Event()
        found: list[Message] = []

        def check() -> bool:
            for message in manager.get_messages(topic)[start:]:
                if not message.local and (predicate is None or predicate(message)):
                    found.append(message)
                    return True
            return False

        deadline = _monotonic() + limit
        while True:
            if self._snapshot("read messages", check, timeout):
                return found[0]
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise errors.Timeout(f"wait for a message on {topic or 'any topic'}", limit)
            done.wait(min(0.02, remaining))

    def wait_for_subscribers(
        self, topic: str, count: int = 1, *, timeout: float | None = None
    ) -> bool:
        """Wait until at least ``count`` peers are known to be subscribed to ``topic``
        (a message published before that reaches nobody); ``False`` on timeout."""
        limit = self.timeout if timeout is None else check_timeout(timeout)
        deadline = _monotonic() + limit
        pause = threading.Event()

        def known() -> int:
            return next((t.known_peers for t in self.manager.get_topics() if t.topic == topic), 0)

        while self._snapshot("read topics", known) < count:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                return False
            pause.wait(min(0.02, remaining))
        return True

    def handle(self, protocol: str, handler: Callable[..., Any]) -> None:
        """Serve ``protocol``: ``handler(stream)`` runs for each stream a peer opens.
        A plain function runs in a worker thread and gets a blocking stream (``read``,
        ``read_exactly``, ``read_msg``, ``write``, ``write_msg``, ``close``, ``reset``); an
        ``async def`` handler runs on the node's (trio) loop and gets an async stream.
        See ``ucsdk.messaging.streams`` for an example."""
        manager = self.manager
        self._snapshot(f"handle {protocol}", lambda: manager.handle(protocol, handler))

    def unhandle(self, protocol: str) -> None:
        """Stop serving ``protocol``."""
        manager = self.manager
        self._snapshot(f"unhandle {protocol}", lambda: manager.unhandle(protocol))

    def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float | None = None
    ) -> BlockingStream:
        """Open a stream to ``peer_id`` (dialled when not connected) speaking
        ``protocol``; use it as a context manager. Each of its calls takes ``timeout=``
        (default ``Node.timeout``)."""
        stream = self._call(
            f"open a {protocol} stream to {peer_id}",
            "open_stream",
            peer_id,
            protocol,
            timeout=timeout,
        )
        return BlockingStream(stream, self._run_stream_call, self.timeout)

    def _run_stream_call(
        self, operation: str, fn: Callable[..., Any], *args: Any, timeout: float
    ) -> Any:
        return self._call(operation, fn, *args, timeout=timeout)

    # -------------------------------------------------------------------- display
    def widget(self, **options: Any) -> Any:
        """A live :class:`ucsdk.widgets.NodeDashboard` of this node (display it in a cell);
        ``options``: ``refresh`` (0.5 s), ``max_events`` (12), ``max_peers`` (50)."""
        from ucsdk import widgets

        return widgets.dashboard(self, **options)

    def show(self, **options: Any) -> Any:
        """Display a live dashboard of this node in the current cell and return it."""
        from ucsdk import widgets

        return widgets.show(self, **options)

    def graph(self, *, refresh: float = 1.0) -> Any:
        """A live picture of this node's connections (a :class:`ucsdk.widgets.LiveGraph`):
        peers around the node, direct links solid, relayed ones dashed through the relay,
        coloured by transport. It redraws at most every ``refresh`` seconds while the node
        runs; ``.graph`` is the last picture (``.graph.save("x.svg")``)."""
        from ucsdk import widgets

        return widgets.LiveGraph(lambda: widgets.node_graph_of(self), refresh=refresh, owner=self)

    def __repr__(self) -> str:
        if self._stopped:
            return f"<ucsdk.Node {self.peer_id} stopped>"
        try:
            m = self.metrics()
        except errors.UcsdkError:
            return f"<ucsdk.Node {self.peer_id}>"
        return (
            f"<ucsdk.Node {self.peer_id} running: {m.total_peers_discovered} peers, "
            f"{m.active_connections} connections, NAT {m.nat_status}>"
        )

    def _repr_html_(self) -> str:
        if self._stopped:
            peer = html.escape(self.peer_id)
            return f"<div class='ucsdk-node'><b>ucsdk.Node</b> {peer} (stopped)</div>"
        metrics = self.metrics()
        addrs = "<br>".join(html.escape(a) for a in self.addrs)
        return (
            f"<div class='ucsdk-node'><b>ucsdk.Node</b> <code>{html.escape(self.peer_id)}</code>"
            f"<br>{addrs}<br>{metrics._repr_html_()}</div>"
        )


class _LoopCall:
    """One facade call running on the loop thread: a future for the caller, and a cancel
    scope the caller can cancel from its own thread."""

    def __init__(self, token: trio.lowlevel.TrioToken, *, wrap: bool = False) -> None:
        self._wrap = wrap
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._token = token
        self._scope: trio.CancelScope | None = None
        self._cancelled = False

    def fail(self, exc: BaseException) -> None:
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(exc)

    def cancel(self) -> None:
        """Give up on the call: it is cancelled on the loop as soon as the loop runs."""
        self._cancelled = True
        if self.future.cancel():
            return
        # A finished loop has nothing left to cancel.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._cancel_on_loop)

    def _cancel_on_loop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def run(
        self, operation: str, limit: float, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                if self._cancelled:
                    scope.cancel()
                with trio.fail_after(limit) if limit < math.inf else contextlib.nullcontext():
                    result = fn(*args)
                    if isinstance(result, Awaitable):
                        result = await result
                self.future.set_result(result)
                return
            self.future.set_exception(errors.Timeout(operation, limit))
        except trio.TooSlowError:
            self.future.set_exception(errors.Timeout(operation, limit))
        except trio.Cancelled:
            self.future.set_exception(errors.NodeStopped(operation))
            raise
        except Exception as exc:
            if self._wrap and not isinstance(exc, errors.UcsdkError):
                wrapped = errors.OperationFailed(operation, _first_line(exc))
                wrapped.__cause__ = exc
                exc = wrapped
            self.future.set_exception(exc)


def _listening_on(requested: str, actual: list[str]) -> bool:
    """Whether ``requested`` (port 0 meaning any port) is among the ``actual`` listeners."""
    want = requested.split("/")
    for addr in actual:
        have = addr.split("/")
        # WebTransport and WebRTC-Direct listeners add their certificate hashes (and
        # py-libp2p's WebRTC-Direct its peer id).
        if "p2p" in have:
            del have[have.index("p2p") :]
        while "certhash" in have:
            at = have.index("certhash")
            del have[at : at + 2]
        if len(have) != len(want):
            continue
        if all(
            w == h or (w == "0" and i > 0 and want[i - 1] in ("tcp", "udp"))
            for i, (w, h) in enumerate(zip(want, have, strict=True))
        ):
            return True
    return False


def _monotonic() -> float:
    return time.monotonic()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class AsyncNode:
    """``node.aio``: the blocking Node methods as coroutines for asyncio (e.g. Jupyter).

    Each call runs on the node's loop thread; awaiting it never blocks the caller's event
    loop, and cancelling the await cancels the work.

    Example (in a notebook cell):
        ``rtts = await node.aio.ping(other.peer_id, count=3)``
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    async def _await(
        self, operation: str, fn: str | Callable[..., Any], *args: Any, timeout: float | None
    ) -> Any:
        call, limit = self._node._submit(operation, fn, *args, timeout=timeout)
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(call.future), wait_seconds(limit, _GRACE)
            )
        except asyncio.TimeoutError:
            call.cancel()
            raise errors.Timeout(operation, limit) from None
        except asyncio.CancelledError:
            call.cancel()
            raise

    async def connect(self, multiaddr: str, *, timeout: float | None = None) -> PeerInfo:
        return await self._await(f"connect to {multiaddr}", "connect", multiaddr, timeout=timeout)

    async def dial_peer(
        self,
        peer_id: str,
        addrs: Sequence[str] | None = None,
        use_relay: bool = True,
        *,
        timeout: float | None = None,
    ) -> bool:
        return await self._await(
            f"dial {peer_id}", "dial_peer", peer_id, addrs, use_relay, timeout=timeout
        )

    async def ping(
        self, peer_id: str, count: int = 5, *, timeout: float | None = None
    ) -> list[float]:
        return await self._await(f"ping {peer_id}", "ping", peer_id, count, timeout=timeout)

    async def find_peer(self, peer_id: str, *, timeout: float | None = None) -> DiscoveredPeer:
        return await self._await(f"find {peer_id}", "find_peer", peer_id, timeout=timeout)

    async def provide(self, key: str, *, timeout: float | None = None) -> bool:
        return await self._await(f"provide {key!r}", "provide", key, timeout=timeout)

    async def find_providers(
        self, key: str, count: int = 20, *, timeout: float | None = None
    ) -> list[DiscoveredPeer]:
        return await self._await(
            f"find providers of {key!r}", "find_providers", key, count, timeout=timeout
        )

    async def disconnect(self, peer_id: str, *, timeout: float | None = None) -> None:
        await self._await(f"disconnect {peer_id}", "disconnect", peer_id, timeout=timeout)

    async def metrics(self) -> ConnectivityMetrics:
        return await self._await("read metrics", "get_metrics", timeout=None)

    get_metrics = metrics

    async def resources(
        self, detail: bool = False, *, timeout: float | None = None
    ) -> ResourceUsage:
        """See :meth:`Node.resources`."""
        return await self._await("read resources", "resources", bool(detail), timeout=timeout)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the node without blocking the caller's event loop (see :meth:`Node.stop`)."""
        limit = self._node.timeout if timeout is None else check_timeout(timeout)
        await asyncio.to_thread(self._node.stop, limit)

    async def get_discovered_peers(self) -> list[DiscoveredPeer]:
        return await self._await("read peers", "get_discovered_peers", timeout=None)

    async def peers(self) -> pd.DataFrame:
        return frames.peers_frame(await self.get_discovered_peers())

    async def connections(self) -> pd.DataFrame:
        rows = await self._await("read connections", "get_connections", timeout=None)
        return frames.connections_frame(rows)

    async def events(self) -> pd.DataFrame:
        rows = await self._await("read events", "get_events", timeout=None)
        return frames.events_frame(rows)

    async def reserve(self, relay: str, *, timeout: float | None = None) -> Reservation:
        return await self._await(f"reserve on {relay}", "reserve", relay, timeout=timeout)

    async def reservations(self) -> pd.DataFrame:
        rows = await self._await("read reservations", "get_reservations", timeout=None)
        return frames.reservations_frame(rows)

    async def hole_punches(self) -> pd.DataFrame:
        rows = await self._await("read hole punches", "get_hole_punches", timeout=None)
        return frames.hole_punches_frame(rows)

    async def services(self, *, timeout: float | None = None) -> pd.DataFrame:
        rows = await self._await("read services", "get_services", timeout=timeout)
        return frames.services_frame(rows)

    async def addresses(self, *, timeout: float | None = None) -> pd.DataFrame:
        rows = await self._await("read addresses", "get_addresses", timeout=timeout)
        return frames.addresses_frame(rows)

    async def dial_attempts(self, *, timeout: float | None = None) -> pd.DataFrame:
        rows = await self._await("read dial attempts", "get_dial_attempts", timeout=timeout)
        return frames.dial_attempts_frame(rows)

    async def autonat_reports(self) -> pd.DataFrame:
        rows = await self._await("read AutoNAT reports", "autonat_reports", timeout=None)
        return frames.autonat_frame(rows)

    async def probe_nat(self, *, timeout: float | None = None) -> pd.DataFrame:
        rows = await self._await("probe NAT status", "probe_nat", timeout=timeout)
        return frames.autonat_frame(rows)

    async def reachability(self) -> pd.DataFrame:
        rows = await self._await("read reachability", "reachability", timeout=None)
        return frames.reachability_frame(rows)

    async def nat_type(self) -> NatReport:
        result: NatReport = await self._await("read the NAT type", "nat_type", timeout=None)
        return result

    async def diagnose(
        self, peer_id: str, *, probe: bool = False, timeout: float | None = None
    ) -> Diagnosis:
        limit = 15.0 if timeout is None else check_timeout(timeout)
        result: Diagnosis = await self._await(
            f"diagnose {peer_id}", "diagnose", peer_id, probe, limit, timeout=limit + 15.0
        )
        return result

    async def check_reachability(self, *, timeout: float | None = None) -> pd.DataFrame:
        rows = await self._await("check reachability", "check_reachability", timeout=timeout)
        return frames.reachability_frame(rows)

    async def autonat_v2_checks(self) -> pd.DataFrame:
        rows = await self._await("read AutoNAT v2 checks", "autonat_v2_checks", timeout=None)
        return frames.autonat_v2_frame(rows)

    async def metrics_history(self) -> pd.DataFrame:
        rows = await self._await("read metrics history", "get_metrics_history", timeout=None)
        return frames.metrics_frame(rows)

    # ------------------------------------------------------------------ messaging
    async def subscribe(
        self,
        topic: str,
        on_message: Callable[[Message], Any] | None = None,
        *,
        validator: Callable[[Message], Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        await self._await(
            f"subscribe to {topic}", "subscribe", topic, on_message, validator, timeout=timeout
        )

    async def unsubscribe(self, topic: str, *, timeout: float | None = None) -> None:
        await self._await(f"unsubscribe from {topic}", "unsubscribe", topic, timeout=timeout)

    async def publish(self, topic: str, data: bytes | str, *, timeout: float | None = None) -> str:
        return await self._await(  # type: ignore[no-any-return]
            f"publish on {topic}", "publish", topic, data, timeout=timeout
        )

    async def topics(self) -> pd.DataFrame:
        return frames.topics_frame(await self._await("read topics", "get_topics", timeout=None))

    async def messages(self, topic: str | None = None) -> pd.DataFrame:
        rows = await self._await("read messages", "get_messages", topic, timeout=None)
        return frames.messages_frame(rows)

    async def handle(self, protocol: str, handler: Callable[..., Any]) -> None:
        await self._await(f"handle {protocol}", "handle", protocol, handler, timeout=None)

    async def unhandle(self, protocol: str) -> None:
        await self._await(f"unhandle {protocol}", "unhandle", protocol, timeout=None)

    async def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float | None = None
    ) -> AioStream:
        stream = await self._await(
            f"open a {protocol} stream to {peer_id}",
            "open_stream",
            peer_id,
            protocol,
            timeout=timeout,
        )
        return AioStream(self, stream)


class AioStream:
    """A stream for asyncio code (``await node.aio.open_stream(...)``): the methods of a
    blocking stream, as coroutines; ``async with`` closes it (resets it on an error)."""

    def __init__(self, aio: AsyncNode, stream: Stream) -> None:
        self._aio = aio
        self.stream = stream
        self.peer_id = stream.peer_id
        self.protocol = stream.protocol

    async def _do(self, what: str, fn: Callable[..., Any], *args: Any, timeout: Any) -> Any:
        return await self._aio._await(f"{what} on {self.protocol}", fn, *args, timeout=timeout)

    async def read(self, max_bytes: int = READ_CHUNK, *, timeout: float | None = None) -> bytes:
        return await self._do("read", self.stream.read, max_bytes, timeout=timeout)  # type: ignore[no-any-return]

    async def read_exactly(self, n: int, *, timeout: float | None = None) -> bytes:
        return await self._do("read", self.stream.read_exactly, n, timeout=timeout)  # type: ignore[no-any-return]

    async def read_msg(
        self, max_size: int = DEFAULT_MAX_MESSAGE, *, timeout: float | None = None
    ) -> bytes:
        return await self._do("read a message", self.stream.read_msg, max_size, timeout=timeout)  # type: ignore[no-any-return]

    async def write(self, data: bytes | str, *, timeout: float | None = None) -> None:
        await self._do("write", self.stream.write, data, timeout=timeout)

    async def write_msg(self, data: bytes | str, *, timeout: float | None = None) -> None:
        await self._do("write a message", self.stream.write_msg, data, timeout=timeout)

    async def close(self, *, timeout: float | None = None) -> None:
        await self._do("close", self.stream.close, timeout=timeout)

    async def reset(self, *, timeout: float | None = None) -> None:
        await self._do("reset", self.stream.reset, timeout=timeout)

    @property
    def closed(self) -> bool:
        return self.stream.closed

    async def __aenter__(self) -> AioStream:
        return self

    async def __aexit__(self, exc_type: Any, *rest: object) -> None:
        with contextlib.suppress(errors.UcsdkError):
            if exc_type is None:
                await self.close()
            else:
                await self.reset()
