"""Named lab topologies and the standard first experiment run on them.

Example (as root):
    >>> from ucsdk.lab.scenarios import SCENARIOS, run_scenario
    >>> sorted(SCENARIOS)
    ['all-nats', 'cgnat', 'home', 'symmetric']
    >>> report = run_scenario("home")  # doctest: +SKIP
    >>> report.reachability.pivot(index="dialer", columns="target", values="ok")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ucsdk import errors
from ucsdk.lab._lab import NAT_TABLE_COLUMNS, Lab, LabHost
from ucsdk.lab.nat import NatType
from ucsdk.progress import progress

logger = logging.getLogger("UniversalConnectivity")

# name -> (description, hosts as (name, NAT type))
SCENARIOS: dict[str, tuple[str, list[tuple[str, NatType]]]] = {
    "home": (
        "two peers behind typical home routers and a public relay",
        [
            ("relay", NatType.NONE),
            ("alice", NatType.PORT_RESTRICTED),
            ("bob", NatType.PORT_RESTRICTED),
        ],
    ),
    "symmetric": (
        "a peer behind a home router, one behind a symmetric NAT, and a public relay",
        [("relay", NatType.NONE), ("alice", NatType.PORT_RESTRICTED), ("bob", NatType.SYMMETRIC)],
    ),
    "cgnat": (
        "two peers behind carrier-grade NAT (double NAT) and a public relay",
        [("relay", NatType.NONE), ("alice", NatType.DOUBLE), ("bob", NatType.DOUBLE)],
    ),
    "all-nats": (
        "two public hosts and one host behind each kind of NAT",
        [
            ("relay", NatType.NONE),
            ("observer", NatType.NONE),
            ("home", NatType.PORT_RESTRICTED),
            ("symmetric", NatType.SYMMETRIC),
            ("forwarded", NatType.PORT_FORWARDED),
            ("cgnat", NatType.DOUBLE),
        ],
    ),
}


@dataclass
class ScenarioReport:
    """What :func:`run_scenario` saw, as DataFrames."""

    name: str
    topology: pd.DataFrame
    reachability: pd.DataFrame
    mapping: pd.DataFrame
    relay_view: pd.DataFrame
    nat_tables: pd.DataFrame


def build(lab: Lab, name: str) -> None:
    """Add the hosts of scenario ``name`` to ``lab``."""
    if name not in SCENARIOS:
        raise errors.InvalidInput("lab scenario", name, "one of " + ", ".join(sorted(SCENARIOS)))
    for host, nat in SCENARIOS[name][1]:
        lab.add_host(host, nat=nat)


def run_scenario(
    name: str, *, say: Callable[[str], None] = lambda _: None, lab: Lab | None = None
) -> ScenarioReport:
    """Build scenario ``name`` and run the first experiment every student should see:

    1. who can dial whom directly (fresh TCP dials to each host's public address);
    2. which public address each NAT maps a UDP socket to, as seen by STUN servers on the
       public hosts (two servers when the scenario has two public hosts);
    3. every NATed host dials the relay: what the relay sees and what the NATs recorded.
    """
    own = lab is None
    lab = lab or Lab(name)
    try:
        lab.start()
        say(f"building scenario {name!r}: {SCENARIOS.get(name, ('?',))[0]}")
        build(lab, name)
        lab.wait_ready()
        topology = lab.hosts()
        say("trying direct dials between every pair of hosts ...")
        reach = lab.reachability(timeout=3)
        public = [h for h in lab._hosts.values() if h.is_public]
        natted = [h for h in lab._hosts.values() if not h.is_public]
        say("asking STUN servers on the public hosts which address each NAT maps to ...")
        mapping = pd.concat([lab.mapping(h, via=public) for h in natted], ignore_index=True)
        relay = public[0]
        say(f"every NATed host dials {relay.name} ...")
        for h in natted:
            h.node.connect(relay.multiaddr(), timeout=10)
        view = _relay_view(relay, {h.node.peer_id for h in natted})
        names = {h.node.peer_id: h.name for h in lab._hosts.values()}
        view.insert(0, "host", view["peer_id"].map(names))
        try:
            tables = pd.concat(
                [lab.nat_table(h).assign(host=h.name) for h in natted], ignore_index=True
            )
        except errors.LabUnavailable as exc:
            say(f"no NAT tables: {exc}")
            tables = pd.DataFrame(columns=[*NAT_TABLE_COLUMNS, "host"])
        return ScenarioReport(name, topology, reach, mapping, view, tables)
    finally:
        if own:
            lab.stop()


def _relay_view(relay: LabHost, expected: set[str], timeout: float = 10.0) -> pd.DataFrame:
    """The relay's connections once every peer in ``expected`` shows up in them.

    A dialer's ``connect`` returns when its side of the upgrade is done; the relay records
    the same connection a moment later, so the relay's table is read until it has caught up
    (or ``timeout`` passes, and the table is shown as it is).
    """
    wait_until(lambda: expected <= set(relay.node.connections()["peer_id"]), timeout, 0.1)
    # Only the NATed hosts' connections: an AutoNAT server's dial-back host (its own
    # identity) may be connected to the relay too.
    view = relay.node.connections()
    return view[view["peer_id"].isin(expected)].reset_index(drop=True)


def format_report(report: ScenarioReport) -> str:
    """The report as text for a terminal."""
    out = []
    topo = report.topology[["host", "nat", "mapping", "address", "public_ip", "peer_id"]].copy()
    topo["peer_id"] = topo["peer_id"].map(
        lambda p: f"{p[:8]}…{p[-6:]}" if isinstance(p, str) else p
    )
    out.append("Topology:\n" + topo.to_string(index=False))
    grid = report.reachability.pivot(index="dialer", columns="target", values="ok")
    grid = grid.map(lambda v: "-" if pd.isna(v) else ("yes" if v else "no"))
    out.append("Direct dial works? (rows dial columns)\n" + grid.to_string())
    out.append(
        "NAT mapping seen by STUN servers (same public port for every server = "
        "endpoint-independent; different = symmetric):\n"
        + report.mapping[["host", "server_host", "local", "mapped"]].to_string(index=False)
    )
    view = report.relay_view[["host", "remote_addr", "direction", "transport"]]
    out.append(
        "What the relay sees (each NATed host arrives from its router's address):\n"
        + view.to_string(index=False)
    )
    nat = report.nat_tables
    nat = nat[nat["translated"] & nat["destination"].str.endswith(":4001")]
    out.append(
        "NAT tables (conntrack), libp2p flows:\n"
        + nat[["host", "router", "proto", "state", "inside", "destination", "mapped_to"]].to_string(
            index=False
        )
    )
    return "\n\n".join(out)


@dataclass
class TraversalReport:
    """What :func:`run_traversal` saw: AutoNAT, the relay and DCUtR at work."""

    autonat: pd.DataFrame
    reservations: pd.DataFrame
    hole_punches: pd.DataFrame
    connections: pd.DataFrame


TRAVERSAL_DEFAULTS: dict[str, Any] = {"connection_timeout": 3.0, "autonat_min_agreement": 1}
"""Node settings of the traversal lab: short dials, and one AutoNAT server (the relay)."""

TRAVERSAL_HOSTS = [
    ("relay", NatType.NONE),
    ("alice", NatType.PORT_RESTRICTED),
    ("bob", NatType.PORT_RESTRICTED),
    ("carol", NatType.SYMMETRIC),
]


def run_traversal(
    *, say: Callable[[str], None] = lambda _: None, lab: Lab | None = None
) -> TraversalReport:
    """NAT traversal end to end: AutoNAT finds bob and carol private, they reserve on the
    relay, alice reaches both through it, DCUtR makes alice-bob direct and fails (with its
    reason) for carol behind a symmetric NAT."""

    own = lab is None
    lab = lab or Lab("traversal", node_defaults=TRAVERSAL_DEFAULTS)

    try:
        lab.start()
        say("building: a public relay; alice, bob behind home routers; carol behind symmetric NAT")
        hosts = {}
        for name, nat in TRAVERSAL_HOSTS:
            extra = {"enable_relay_server": True} if nat is NatType.NONE else {}
            hosts[name] = lab.add_host(name, nat=nat, **extra)
        lab.wait_ready()
        relay, alice, bob, carol = (hosts[n] for n, _ in TRAVERSAL_HOSTS)
        for h in (alice, bob, carol):
            h.node.connect(relay.multiaddr())
        say("AutoNAT: the relay dials each NATed peer back ...")
        if not wait_until(lambda: all(len(h.node.reservations()) == 1 for h in (bob, carol)), 40):
            raise errors.LabError("traversal", "NoReservation", "bob or carol did not reserve")
        autonat = pd.concat(
            [h.node.autonat_reports().assign(host=h.name) for h in (alice, bob, carol)],
            ignore_index=True,
        )
        reservations = pd.concat(
            [h.node.reservations().assign(host=h.name) for h in (bob, carol)], ignore_index=True
        )
        for target in (bob, carol):
            say(f"alice dials {target.name} through the relay; {target.name} starts DCUtR ...")
            alice.node.connect(circuit_addr(target, relay))
            wait_until(functools.partial(_punches_beyond, target, 0), 60)
        time.sleep(1.5)  # the relayed leg closes after a grace period
        punches = pd.concat(
            [h.node.hole_punches().assign(host=h.name) for h in (bob, carol)], ignore_index=True
        )
        names = {h.node.peer_id: h.name for h in hosts.values()}
        conns = alice.node.connections()
        conns.insert(0, "peer", conns["peer_id"].map(names))
        return TraversalReport(autonat, reservations, punches, conns)
    finally:
        if own:
            lab.stop()


def format_traversal(report: TraversalReport) -> str:
    """The traversal report as text for a terminal."""
    out = []
    auto = report.autonat[["host", "status", "nat_status_after", "status_text"]].copy()
    auto["status_text"] = auto["status_text"].str.slice(0, 70)
    out.append(
        "AutoNAT (the relay dialled each peer back on a fresh connection):\n"
        + auto.to_string(index=False)
    )
    res = report.reservations.copy()
    res["circuit"] = res["circuit_addrs"].map(lambda a: next((x for x in a if "/tcp/" in x), ""))
    out.append(
        "Relay reservations (made because AutoNAT said private):\n"
        + res[["host", "circuit", "voucher_valid", "limit_duration", "limit_data"]].to_string(
            index=False
        )
    )
    punch = report.hole_punches.copy()
    punch["reason"] = punch["reason"].map(lambda r: str(r).split("; ")[-1][:90])
    out.append(
        "DCUtR hole punches (driven by the peer alice reached through the relay):\n"
        + punch[
            ["host", "transport", "attempts", "rtt_ms", "time_to_direct_ms", "outcome", "reason"]
        ].to_string(index=False)
    )
    out.append(
        "alice's connections afterwards:\n"
        + report.connections[["peer", "remote_addr", "transport", "relayed"]].to_string(index=False)
    )
    return "\n\n".join(out)


PUNCH_TRIAL_COLUMNS = (
    "dialer",
    "target",
    "dialer_nat",
    "target_nat",
    "transport",
    "trial",
    "outcome",
    "success",
    "attempts",
    "time_to_direct_ms",
    "relayed_rtt_ms",
    "direct_rtt_ms",
    "reason",
)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` every ``step`` seconds until it holds or ``timeout`` passes; its
    last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def circuit_addr(target: LabHost, relay: LabHost, transport: str = "tcp") -> str:
    """``target``'s full circuit address on ``relay`` over ``transport``.

    Reserves again if the reservation was lost (and logs the events that say why), so a
    long experiment keeps running.
    """
    res = target.node.reservations()
    if res.empty:
        events = target.node.events()
        gone = events[events["kind"].str.startswith(("relay_", "disconnected"))].tail(3)
        logger.warning("%s lost its reservation:\n%s", target.name, gone.to_string())
        target.node.reserve(relay.multiaddr(transport))
        res = target.node.reservations()
    marker = "/tcp/" if transport == "tcp" else "/quic-v1/"
    addr = next(x for x in res.iloc[0]["circuit_addrs"] if marker in x)
    return f"{addr}/p2p/{target.node.peer_id}"


def _punches_beyond(host: LabHost, count: int) -> bool:
    return len(host.node.hole_punches()) > count


def _connected(a: LabHost, b: LabHost) -> bool:
    return bool((a.node.connections()["peer_id"] == b.node.peer_id).any())


def _relayed_to(a: LabHost, b: LabHost) -> bool:
    conns = a.node.connections()
    return any(bool(r) for r in conns[conns["peer_id"] == b.node.peer_id]["relayed"])


def punch_trials(
    dialer: LabHost,
    target: LabHost,
    relay: LabHost,
    *,
    trials: int = 3,
    transport: str = "tcp",
    measure_rtt: bool = False,
    show_progress: bool | None = None,
) -> pd.DataFrame:
    """Hole punching, ``trials`` times: ``dialer`` connects to ``target`` through
    ``target``'s reservation on ``relay``; ``target`` (the inbound side) drives DCUtR; the
    trial records its outcome, then closes everything between the two. With ``transport``
    ``"webrtc"`` the dialer signals private-to-private WebRTC over the relayed connection
    instead (both hosts need ``enable_webrtc`` and a STUN server; DCUtR best off).

    ``target`` must already hold a reservation on ``relay`` (AutoNAT makes one when it finds
    the target private). One row per trial (:data:`PUNCH_TRIAL_COLUMNS`):
    ``relayed_rtt_ms`` is the round trip DCUtR measured over the relayed connection; with
    ``measure_rtt``, ``direct_rtt_ms`` is the median of 5 pings after a success. A
    progress bar shows the trials (see :func:`ucsdk.progress.progress`; ``show_progress``).
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise errors.InvalidInput("trials", trials, "a positive integer")
    if transport not in ("tcp", "quic", "webrtc"):
        raise errors.InvalidInput("transport", transport, "'tcp', 'quic' or 'webrtc'")
    rows: list[dict[str, Any]] = []
    desc = f"{dialer.name} → {target.name} ({transport})"
    with progress(trials, desc, enabled=show_progress, unit="trial") as bar:
        for trial in range(1, trials + 1):
            _one_trial(dialer, target, relay, transport, measure_rtt, trial, rows)
            bar.update(1)
            bar.set_postfix_str(f"{sum(r['success'] for r in rows)} direct")
    return pd.DataFrame(rows, columns=list(PUNCH_TRIAL_COLUMNS))


def _one_trial(
    dialer: LabHost,
    target: LabHost,
    relay: LabHost,
    transport: str,
    measure_rtt: bool,
    trial: int,
    rows: list[dict[str, Any]],
) -> None:
    """One trial of :func:`punch_trials`, its row appended to ``rows``."""
    row: dict[str, Any] = {
        "dialer": dialer.name,
        "target": target.name,
        "dialer_nat": dialer.nat.value,
        "target_nat": target.nat.value,
        "transport": transport,
        "trial": trial,
        "outcome": None,
        "success": False,
        "attempts": 0,
        "time_to_direct_ms": float("nan"),
        "relayed_rtt_ms": float("nan"),
        "direct_rtt_ms": float("nan"),
        "reason": "",
    }
    rows.append(row)
    if _connected(dialer, target):  # start from no connection, or nothing is punched
        dialer.node.disconnect(target.node.peer_id)
        wait_until(lambda: not _connected(target, dialer), 5)
    if transport == "webrtc":
        _webrtc_trial(dialer, target, relay, row, measure_rtt)
        return
    before = len(target.node.hole_punches())
    try:
        dialer.node.connect(circuit_addr(target, relay, transport), timeout=30)
    except errors.UcsdkError as exc:
        row.update(outcome="no_relayed_connection", reason=str(exc)[:200])
        return
    if not wait_until(functools.partial(_punches_beyond, target, before), 60, 0.1):
        row.update(outcome="no_outcome", reason="no DCUtR outcome within 60 s")
        return
    punch = target.node.hole_punches().iloc[-1]
    ok = punch["outcome"] in ("success", "direct_dial")
    row.update(
        outcome=punch["outcome"],
        success=ok,
        attempts=int(punch["attempts"]),
        reason="" if ok else str(punch["reason"]).split(";")[-1].strip(),
    )
    if ok:
        row["time_to_direct_ms"] = float(punch["time_to_direct_ms"])
        rtt = punch["rtt_ms"]  # none for a plain dial that needed no punch
        row["relayed_rtt_ms"] = float(rtt) if isinstance(rtt, (int, float)) else float("nan")
        if measure_rtt:
            wait_until(lambda: not _relayed_to(dialer, target), 5)
            row["direct_rtt_ms"] = statistics.median(dialer.node.ping(target.node.peer_id, count=5))
    dialer.node.disconnect(target.node.peer_id)
    time.sleep(0.3)


def _webrtc_trial(
    dialer: LabHost, target: LabHost, relay: LabHost, row: dict[str, Any], measure_rtt: bool
) -> None:
    """One ``/webrtc`` trial: ``dialer`` (A) reaches ``target`` through the relay and
    signals WebRTC over it; success is a direct WebRTC connection (ICE through both NATs).
    ``time_to_direct_ms`` runs from the dial to that connection."""
    peer = target.node.peer_id
    addr = circuit_addr(target, relay).removesuffix(f"/p2p/{peer}") + f"/webrtc/p2p/{peer}"
    started = time.monotonic()
    try:
        dialer.node.connect(addr, timeout=45)
    except errors.UcsdkError as exc:
        row.update(outcome="failed", attempts=1, reason=str(exc).split(": ")[-1][:200])
    else:
        ok = _has_webrtc(dialer, target)
        row.update(outcome="success" if ok else "no_webrtc_connection", success=ok, attempts=1)
        if ok:
            row["time_to_direct_ms"] = (time.monotonic() - started) * 1000
            # The answering side adds its end once its own ICE check completes.
            wait_until(lambda: _has_webrtc(target, dialer), 10)
            if measure_rtt:
                row["direct_rtt_ms"] = statistics.median(dialer.node.ping(peer, count=5))
    dialer.node.disconnect(peer)
    wait_until(lambda: not _connected(target, dialer), 5)
    time.sleep(0.3)


def _has_webrtc(a: LabHost, b: LabHost) -> bool:
    conns = a.node.connections()
    return bool(((conns["peer_id"] == b.node.peer_id) & (conns["transport"] == "webrtc")).any())


def _general_reason(reason: str) -> str:
    """A failure reason without its attempt number and addresses, to count alike ones."""
    reason = re.sub(r"^attempt \d+: ", "", str(reason))
    return re.sub(r"\[?[0-9a-fA-F.:]+\]?:\d+\b", "<addr>", reason)


def success_rates(trials: pd.DataFrame) -> pd.DataFrame:
    """Per NAT pair and transport: trials, successes, success rate, the share of successes
    on the first attempt, median time to direct and the most common failure reason.

    Example:
        >>> frame = pd.DataFrame({"dialer_nat": ["a", "a"], "target_nat": ["b", "b"],
        ...     "transport": ["tcp", "tcp"], "success": [True, False], "attempts": [1, 3],
        ...     "time_to_direct_ms": [250.0, float("nan")],
        ...     "reason": ["", "attempt 3: no answer from 198.51.100.10:36317 within 3 s"]})
        >>> rates = success_rates(frame).iloc[0]
        >>> int(rates["trials"]), int(rates["successes"]), float(rates["success_rate"])
        (2, 1, 0.5)
        >>> rates["failure_reason"]
        'no answer from <addr> within 3 s'
    """
    rows = []
    for (dialer_nat, target_nat, transport), group in trials.groupby(
        ["dialer_nat", "target_nat", "transport"], sort=False
    ):
        won = group[group["success"]]
        reasons = group.loc[~group["success"], "reason"].map(_general_reason)
        rows.append(
            {
                "dialer_nat": dialer_nat,
                "target_nat": target_nat,
                "transport": transport,
                "trials": len(group),
                "successes": len(won),
                "success_rate": round(len(won) / len(group), 3),
                "first_attempt_share": (
                    round(float((won["attempts"] <= 1).mean()), 3) if len(won) else float("nan")
                ),
                "time_to_direct_ms_median": (
                    round(float(won["time_to_direct_ms"].median()), 1) if len(won) else float("nan")
                ),
                "failure_reason": reasons.mode().iloc[0] if len(reasons) else "",
            }
        )
    return pd.DataFrame(rows)
