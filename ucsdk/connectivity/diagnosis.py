"""What kind of NAT is this node behind, seen from the node itself.

A NAT's *mapping* decides whether hole punching can work: an endpoint-independent one
(EIM) gives a socket one public port whoever it talks to, so the address a peer saw is the
address another peer can punch to; an endpoint-dependent one (EDM, "symmetric") gives each
destination a new port, so that address is wrong for everyone else.

The node reads it from what its peers tell it (identify's observed address) next to the
local port of the connection each peer saw, as STUN would:

- peers at two or more IPs seeing one socket at one port is EIM, at different ports EDM;
- py-libp2p dials every connection from a socket of its own, so mostly each peer sees a
  different socket. Then a NAT that kept every port as it was (the node sent from port P,
  peers saw P) is a port-preserving NAT: it maps endpoint-independently as far as a
  hole punch can tell (DCUtR dials from the listen port, which such a NAT keeps too). A NAT
  that rewrote the ports gives the punch an address it cannot predict: endpoint-dependent.

AutoNAT says whether the node is reachable at all: peers seeing one of its own interface
addresses is "no NAT"; reachable through a translation is a port forward.

Example (the classification alone, from rows a node collected):
    >>> report = classify_nat(
    ...     [("quic", "peerA", "203.0.113.10", "198.51.100.7", 40001, 40001),
    ...      ("quic", "peerB", "203.0.113.11", "198.51.100.7", 40002, 40002)],
    ...     own_ips=["10.0.0.2"], reachable=False)
    >>> report.type, report.mapping, report.port_preserved
    ('endpoint_independent', 'endpoint-independent', True)
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NAT_TYPES", "Diagnosis", "NatReport", "classify_nat", "diagnose_paths"]

NAT_TYPES = (
    "none",
    "port_forwarded",
    "endpoint_independent",
    "endpoint_dependent",
    "unknown",
)
"""What :func:`classify_nat` can answer."""

EVIDENCE_COLUMNS = (
    "transport",
    "observer",
    "observer_ip",
    "observed_ip",
    "observed_port",
    "local_port",
)

_MEANING = {
    "none": "No NAT: this node's own address is what peers see. Peers dial it directly; "
    "no relay or hole punch is needed if its firewall lets them in (AutoNAT says so).",
    "port_forwarded": "Behind a NAT, but reachable: a port forward (or UPnP) lets peers dial "
    "the public address directly. No relay or hole punch is needed.",
    "endpoint_independent": "Behind a NAT that keeps one public port per socket whoever it "
    "talks to (endpoint-independent mapping). Peers reach this node through a relay, and "
    "DCUtR can punch a direct connection with any peer whose NAT does the same, or that is "
    "public. Against a NAT that maps each destination to a new port, it stays relayed.",
    "endpoint_dependent": "Behind a NAT that maps each destination to a new port "
    "(endpoint-dependent, 'symmetric'). The address one peer sees is wrong for every other, "
    "so hole punching fails against other NATs: connections stay relayed. Only public or "
    "port-forwarded peers are reached directly (this node dials them). A port forward, "
    "IPv6 or a different network would help.",
    "unknown": "Not enough evidence yet: it takes QUIC connections to peers at two or more "
    "IPs (their observed addresses), or AutoNAT answers.",
}


@dataclass(frozen=True)
class NatReport:
    """The NAT this node is behind, as far as the node can tell (``node.nat_type()``).

    ``type`` is one of :data:`NAT_TYPES`; ``mapping`` says how it maps ports
    (``endpoint-independent``, ``endpoint-dependent``, ``none`` or ``unknown``);
    ``port_preserved`` whether the public port is the listen port (``None``: unknown);
    ``reachable`` what AutoNAT says (``None``: not known); ``evidence`` the observed
    addresses it was read from (``EVIDENCE_COLUMNS``); ``reason`` how the evidence led to
    the type; ``meaning`` what it means for hole punching.
    """

    type: str
    mapping: str
    port_preserved: bool | None
    reachable: bool | None
    reason: str
    evidence: tuple[tuple[Any, ...], ...] = field(default=())

    @property
    def meaning(self) -> str:
        return _MEANING[self.type]

    def evidence_frame(self) -> Any:
        """The evidence as a pandas DataFrame (``EVIDENCE_COLUMNS``)."""
        import pandas as pd

        return pd.DataFrame(list(self.evidence), columns=list(EVIDENCE_COLUMNS))

    def __str__(self) -> str:
        preserved = {True: "yes", False: "no", None: "unknown"}[self.port_preserved]
        reachable = {True: "yes", False: "no", None: "unknown"}[self.reachable]
        lines = [
            f"NAT type: {self.type}",
            f"  mapping: {self.mapping}; port preserved: {preserved}; reachable: {reachable}",
            f"  why: {self.reason}",
            f"  for hole punching: {self.meaning}",
        ]
        for row in self.evidence:
            transport, observer, observer_ip, ip, port, local = row
            lines.append(
                f"  {observer[-8:]} at {observer_ip} sees {ip}:{port} over {transport} "
                f"(sent from port {local})"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in self.evidence
        )
        head = "".join(f"<th>{c}</th>" for c in EVIDENCE_COLUMNS)
        preserved = {True: "yes", False: "no", None: "unknown"}[self.port_preserved]
        reachable = {True: "yes", False: "no", None: "unknown"}[self.reachable]
        return (
            f"<div><b>NAT type: {html.escape(self.type)}</b> "
            f"(mapping {html.escape(self.mapping)}, port preserved {preserved}, "
            f"reachable {reachable})<br><i>{html.escape(self.reason)}</i>"
            f"<p>{html.escape(self.meaning)}</p>"
            f"<table><tr>{head}</tr>{rows}</table></div>"
        )


def classify_nat(
    evidence: list[tuple[str, str, str, str, int, int | None]],
    *,
    own_ips: list[str],
    reachable: bool | None,
) -> NatReport:
    """The NAT type from observed-address ``evidence`` rows (``EVIDENCE_COLUMNS``), the
    node's interface IPs and AutoNAT's verdict (``True`` public, ``False`` private)."""
    rows = tuple(sorted(evidence, key=lambda r: (r[0], r[2], r[1])))
    observed_ips = {r[3] for r in rows}
    translated = bool(observed_ips) and not observed_ips & set(own_ips)
    if observed_ips and not translated:
        return NatReport(
            "none",
            "none",
            None,
            reachable,
            "peers see this node at its own address: "
            + ", ".join(sorted(observed_ips & set(own_ips))),
            rows,
        )
    if reachable and translated:
        return NatReport(
            "port_forwarded",
            "unknown",
            None,
            True,
            f"peers see {', '.join(sorted(observed_ips))}, not an address of this node, "
            "and AutoNAT servers reached it there",
            rows,
        )
    known = [r for r in rows if r[5] is not None]
    observer_ips = {r[2] for r in known}
    if len(observer_ips) < 2:
        return NatReport(
            "unknown",
            "unknown",
            None,
            reachable,
            f"observations with a known local port from {len(observer_ips)} IP(s); the "
            "mapping needs two or more",
            rows,
        )
    # One socket seen from two IPs: the mapping itself.
    by_socket: dict[tuple[str, int], dict[str, set[int]]] = {}
    for r in known:
        local = r[5]
        assert local is not None
        by_socket.setdefault((r[0], local), {}).setdefault(r[2], set()).add(r[4])
    for (transport, local), seen in by_socket.items():
        if len(seen) >= 2:
            ports = {p for ps in seen.values() for p in ps}
            if len(ports) == 1:
                port = next(iter(ports))
                return NatReport(
                    "endpoint_independent",
                    "endpoint-independent",
                    port == local,
                    reachable,
                    f"one {transport} socket (port {local}) is seen at port {port} by peers "
                    f"at {len(seen)} IPs",
                    rows,
                )
            return NatReport(
                "endpoint_dependent",
                "endpoint-dependent",
                False,
                reachable,
                f"one {transport} socket (port {local}) is seen at {len(ports)} different "
                f"ports by peers at {len(seen)} IPs: " + ", ".join(map(str, sorted(ports))),
                rows,
            )
    kept = [r for r in known if r[4] == r[5]]
    if len(kept) == len(known):
        return NatReport(
            "endpoint_independent",
            "endpoint-independent",
            True,
            reachable,
            f"peers at {len(observer_ips)} IPs each see the port this node sent from "
            f"({len(known)} connections): the NAT keeps ports",
            rows,
        )
    changed = [f"{r[5]}->{r[4]}" for r in known if r[4] != r[5]]
    return NatReport(
        "endpoint_dependent",
        "endpoint-dependent",
        False,
        reachable,
        f"the NAT rewrote {len(changed)} of {len(known)} ports seen by peers at "
        f"{len(observer_ips)} IPs ({', '.join(changed[:4])}): the address one peer sees is "
        "not one another can predict",
        rows,
    )


PATH_COLUMNS = ("path", "via", "tried", "outcome", "ms", "reason")


@dataclass(frozen=True)
class Diagnosis:
    """Why this node can or cannot reach a peer (``node.diagnose(peer_id)``).

    ``paths`` has one row per way to the peer (``PATH_COLUMNS``): ``direct`` per address,
    ``relayed`` per relay, ``dcutr`` per transport, ``webrtc``; each tried or not, how it
    ended, in how many ms, and why. ``verdict`` sums it up; ``help`` says what would make
    it better; ``nat_type`` is this node's (see :class:`NatReport`).
    """

    peer_id: str
    verdict: str
    help: tuple[str, ...]
    paths: tuple[tuple[Any, ...], ...]
    nat_type: str
    connected: str
    """``direct``, ``relayed`` or ``no``: how the peer is connected now."""

    def frame(self) -> Any:
        """The paths as a pandas DataFrame (``PATH_COLUMNS``)."""
        import pandas as pd

        return pd.DataFrame(list(self.paths), columns=list(PATH_COLUMNS))

    def __str__(self) -> str:
        lines = [f"peer {self.peer_id}: {self.verdict}", f"  connected now: {self.connected}"]
        for path, via, tried, outcome, ms, reason in self.paths:
            took = f" in {ms:.0f} ms" if isinstance(ms, (int, float)) and ms == ms else ""
            said = f": {reason}" if reason else ""
            lines.append(f"  {path:8} {via}: {outcome if tried else 'not tried'}{took}{said}")
        lines += [f"  would help: {h}" for h in self.help]
        lines.append(f"  this node's NAT: {self.nat_type}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in PATH_COLUMNS)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in self.paths
        )
        helps = "".join(f"<li>{html.escape(h)}</li>" for h in self.help)
        return (
            f"<div><b>{html.escape(self.verdict)}</b><br>peer "
            f"<code>{html.escape(self.peer_id)}</code>, connected now: "
            f"{html.escape(self.connected)}, this node's NAT: {html.escape(self.nat_type)}"
            f"<table><tr>{head}</tr>{rows}</table>"
            + (f"<p>What would help:</p><ul>{helps}</ul>" if helps else "")
            + "</div>"
        )


def _relay_of(addr: str) -> str:
    return addr.split("/p2p-circuit")[0].rsplit("/p2p/", 1)[-1]


def diagnose_paths(
    peer_id: str,
    *,
    known_addrs: list[str],
    attempts: list[Any],
    hole_punches: list[Any],
    connections: list[Any],
    nat: NatReport,
) -> Diagnosis:
    """Explain the ways to ``peer_id`` from what the node saw: the addresses it knows,
    its dial attempts (``DialAttempt``), hole punches (``HolePunchResult``) and open
    connections (``OpenConnection``)."""
    mine = [a for a in attempts if a.peer_id == peer_id]
    latest: dict[str, Any] = {}
    for attempt in mine:
        latest[attempt.addr] = attempt
    paths: list[tuple[Any, ...]] = []
    direct_addrs = [a for a in known_addrs if "/p2p-circuit" not in a]
    direct_addrs += [a for a in latest if "/p2p-circuit" not in a and a not in direct_addrs]
    open_direct = [c for c in connections if not c.relayed]
    open_relayed = [c for c in connections if c.relayed]
    for addr in direct_addrs:
        kind = "webrtc" if "/webrtc" in addr else "direct"
        tried = latest.get(addr)
        if tried is not None:
            paths.append((kind, addr, True, tried.outcome, tried.ms, tried.error or ""))
        else:
            paths.append((kind, addr, False, "", float("nan"), ""))
    for conn in open_direct:
        if conn.direction == "inbound":
            paths.append(
                (
                    "direct",
                    conn.remote_addr or "?",
                    True,
                    "inbound",
                    float("nan"),
                    "the peer dialled this node",
                )
            )
    relays: dict[str, list[str]] = {}
    for addr in [*known_addrs, *latest]:
        if "/p2p-circuit" in addr and addr not in relays.get(_relay_of(addr), []):
            relays.setdefault(_relay_of(addr), []).append(addr)
    open_via = {_relay_of(c.remote_addr or ""): c for c in open_relayed}
    for relay, addrs in relays.items():
        tried_here = [latest[a] for a in addrs if a in latest]
        via = f"relay {relay}"
        if relay in open_via and not any(t.outcome == "connected" for t in tried_here):
            circuit = f"{open_via[relay].direction} circuit"
            paths.append(("relayed", via, True, "open", float("nan"), circuit))
        elif tried_here:
            best = next((t for t in tried_here if t.outcome == "connected"), tried_here[-1])
            paths.append(("relayed", via, True, best.outcome, best.ms, best.error or ""))
        else:
            paths.append(("relayed", via, False, "", float("nan"), ""))
    for conn in open_relayed:
        relay = _relay_of(conn.remote_addr or "")
        if relay not in relays:
            paths.append(
                (
                    "relayed",
                    f"relay {relay}",
                    True,
                    "open",
                    float("nan"),
                    f"{conn.direction} circuit",
                )
            )
    punches = [p for p in hole_punches if p.peer_id == peer_id]
    for transport in ("tcp", "quic"):
        last = next((p for p in reversed(punches) if p.transport == transport), None)
        if last is not None:
            paths.append(
                (
                    "dcutr",
                    transport,
                    True,
                    last.outcome,
                    last.time_to_direct_ms if last.time_to_direct_ms is not None else float("nan"),
                    last.reason,
                )
            )
        else:
            paths.append(("dcutr", transport, False, "", float("nan"), ""))
    connected = "direct" if open_direct else ("relayed" if open_relayed else "no")
    verdict, helps = _verdict(connected, paths, punches, relays, nat)
    return Diagnosis(peer_id, verdict, tuple(helps), tuple(paths), nat.type, connected)


def _verdict(
    connected: str,
    paths: list[tuple[Any, ...]],
    punches: list[Any],
    relays: dict[str, list[str]],
    nat: NatReport,
) -> tuple[str, list[str]]:
    helps: list[str] = []
    punched = any(p.success for p in punches)
    if connected == "direct":
        if punched:
            return "reachable directly, after a hole punch (DCUtR)", helps
        inbound = any(p[3] == "inbound" for p in paths)
        return (
            "reachable directly" + (" (the peer dialled this node)" if inbound else ""),
            helps,
        )
    direct_tried = [p for p in paths if p[0] == "direct" and p[2]]
    if connected == "relayed":
        failed = [p for p in punches if not p.success]
        if nat.type == "endpoint_dependent":
            why = "this node is behind a NAT that maps each destination to a new port"
            helps += ["a port forward on this side", "IPv6", "a network whose NAT keeps ports"]
        elif failed:
            why = f"the hole punch failed ({failed[-1].outcome}: {failed[-1].reason})"
            if nat.type == "endpoint_independent":
                why += (
                    "; this node's NAT keeps ports, so the peer's NAT probably maps each "
                    "destination to a new port"
                )
            helps += ["a port forward on the peer's side", "IPv6 on both sides"]
        else:
            why = "no hole punch has been tried yet (DCUtR runs when a relayed connection opens)"
            helps += ["wait for DCUtR, or enable it (enable_dcutr)"]
        return f"relay only: {why}", helps
    if not any(p[2] for p in paths):
        return "not tried yet: dial it (node.dial_peer) or diagnose(..., probe=True)", [
            "a fresh probe: diagnose(peer_id, probe=True)"
        ]
    if not relays:
        reason = "; ".join(f"{p[1]}: {p[5] or p[3]}" for p in direct_tried[:3])
        helps += [
            "a relay both peers can reach (connect both to a node with enable_relay_server)",
            "a port forward on the peer's side",
        ]
        return f"unreachable: no relay in common, and direct dials failed ({reason})", helps
    relay_reasons = "; ".join(f"{p[1]}: {p[5] or p[3]}" for p in paths if p[0] == "relayed")
    helps += ["another relay the peer has a reservation on", "a port forward on the peer's side"]
    return f"unreachable: direct dials failed and the relays failed too ({relay_reasons})", helps
