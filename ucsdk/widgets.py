"""Live notebook views of a node: ``node.show()`` and ``node.widget()``.

:class:`NodeDashboard` is an ipywidgets box that shows a node as it runs: its identity and
addresses, a NAT status badge with AutoNAT's confidence, connection counts by type and
transport, its background services (a failed or restarting one in red, with its error),
the seed's metrics, the peer table, relay reservations and hole punches (when
NAT traversal is on) and the latest events, plus a box to connect to an address and a
button to ping a peer.

The module is ~530 lines: one dashboard, its HTML for each part and its updater thread,
which belong together.

One background thread per dashboard reads the node at most every ``refresh`` seconds and
is the only writer of the dashboard's widgets; a part is re-sent to the front end only
when its content changed, so an idle node sends nothing and a busy one no more than
``1 / refresh`` redraws a second. The thread ends when the dashboard is closed or the node
stops (the dashboard then says "stopped"). The same dashboard works for a lab node
(``lab_host.node.show()``).

Example:
    >>> import ucsdk
    >>> quiet = {"enable_mdns": False}  # or b may also dial a: two connections for 0.5 s
    >>> with ucsdk.Node.development(**quiet) as a, ucsdk.Node.development(**quiet) as b:
    ...     board = a.widget(refresh=0.2)
    ...     _ = a.connect(b.addrs[0])
    ...     redrawn = board.refresh()
    ...     b.peer_id in board.peer_table.value, board.counts.value.count("1 direct")
    (True, 1)
    >>> board.running  # the node stopped, so did the dashboard's thread
    False
"""

from __future__ import annotations

import html
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ucsdk import errors, frames, graph, plots
from ucsdk.graph import NetworkGraph
from ucsdk.metrics import ConnectivityMetrics

logger = logging.getLogger("UniversalConnectivity")

MIN_REFRESH = 0.2
"""The shortest refresh period: at most five redraws a second."""
TREND_SAMPLES = 60
"""Metrics-history samples a dashboard sparkline shows (the newest)."""

SEED_METRICS = (
    "total_peers_discovered",
    "total_connections_established",
    "total_connections_failed",
    "active_connections",
    "direct_connections",
    "relay_connections",
    "nat_status",
    "dcutr_success_rate",
    "last_updated",
)
PEER_TABLE_COLUMNS = (
    "peer_id",
    "connected",
    "connection_type",
    "transport",
    "rtt_ms",
    "sources",
    "agent_version",
)
HOLE_PUNCH_COLUMNS = tuple(
    c for c in frames.HOLE_PUNCH_COLUMNS if c not in ("time", "remote_addrs", "local_addrs")
)
RESERVATION_COLUMNS = ("relay_peer_id", "expires_in_s", "voucher_valid", "circuit_addrs")
_BADGE_COLOURS = {"public": "#1a7f37", "private": "#bc4c00", "unknown": "#6e7781"}
_ALERT_COLOUR = "#cf222e"
_ALERT_STATES = ("failed", "restarting")
_CSS = """
<style>
.ucsdk-dashboard table { border-collapse: collapse; font-size: 12px; }
.ucsdk-dashboard th, .ucsdk-dashboard td { border-bottom: 1px solid #ddd; padding: 2px 6px;
  text-align: left; vertical-align: top; }
.ucsdk-dashboard h4 { margin: 8px 0 2px 0; }
.ucsdk-badge { color: white; border-radius: 4px; padding: 2px 8px; font-weight: bold; }
.ucsdk-service-failed, .ucsdk-service-restarting { color: #cf222e; }
</style>
"""


@dataclass
class _Snapshot:
    """Everything one redraw shows, read from the node in one go."""

    peer_id: str
    addrs: list[str]
    metrics: ConnectivityMetrics
    peers: pd.DataFrame
    connections: pd.DataFrame
    events: pd.DataFrame
    services: pd.DataFrame
    hole_punches: pd.DataFrame | None = None
    reservations: pd.DataFrame | None = None
    history: pd.DataFrame | None = None


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, (list, tuple)):
        return "<br>".join(html.escape(str(v)) for v in value) or "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (pd.Timestamp, datetime)):
        return html.escape(value.strftime("%H:%M:%S"))
    return html.escape(str(value))


