"""Pictures of a network: who is connected to whom, and how.

A :class:`NetworkGraph` is a plain description (nodes, edges, a title) drawn as SVG by
:meth:`NetworkGraph.to_svg`. A direct connection is a solid line coloured by its
transport; a relayed one is a dashed curve bent through its relay, so a hole punch turns
a dashed link into a solid one. :func:`node_graph` draws one node's view (its
connections), :func:`lab_graph` a NAT lab (hosts, their routers and NAT types, the
internet, and the connections between lab nodes).

Why SVG made here rather than a plotting or graph-widget library: the picture is a few
dozen shapes, it must render the same in Jupyter, in Voila (offline, no CDN), in a saved
notebook and in the docs, and a browser test must be able to count its nodes and edges
(each is an element with a ``ucsdk-node``/``ucsdk-edge`` class and ``data-`` fields).
An SVG string does all of that with no JavaScript to bundle; ipycytoscape (last release
2022) and plotly's FigureWidget need a front-end extension and give no stable classes.
The live views (``node.graph()``, ``lab.graph()``, the dashboard) send a new SVG only
when the picture changed, at the dashboard's bounded rate.

Example:
    >>> import pandas as pd
    >>> conns = pd.DataFrame([
    ...     {"peer_id": "R", "remote_addr": "/ip4/203.0.113.1/tcp/4001", "transport": "tcp",
    ...      "relayed": False},
    ...     {"peer_id": "B", "remote_addr": "/ip4/203.0.113.1/tcp/4001/p2p/R/p2p-circuit",
    ...      "transport": "tcp", "relayed": True},
    ... ])
    >>> g = node_graph("A", conns)
    >>> [(e.source, e.target, e.kind, e.via) for e in g.edges]
    [('A', 'R', 'direct', None), ('A', 'B', 'relayed', 'R')]
    >>> g.to_svg().count("class='ucsdk-edge ")
    2
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ucsdk import errors
from ucsdk.addresses import parse_circuit

TRANSPORT_COLOURS = {
    "tcp": "#1f77b4",
    "quic": "#2ca02c",
    "websocket": "#ff7f0e",
    "webtransport": "#9467bd",
    "webrtc": "#d62728",
    "webrtc-direct": "#e377c2",
}
"""Edge colour per transport (matplotlib's default cycle, so plots and graph agree)."""
OTHER_COLOUR = "#7f7f7f"
NODE_COLOURS = {
    "self": "#1f3b57",
    "peer": "#4c78a8",
    "relay": "#b279a2",
    "host": "#4c78a8",
    "public": "#54a24b",
    "router": "#eeca3b",
    "internet": "#bab0ac",
}
MAX_PEERS = 24
"""Peers drawn around a node; the rest are counted in a note (``node.peers()`` has them)."""


@dataclass(frozen=True)
class GraphNode:
    """One vertex: ``kind`` is ``self``, ``peer``, ``relay``, ``host``, ``public``,
    ``router`` or ``internet``; ``detail`` is shown on hover."""

    id: str
    label: str
    kind: str
    detail: str = ""


@dataclass(frozen=True)
class GraphEdge:
    """One link: ``kind`` is ``direct``, ``relayed`` (through ``via``) or ``wire`` (a lab
    cable); ``transport`` as in ``node.connections()``."""

    source: str
    target: str
    kind: str
    transport: str | None = None
    via: str | None = None


@dataclass
class NetworkGraph:
    """Nodes, edges and where each node sits (``positions``, in a 0–1 square)."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    positions: dict[str, tuple[float, float]]
    title: str = ""
    note: str = ""
    width: int = 640
    height: int = 440
    _svg: str | None = field(default=None, repr=False, compare=False)

    def counts(self) -> dict[str, int]:
        """How many nodes, and edges of each kind, the picture has."""
        out = {"nodes": len(self.nodes), "direct": 0, "relayed": 0, "wire": 0}
        for edge in self.edges:
            out[edge.kind] = out.get(edge.kind, 0) + 1
        return out

    def to_svg(self) -> str:
        """The picture as an SVG document (a string)."""
        if self._svg is None:
            self._svg = _draw(self)
        return self._svg

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def save(self, path: str | Path) -> Path:
        """Write the SVG to ``path`` (``.svg``) and return the path."""
        target = Path(path)
        if target.suffix.lower() != ".svg":
            raise errors.InvalidInput("path", str(path), "a file name ending in .svg")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_svg(), encoding="utf-8")
        return target


# --------------------------------------------------------------------- building
def short(peer_id: str) -> str:
    """The last six characters of a peer id, as the dashboard shows them."""
    return "…" + peer_id[-6:] if len(peer_id) > 8 else peer_id


def relay_of(addr: Any) -> str | None:
    """The relay's peer id in a circuit address; ``None`` when it has none."""
    if not isinstance(addr, str) or "/p2p-circuit" not in addr:
        return None
    try:
        return parse_circuit(addr)[1] or None
    except errors.UcsdkError:
        return None


def _links(owner: str, connections: pd.DataFrame) -> list[GraphEdge]:
    """One edge per (peer, kind, transport, relay) of ``owner``'s connections."""
    edges: dict[tuple[Any, ...], GraphEdge] = {}
    if not len(connections):
        return []
    for row in connections.itertuples(index=False):
        peer = str(row.peer_id)
        transport = str(row.transport) if isinstance(row.transport, str) else None
        if bool(row.relayed):
            via = relay_of(row.remote_addr)
            edge = GraphEdge(owner, peer, "relayed", transport, via)
        else:
            edge = GraphEdge(owner, peer, "direct", transport)
        edges.setdefault((peer, edge.kind, edge.transport, edge.via), edge)
    return list(edges.values())


def node_graph(
    peer_id: str, connections: pd.DataFrame, *, title: str | None = None
) -> NetworkGraph:
    """One node's view: the node in the middle, relays on an inner ring, the other
    connected peers around them (at most :data:`MAX_PEERS`)."""
    edges = _links(peer_id, connections)
    relays = sorted({e.via for e in edges if e.via} - {peer_id})
    peers = sorted({e.target for e in edges} - set(relays) - {peer_id})
    hidden = max(0, len(peers) - MAX_PEERS)
    peers = peers[:MAX_PEERS]
    shown = {peer_id, *relays, *peers}
    edges = [e for e in edges if e.target in shown and (e.via is None or e.via in shown)]
    nodes = [GraphNode(peer_id, "this node", "self", peer_id)]
    nodes += [GraphNode(r, short(r), "relay", f"relay {r}") for r in relays]
    nodes += [GraphNode(p, short(p), "peer", p) for p in peers]
    positions = {peer_id: (0.5, 0.5)}
    positions.update(_ring(relays, 0.2, offset=0.25))
    positions.update(_ring(peers, 0.4))
    note = f"… and {hidden} more peers" if hidden else ""
    return NetworkGraph(nodes, edges, positions, title or f"node {short(peer_id)}", note)


def lab_graph(
    hosts: pd.DataFrame,
    connections: Mapping[str, pd.DataFrame],
    *,
    title: str = "NAT lab",
) -> NetworkGraph:
    """A lab: the internet in the middle, public hosts next to it, each NATed host behind
    its router(s) (labelled with the NAT type), and the live connections between lab
    nodes; ``hosts`` is ``lab.hosts()``, ``connections`` each host's
    ``node.connections()`` by host name."""
    nodes = [GraphNode("internet", "internet", "internet", "the lab's public network")]
    edges: list[GraphEdge] = []
    positions: dict[str, tuple[float, float]] = {"internet": (0.5, 0.5)}
    rows: list[dict[str, Any]] = [
        {str(k): v for k, v in r.items()} for r in hosts.to_dict("records")
    ]
    by_peer = {str(r["peer_id"]): str(r["host"]) for r in rows if isinstance(r["peer_id"], str)}
    count = max(len(rows), 1)
    for i, row in enumerate(rows):
        angle = 2 * math.pi * i / count - math.pi / 2
        name, nat = str(row["host"]), str(row["nat"])
        detail = f"{name}: {row['address']}"
        if row["peer_id"]:
            detail += f", peer {row['peer_id']}"
        routers = [str(r) for r in (row["routers"] or [])]
        if nat == "none" or not routers:
            nodes.append(GraphNode(name, name, "public", detail))
            positions[name] = _at(angle, 0.2)
            edges.append(GraphEdge(name, "internet", "wire"))
            continue
        nodes.append(GraphNode(name, name, "host", detail))
        positions[name] = _at(angle, 0.44)
        previous = name
        # routers[0] is the one in front of the host; a double NAT's second is further out.
        for depth, router in enumerate(routers):
            rid = f"router:{router}"
            label = nat if depth == 0 else "NAT"
            nodes.append(GraphNode(rid, label, "router", f"{router} ({nat})"))
            positions[rid] = _at(angle, 0.35 - 0.08 * depth)
            edges.append(GraphEdge(previous, rid, "wire"))
            previous = rid
        edges.append(GraphEdge(previous, "internet", "wire"))
    seen: dict[tuple[Any, ...], GraphEdge] = {}
    for host, frame in connections.items():
        for edge in _links(host, frame):
            other = by_peer.get(edge.target)
            if other is None:
                continue
            via = by_peer.get(edge.via) if edge.via else None
            if edge.via and via is None:
                continue
            pair = tuple(sorted((host, other)))
            key = (pair, edge.kind, edge.transport, via)
            seen.setdefault(key, GraphEdge(pair[0], pair[1], edge.kind, edge.transport, via))
    edges += list(seen.values())
    return NetworkGraph(nodes, edges, positions, title, width=680, height=520)


def _ring(ids: Iterable[str], radius: float, offset: float = 0.0) -> dict[str, tuple[float, float]]:
    items = list(ids)
    return {
        item: _at(2 * math.pi * (i / max(len(items), 1) + offset) - math.pi / 2, radius)
        for i, item in enumerate(items)
    }


def _at(angle: float, radius: float) -> tuple[float, float]:
    return 0.5 + radius * math.cos(angle), 0.5 + radius * math.sin(angle)


# ---------------------------------------------------------------------- drawing
def _draw(g: NetworkGraph) -> str:
    w, h, top = g.width, g.height, 28
    span = min(w, h - top - 36)
    left = (w - span) / 2

    def xy(node_id: str) -> tuple[float, float]:
        x, y = g.positions.get(node_id, (0.5, 0.5))
        return left + x * span, top + y * span

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='ucsdk-network' width='{w}' "
        f"height='{h}' viewBox='0 0 {w} {h}' font-family='sans-serif' font-size='11'>",
        f"<text x='8' y='18' font-size='14' font-weight='bold'>{html.escape(g.title)}</text>",
    ]
    for e in g.edges:
        (x1, y1), (x2, y2) = xy(e.source), xy(e.target)
        colour = TRANSPORT_COLOURS.get(e.transport or "", OTHER_COLOUR)
        transport = html.escape(e.transport or "")
        data = (
            f"class='ucsdk-edge ucsdk-edge-{e.kind}' data-source='{html.escape(e.source)}' "
            f"data-target='{html.escape(e.target)}' data-transport='{transport}'"
        )
        if e.kind == "wire":
            out.append(
                f"<line {data} x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' "
                "stroke='#c8c8c8' stroke-width='1.5'/>"
            )
        elif e.kind == "relayed":
            rx, ry = xy(e.via) if e.via else ((x1 + x2) / 2, (y1 + y2) / 2)
            # Through the relay, shifted a little to one side so that it does not hide a
            # direct line to the relay.
            dx, dy = x2 - x1, y2 - y1
            length = math.hypot(dx, dy) or 1.0
            ox, oy = -dy / length * 5, dx / length * 5
            out.append(
                f"<path {data} data-via='{html.escape(e.via or '')}' "
                f"d='M{x1 + ox:.1f},{y1 + oy:.1f} L{rx + ox:.1f},{ry + oy:.1f} "
                f"L{x2 + ox:.1f},{y2 + oy:.1f}' fill='none' stroke='{colour}' "
                "stroke-width='2' stroke-dasharray='7 5' stroke-linejoin='round'>"
                f"<title>relayed ({html.escape(e.transport or '?')}) via "
                f"{html.escape(e.via or '?')}</title></path>"
            )
        else:
            out.append(
                f"<line {data} x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' "
                f"stroke='{colour}' stroke-width='3'>"
                f"<title>direct ({html.escape(e.transport or '?')})</title></line>"
            )
    for n in g.nodes:
        x, y = xy(n.id)
        radius = {"self": 20, "internet": 26, "router": 11}.get(n.kind, 15)
        fill = NODE_COLOURS.get(n.kind, NODE_COLOURS["peer"])
        label_y = y - radius - 4 if n.kind == "router" else y + radius + 12
        shape = (
            f"<rect x='{x - radius:.1f}' y='{y - radius:.1f}' width='{2 * radius}' "
            f"height='{2 * radius}' rx='3' fill='{fill}'/>"
            if n.kind == "router"
            else f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{radius}' fill='{fill}'/>"
        )
        out.append(
            f"<g class='ucsdk-node ucsdk-node-{n.kind}' data-id='{html.escape(n.id)}'>"
            f"<title>{html.escape(n.detail or n.id)}</title>{shape}"
            f"<text x='{x:.1f}' y='{label_y:.1f}' text-anchor='middle'>"
            f"{html.escape(n.label)}</text></g>"
        )
    out.append(_legend(g, h))
    if g.note:
        out.append(f"<text x='{w - 8}' y='18' text-anchor='end'>{html.escape(g.note)}</text>")
    out.append("</svg>")
    return "".join(out)


def _legend(g: NetworkGraph, h: int) -> str:
    used = sorted({e.transport for e in g.edges if e.kind != "wire" and e.transport})
    items = [(t, TRANSPORT_COLOURS.get(t, OTHER_COLOUR), "") for t in used]
    items += [("direct", "#333", ""), ("relayed", "#333", "7 5")]
    parts, x = [], 8.0
    for label, colour, dash in items:
        dashed = f" stroke-dasharray='{dash}'" if dash else ""
        parts.append(
            f"<line x1='{x:.0f}' y1='{h - 12}' x2='{x + 22:.0f}' y2='{h - 12}' "
            f"stroke='{colour}' stroke-width='3'{dashed}/>"
            f"<text x='{x + 26:.0f}' y='{h - 8}'>{html.escape(label)}</text>"
        )
        x += 34 + 7 * len(label)
    return "<g class='ucsdk-legend'>" + "".join(parts) + "</g>"