def html_table(frame: pd.DataFrame, columns: Sequence[str], css_class: str, empty: str) -> str:
    """``frame[columns]`` as an HTML table with class ``css_class`` (``empty`` if no rows).

    Example:
        >>> frame = pd.DataFrame({"peer_id": ["12D3KooWA"], "rtt_ms": [0.5]})
        >>> html_table(frame, ["peer_id", "rtt_ms"], "t", "none")  # doctest: +NORMALIZE_WHITESPACE
        "<table class='t'><tr><th>peer_id</th><th>rtt_ms</th></tr>\
<tr><td>12D3KooWA</td><td>0.50</td></tr></table>"
    """
    if frame is None or frame.empty:
        return f"<div class='{css_class}'><i>{html.escape(empty)}</i></div>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>"
        for _, row in frame.iterrows()
    )
    return f"<table class='{css_class}'><tr>{head}</tr>{rows}</table>"


def nat_badge(status: str, confidence: int) -> str:
    """The NAT status as a coloured badge, with AutoNAT's confidence (0-3).

    Example:
        >>> "private" in nat_badge("private", 2) and "2/3" in nat_badge("private", 2)
        True
    """
    colour = _BADGE_COLOURS.get(status, _BADGE_COLOURS["unknown"])
    return (
        f"<span class='ucsdk-badge ucsdk-nat-{html.escape(status)}' "
        f"style='background:{colour}'>NAT: {html.escape(status)}</span> "
        f"<span class='ucsdk-confidence'>confidence {int(confidence)}/3</span>"
    )


def connection_counts(connections: pd.DataFrame) -> str:
    """``"2 direct · 1 relay | tcp 2 · quic 1"`` for a ``connections()`` frame.

    Example:
        >>> frame = pd.DataFrame({"relayed": [False, True], "transport": ["tcp", "tcp"]})
        >>> connection_counts(frame)
        '1 direct · 1 relay | tcp 2'
    """
    relayed = int(connections["relayed"].sum()) if len(connections) else 0
    direct = len(connections) - relayed
    counts: dict[str, int] = (
        dict(connections["transport"].astype(str).value_counts()) if len(connections) else {}
    )
    transports = " · ".join(f"{name} {count}" for name, count in counts.items())
    return f"{direct} direct · {relayed} relay" + (f" | {transports}" if transports else "")


def service_list(services: pd.DataFrame) -> str:
    """One line per service of a ``services()`` frame: its name and state (class
    ``ucsdk-service-<state>``); a failed or restarting one is red (inline colour) and
    shows its last error; restarts are counted.

    Example:
        >>> frame = pd.DataFrame({"name": ["dialer", "mdns"], "state": ["running", "failed"],
        ...     "restarts": [1, 0], "last_error": [None, "OSError(19, 'No such device')"]})
        >>> print(service_list(frame))  # doctest: +NORMALIZE_WHITESPACE
        <div class='ucsdk-service ucsdk-service-running'><b>dialer</b> running
        (restarted 1×)</div><div class='ucsdk-service ucsdk-service-failed'
        style='color:#cf222e'><b>mdns</b> failed: OSError(19, &#x27;No such device&#x27;)</div>
    """
    if services is None or services.empty:
        return "<div class='ucsdk-service-none'><i>no services</i></div>"
    lines = []
    for name, state, restarts, error in zip(
        services["name"],
        services["state"],
        services["restarts"],
        services["last_error"],
        strict=True,
    ):
        state = str(state)
        text = f"<b>{html.escape(str(name))}</b> {html.escape(state)}"
        if restarts:
            text += f" (restarted {int(restarts)}×)"
        style = ""
        if state in _ALERT_STATES:
            style = f" style='color:{_ALERT_COLOUR}'"
            if isinstance(error, str) and error:
                text += f": {html.escape(error)}"
        lines.append(
            f"<div class='ucsdk-service ucsdk-service-{html.escape(state)}'{style}>{text}</div>"
        )
    return "".join(lines)


def success_rate(metrics: ConnectivityMetrics) -> str:
    """DCUtR's success rate as the dashboard shows it: "—" before any attempt.

    Example:
        >>> success_rate(ConnectivityMetrics())
        '— (no hole punch yet)'
        >>> success_rate(ConnectivityMetrics(dcutr_attempts=4, dcutr_successes=3,
        ...                                  dcutr_success_rate=0.75))
        '75% of 4 attempts'
    """
    if not metrics.dcutr_attempts:
        return "— (no hole punch yet)"
    return f"{metrics.dcutr_success_rate:.0%} of {metrics.dcutr_attempts} attempts"


def service_alerts(services: pd.DataFrame) -> str:
    """A red line naming each failed or restarting service, or nothing when all run.

    Example:
        >>> frame = pd.DataFrame([{"name": "mdns", "state": "failed", "last_error": "no"},
        ...                       {"name": "dht", "state": "running", "last_error": None}])
        >>> "mdns" in service_alerts(frame), "dht" in service_alerts(frame)
        (True, False)
    """
    if not len(services):
        return ""
    bad = services[services["state"].isin(_ALERT_STATES)]
    if not len(bad):
        return ""
    names = ", ".join(
        f"{html.escape(str(r.name))} ({html.escape(str(r.state))})"
        for r in bad.itertuples(index=False)
    )
    return (
        f"<div class='ucsdk-alert' style='background:{_ALERT_COLOUR};color:white;"
        f"padding:4px 8px;border-radius:4px'>⚠ not working: {names}</div>"
    )


class _Follower:
    """A background thread that redraws a view from its node at a bounded rate: the
    only writer of the view's widgets. ``refresh()`` asks for a redraw now and waits."""

    _thread: threading.Thread

    def _follow(self, name: str) -> None:
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._drawn = threading.Condition()
        self._ticks = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:  # pragma: no cover - each view has its own
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Whether the view still follows its node."""
        return self._thread.is_alive()

    def refresh(self, timeout: float = 5.0) -> bool:
        """Redraw now (from the view's thread) and wait for it; ``False`` if it had
        stopped or did not redraw within ``timeout`` seconds. Useful as a notebook's last
        cell, so that the saved notebook shows the final state."""
        with self._drawn:
            if not self._thread.is_alive():
                return False
            target = self._ticks + 1
            self._wake.set()
            return (
                self._drawn.wait_for(
                    lambda: self._ticks >= target or not self._thread.is_alive(), timeout
                )
                and self._ticks >= target
            )

    def _tick(self) -> None:
        with self._drawn:
            self._ticks += 1
            self._drawn.notify_all()

    def _stop_following(self) -> None:
        self._closing.set()
        self._wake.set()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)


class NodeDashboard(_Follower, widgets.VBox):
    """A live dashboard of a node (a :class:`ucsdk.Node` or a lab node) for Jupyter.

    ``NodeDashboard(node, refresh=0.5, max_events=12, max_peers=50)``: ``refresh`` is the
    period in seconds between reads of the node (at least :data:`MIN_REFRESH`); the peer
    table shows connected peers first, at most ``max_peers`` rows. Display it like any
    widget, or use ``node.show()``. ``close()`` stops its thread; so does stopping the node.

    Parts, each an ``ipywidgets.HTML`` with its own CSS class for styling and tests:
    ``identity`` (``ucsdk-identity``), ``nat`` (``ucsdk-nat``), ``counts``
    (``ucsdk-counts``), ``service_list`` (``ucsdk-services``: one line per service, class
    ``ucsdk-service-<state>``; ``ucsdk-service-failed`` and ``ucsdk-service-restarting``
    are red and show the last error), ``metrics_table`` (``ucsdk-metrics``), ``peer_table``
    (``ucsdk-peers``), ``traversal`` (``ucsdk-traversal``: reservations and hole punches),
    ``event_log`` (``ucsdk-events``) and ``status`` (``ucsdk-status``). The controls are
    ``address`` and ``connect_button`` (``ucsdk-connect``), ``ping_target`` and
    ``ping_button`` (``ucsdk-ping``).

    Example:
        >>> import ucsdk
        >>> with ucsdk.Node.development() as node:
        ...     board = ucsdk.widgets.NodeDashboard(node)
        ...     node.peer_id in board.identity.value
        True
    """

    def __init__(
        self, node: Any, *, refresh: float = 0.5, max_events: int = 12, max_peers: int = 50
    ) -> None:
        numeric = isinstance(refresh, (int, float)) and not isinstance(refresh, bool)
        if not numeric or not refresh >= MIN_REFRESH:
            raise errors.InvalidInput("refresh", refresh, f"seconds, at least {MIN_REFRESH}")
        for name, value in (("max_events", max_events), ("max_peers", max_peers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise errors.InvalidInput(name, value, "a positive integer")
        self.node = node
        self.refresh_period = float(refresh)
        self.max_events = max_events
        self.max_peers = max_peers
        self.redraws = 0
        """How many widget values were sent to the front end so far."""
        config = getattr(node, "config", None)
        self._traversal_on = config is None or bool(
            config.enable_dcutr or config.enable_relay_client or config.enable_relay_server
        )
        self.identity = self._html("ucsdk-identity")
        self.nat = self._html("ucsdk-nat")
        self.counts = self._html("ucsdk-counts")
        self.service_list = self._html("ucsdk-services")
        self.metrics_table = self._html("ucsdk-metrics")
        self.peer_table = self._html("ucsdk-peers")
        self.graph_view = self._html("ucsdk-graph")
        self.alerts = self._html("ucsdk-alerts")
        self.traversal = self._html("ucsdk-traversal")
        self.event_log = self._html("ucsdk-events")
        self.status = self._html("ucsdk-status")
        self.address = widgets.Text(
            placeholder="/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…",
            description="address",
            layout=widgets.Layout(width="60%"),
        )
        self.address.add_class("ucsdk-address")
        self.connect_button = widgets.Button(description="Connect", icon="plug")
        self.connect_button.add_class("ucsdk-connect")
        self.ping_target = widgets.Dropdown(options=[], description="peer")
        self.ping_target.add_class("ucsdk-ping-target")
        self.ping_button = widgets.Button(description="Ping", icon="exchange")
        self.ping_button.add_class("ucsdk-ping")
        self.connect_button.on_click(lambda _: self._enqueue(self._connect, "connecting"))
        self.ping_button.on_click(lambda _: self._enqueue(self._ping, "pinging"))
        parts: list[widgets.Widget] = [
            widgets.HTML(_CSS),
            widgets.HBox([self.identity, self.nat]),
            self.alerts,
            self.counts,
            widgets.HBox([self.address, self.connect_button]),
            widgets.HBox([self.ping_target, self.ping_button]),
            self.status,
            widgets.HTML("<h4>Services</h4>"),
            self.service_list,
            widgets.HTML("<h4>Metrics</h4>"),
            self.metrics_table,
            widgets.HTML("<h4>Connections</h4>"),
            self.graph_view,
            widgets.HTML("<h4>Peers</h4>"),
            self.peer_table,
        ]
        if self._traversal_on:
            parts += [widgets.HTML("<h4>NAT traversal</h4>"), self.traversal]
        parts += [widgets.HTML("<h4>Events (newest first)</h4>"), self.event_log]
        super().__init__(parts)
        self.add_class("ucsdk-dashboard")
        self._actions: queue.Queue[tuple[str, Callable[[], str]]] = queue.Queue()
        self._draw(self._read())
        self._follow(f"ucsdk-dashboard-{node.peer_id[-8:]}")
        hooks = getattr(node, "_stop_hooks", None)
        if hooks is not None:
            hooks.append(self._node_stopped)

    @staticmethod
    def _html(css_class: str) -> widgets.HTML:
        part = widgets.HTML()
        part.add_class(css_class)
        return part

    # ------------------------------------------------------------------ public
    def close(self) -> None:
        """Stop following the node and close the dashboard's widgets."""
        if not hasattr(self, "_closing"):  # __init__ refused its arguments
            super().close()
            return
        self._stop_following()
        hooks = getattr(getattr(self, "node", None), "_stop_hooks", [])
        if self._node_stopped in hooks:
            hooks.remove(self._node_stopped)
        for child in self.children:
            for part in getattr(child, "children", (child,)):
                part.close()
            child.close()
        super().close()

    # ------------------------------------------------------------------ thread
    def _enqueue(self, action: Callable[[], str], doing: str) -> None:
        """Button handlers run on the kernel's thread: they only hand the work over."""
        self._actions.put((doing, action))
        self._wake.set()

    def _node_stopped(self) -> None:
        """Called by the node's ``stop()``: draw "stopped" and end the thread now."""
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.refresh_period)
            self._wake.clear()
            if self._closing.is_set():
                break
            self._run_actions()
            if not getattr(self.node, "running", True):
                self._say_stopped()
                break
            try:
                snapshot = self._read()
            except errors.NodeStopped:
                self._say_stopped()
                break
            except errors.UcsdkError as exc:
                self._set(self.status, f"<span class='ucsdk-error'>{html.escape(str(exc))}</span>")
                self._tick()
                continue
            self._draw(snapshot)
            self._tick()
        self._tick()

    def _run_actions(self) -> None:
        while True:
            try:
                doing, action = self._actions.get_nowait()
            except queue.Empty:
                return
            self._set(self.status, f"{doing} …")
            self._set(self.status, action())

    def _say_stopped(self) -> None:
        self._set(self.status, "<b>node stopped</b>: the dashboard no longer updates")
        self._set(self.nat, nat_badge("unknown", 0) + " (stopped)")

    # ------------------------------------------------------------------ actions
    def _connect(self) -> str:
        addr = self.address.value.strip()
        if not addr:
            return "type a multiaddr ending in /p2p/&lt;peer id&gt; first"
        try:
            info = self.node.connect(addr)
        except errors.UcsdkError as exc:
            return f"<span class='ucsdk-error'>connect failed: {html.escape(str(exc))}</span>"
        return (
            f"connected to <code>{html.escape(info.peer_id)}</code> "
            f"({html.escape(str(info.connection_type))}, {html.escape(str(info.transport))})"
        )

    def _ping(self) -> str:
        peer = self.ping_target.value
        if not peer:
            return "no connected peer to ping"
        try:
            rtts = self.node.ping(peer, count=3)
        except errors.UcsdkError as exc:
            return f"<span class='ucsdk-error'>ping failed: {html.escape(str(exc))}</span>"
        shown = ", ".join(f"{r:.2f}" for r in rtts)
        return f"ping <code>{html.escape(peer)}</code>: {shown} ms"

    # ------------------------------------------------------------------ drawing
    def _read(self) -> _Snapshot:
        node = self.node
        snapshot = _Snapshot(
            peer_id=node.peer_id,
            addrs=list(node.addrs),
            metrics=node.metrics(),
            peers=node.peers(),
            connections=node.connections(),
            events=node.events(),
            services=node.services(),
            history=node.metrics_history(),
        )
        if self._traversal_on:
            snapshot.hole_punches = node.hole_punches()
            snapshot.reservations = node.reservations()
        return snapshot

    def _set(self, part: widgets.HTML, value: str) -> None:
        """Send ``value`` only when it differs from what the front end has (this thread is
        the only writer, so ``part.value`` is what was sent last)."""
        if part.value == value:
            return
        part.value = value
        self.redraws += 1

    def _draw(self, s: _Snapshot) -> None:
        m = s.metrics
        addrs = "<br>".join(f"<code>{html.escape(a)}</code>" for a in s.addrs) or "—"
        self._set(
            self.identity,
            f"<b>ucsdk node</b> <code class='ucsdk-peer-id'>{html.escape(s.peer_id)}</code>"
            f"<br>{addrs}",
        )
        self._set(self.nat, nat_badge(m.nat_status, m.nat_confidence))
        self._set(self.counts, f"<b>connections</b>: {connection_counts(s.connections)}")
        self._set(self.service_list, service_list(s.services))
        self._set(self.alerts, service_alerts(s.services))
        self._set(self.graph_view, graph.node_graph(s.peer_id, s.connections).to_svg())
        values = m.to_dict()
        rows = "".join(
            f"<tr><th>{name}</th><td class='ucsdk-metric-{name}'>{_cell(values[name])}</td>"
            f"<td>{self._trend(s.history, name)}</td></tr>"
            for name in SEED_METRICS
        )
        self._set(self.metrics_table, f"<table class='ucsdk-metrics-table'>{rows}</table>")
        # Connected peers first, then the most recently seen; at most max_peers rows.
        peers = s.peers.sort_values(["connected", "last_seen"], ascending=False)
        more = len(peers) - self.max_peers
        table = html_table(
            peers.head(self.max_peers), PEER_TABLE_COLUMNS, "ucsdk-peer-table", "no peers yet"
        )
        if more > 0:
            table += f"<div>… and {more} more: node.peers() has them all</div>"
        self._set(self.peer_table, table)
        connected = sorted(s.peers.loc[s.peers["connected"], "peer_id"]) if len(s.peers) else []
        if tuple(connected) != tuple(self.ping_target.options):
            keep = self.ping_target.value
            self.ping_target.options = connected
            if connected:
                self.ping_target.value = keep if keep in connected else connected[0]
            self.redraws += 1
        if self._traversal_on:
            self._set(self.traversal, self._traversal_html(s))
        events = s.events.tail(self.max_events).iloc[::-1]
        self._set(
            self.event_log,
            html_table(events, frames.EVENT_COLUMNS, "ucsdk-event-table", "—"),
        )

    @staticmethod
    def _trend(history: pd.DataFrame | None, name: str) -> str:
        """A sparkline of the metric's values over its last :data:`TREND_SAMPLES` samples,
        one point per change (an idle node's line stays the same, so nothing is re-sent)."""
        if history is None or name not in history.columns or name == "last_updated":
            return ""
        values = pd.to_numeric(history[name].tail(TREND_SAMPLES), errors="coerce").dropna()
        changes = values[values.ne(values.shift())]
        return plots.sparkline(list(changes))

    @staticmethod
    def _traversal_html(s: _Snapshot) -> str:
        assert s.reservations is not None and s.hole_punches is not None
        return (
            "<b>relay reservations</b>"
            + html_table(
                s.reservations,
                RESERVATION_COLUMNS,
                "ucsdk-reservation-table",
                "none (made when AutoNAT says private, or with node.reserve())",
            )
            + "<b>hole punches (DCUtR)</b>"
            + html_table(s.hole_punches, HOLE_PUNCH_COLUMNS, "ucsdk-holepunch-table", "none yet")
            + f"<div class='ucsdk-success-rate'>success rate {success_rate(s.metrics)}</div>"
        )


class LiveGraph(_Follower, widgets.HTML):
    """A network graph that follows its source: ``read()`` returns a
    :class:`ucsdk.graph.NetworkGraph` and is called at most every ``refresh`` seconds from
    the view's thread; the SVG is re-sent only when the picture changed. What
    ``node.graph()`` and ``lab.graph()`` return. ``graph`` is the picture last drawn;
    ``close()`` stops the thread, and so does its node stopping.

    Example:
        >>> import ucsdk
        >>> quiet = {"enable_mdns": False}  # or b may also dial a: two links for 0.5 s
        >>> with ucsdk.Node.development(**quiet) as a, ucsdk.Node.development(**quiet) as b:
        ...     view = a.graph(refresh=0.2)
        ...     _ = a.connect(b.addrs[0])
        ...     _ = view.refresh()
        ...     view.graph.counts()["direct"], b.peer_id in view.value
        (1, True)
        >>> view.running
        False
    """

    def __init__(
        self, read: Callable[[], NetworkGraph], *, refresh: float = 1.0, owner: Any = None
    ) -> None:
        numeric = isinstance(refresh, (int, float)) and not isinstance(refresh, bool)
        if not numeric or not refresh >= MIN_REFRESH:
            raise errors.InvalidInput("refresh", refresh, f"seconds, at least {MIN_REFRESH}")
        super().__init__()
        self.add_class("ucsdk-graph-view")
        self._read = read
        self._owner = owner
        self.refresh_period = float(refresh)
        self.redraws = 0
        self.graph: NetworkGraph = read()
        self.value = self.graph.to_svg()
        name = getattr(owner, "peer_id", None) or getattr(owner, "name", "lab")
        self._follow(f"ucsdk-graph-{str(name)[-8:]}")
        hooks = getattr(owner, "_stop_hooks", None)
        if hooks is not None:
            hooks.append(self._owner_stopped)

    def close(self) -> None:
        """Stop following and close the widget."""
        if hasattr(self, "_closing"):
            self._stop_following()
            hooks = getattr(self._owner, "_stop_hooks", [])
            if self._owner_stopped in hooks:
                hooks.remove(self._owner_stopped)
        super().close()

    def _owner_stopped(self) -> None:
        """Called by the owner's ``stop()``: end the thread now."""
        self._stop_following()

    def _loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.refresh_period)
            self._wake.clear()
            if self._closing.is_set() or not getattr(self._owner, "running", True):
                break
            try:
                graph = self._read()
            except errors.NodeStopped:
                break
            except errors.UcsdkError as exc:
                logger.debug("graph view: %s", exc)
                self._tick()
                continue
            svg = graph.to_svg()
            self.graph = graph
            if svg != self.value:
                self.value = svg
                self.redraws += 1
            self._tick()
        self._tick()


def node_graph_of(node: Any) -> NetworkGraph:
    """``node``'s connections as a :class:`ucsdk.graph.NetworkGraph` (read now)."""
    return graph.node_graph(node.peer_id, node.connections())


def dashboard(node: Any, **options: Any) -> NodeDashboard:
    """A :class:`NodeDashboard` for ``node`` (what ``node.widget()`` returns); ``options``
    are the dashboard's (``refresh``, ``max_events``, ``max_peers``)."""
    return NodeDashboard(node, **options)


def show(node: Any, **options: Any) -> NodeDashboard:
    """Display a dashboard for ``node`` in the current cell and return it."""
    from IPython.display import display

    board = dashboard(node, **options)
    display(board)
    return board
