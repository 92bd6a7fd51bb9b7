"""Hole-punching campaigns: a population of NATed hosts, many DCUtR attempts, one row each.

The field's reference is the DCUtR measurement campaign on IPFS (Trautwein, Ihle, Schubotz
and Gipp, "Challenging Tribal Knowledge: Large Scale Measurement Campaign on Decentralized
NAT Traversal", 2025, arXiv:2510.27500): 4.4 million attempts, about 70 % ± 7.1 % success
in the hole-punching stage, TCP and QUIC alike, 97.6 % of successes on the first attempt.
Its measurement client (punchr) sorts every attempt into six outcomes, which a campaign
here uses too (:data:`OUTCOMES`):

- ``NO_CONNECTION``: no relayed connection to the target came up;
- ``NO_STREAM``: the relayed connection came up but no DCUtR exchange followed in time;
- ``CONNECTION_REVERSED``: the target dialled the dialer directly (no punch was needed);
- ``CANCELLED``: the attempt was stopped (interrupted, or a node went away);
- ``FAILED``: DCUtR ran and every attempt of it failed;
- ``SUCCESS``: DCUtR ran and a direct connection came up.

:func:`campaign` draws a population from a NAT mix and link latencies, builds it in the
lab (one lab per transport, each node speaking only that transport, so every leg of an
attempt uses it) and runs ``trials`` attempts per transport between pairs of hosts in turn,
each through the target's reservation on a public relay. The target (the inbound side)
drives DCUtR, as the spec says. See ``docs/research.md``.

Example (as root):
    >>> import ucsdk.lab
    >>> result = ucsdk.lab.campaign(hosts=4, trials=8, latency_ms=(20, 80))  # doctest: +SKIP
    >>> result.attempts[["dialer_nat", "target_nat", "transport", "outcome"]]  # doctest: +SKIP
    >>> result.table()  # doctest: +SKIP
    >>> result.compare_with_field()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from ucsdk import errors
from ucsdk.lab._lab import LabHost
from ucsdk.lab.nat import NatType
from ucsdk.lab.scenarios import circuit_addr, wait_until
from ucsdk.lab.spec import CampaignSpec, HostSpec, LinkSpec, Scenario, ScenarioResult, versions
from ucsdk.progress import progress

OUTCOMES = ("NO_CONNECTION", "NO_STREAM", "CONNECTION_REVERSED", "CANCELLED", "FAILED", "SUCCESS")

#: The field's figures (the 2025 DCUtR campaign, arXiv:2510.27500), for comparison.
FIELD = {
    "success_rate": 0.70,
    "success_rate_spread": 0.071,
    "tcp_success_rate": 0.70,
    "quic_success_rate": 0.70,
    "first_attempt_share": 0.976,
}
FIELD_SOURCE = "DCUtR campaign on IPFS, 4.4 M attempts (Trautwein et al. 2025, arXiv:2510.27500)"

#: A NAT mix from published measurements: about 82 % of NATs tested supported UDP hole
#: punching, i.e. map endpoint-independently (Ford, Srisuresh and Kegel, "Peer-to-Peer
#: Communication Across Network Address Translators", USENIX ATC 2005); the rest map per
#: destination (symmetric). The endpoint-independent share is written as port_restricted,
#: the strictest filtering: DCUtR's simultaneous dials open any filter, so filtering does
#: not change its outcome.
FIELD_NAT_MIX: dict[str, float] = {"port_restricted": 0.82, "symmetric": 0.18}
FIELD_NAT_MIX_SOURCE = "Ford, Srisuresh and Kegel, USENIX ATC 2005: 82 % of NATs hole-punchable"

#: Round trip added per host link when none is given: an assumption (20 to 120 ms,
#: uniform), not a published distribution; say what you use when you compare.
DEFAULT_LATENCY_MS = (20.0, 120.0)

#: Node settings of a campaign's hosts: reservations are made by the campaign itself and
#: AutoNAT is off, so every node is ready as soon as it has its reservation; a short dial
#: timeout, as in bench/holepunch.py.
CAMPAIGN_DEFAULTS: dict[str, Any] = {
    "connection_timeout": 3.0,
    "enable_autonat": False,
    "relay_auto_reserve": False,
    "enable_dht_discovery": False,
    "enable_pubsub_discovery": False,
}
TRANSPORT_CONFIG: dict[str, dict[str, Any]] = {
    "tcp": {"transports": ["tcp"], "listen_addrs": ["/ip4/0.0.0.0/tcp/4001"]},
    "quic": {"transports": ["quic"], "listen_addrs": ["/ip4/0.0.0.0/udp/4001/quic-v1"]},
}

ATTEMPT_COLUMNS = (
    "attempt",
    "transport",
    "dialer",
    "target",
    "dialer_nat",
    "target_nat",
    "dialer_latency_ms",
    "target_latency_ms",
    "outcome",
    "dcutr_attempts",
    "first_attempt",
    "relayed_rtt_ms",
    "time_to_direct_ms",
    "node_outcome",
    "reason",
    "started",
    "duration_ms",
)


def _mix(nat_mix: Mapping[str, float] | None) -> dict[NatType, float]:
    mix = FIELD_NAT_MIX if nat_mix is None else nat_mix
    if not isinstance(mix, Mapping) or not mix:
        raise errors.InvalidInput("nat_mix", nat_mix, "a table of NAT type: share")
    out: dict[NatType, float] = {}
    for key, share in mix.items():
        kind = NatType.parse(key)
        if isinstance(share, bool) or not isinstance(share, int | float) or share < 0:
            raise errors.InvalidInput(f"nat_mix share of {key}", share, "a number >= 0")
        out[kind] = out.get(kind, 0.0) + float(share)
    total = sum(out.values())
    if total <= 0:
        raise errors.InvalidInput("nat_mix", nat_mix, "shares that add up to more than 0")
    return {k: v / total for k, v in out.items()}


def nat_counts(n: int, nat_mix: Mapping[str, float] | None = None) -> dict[NatType, int]:
    """How many of ``n`` hosts get each NAT type: shares rounded by largest remainder, so
    the counts add up to ``n`` and follow the mix as closely as whole hosts can.

    Example:
        >>> {k.value: v for k, v in nat_counts(10).items()}
        {'port_restricted': 8, 'symmetric': 2}
        >>> sum(nat_counts(7, {"cone": 1, "symmetric": 1, "double": 1}).values())
        7
    """
    mix = _mix(nat_mix)
    exact = {k: share * n for k, share in mix.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    left = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[:left]:
        counts[k] += 1
    return counts


def _latencies(value: Any, n: int, rng: random.Random, name: str) -> list[float | None]:
    if value is None:
        return [None] * n
    if isinstance(value, bool):
        raise errors.InvalidInput(name, value, "a number, a (low, high) range or a list")
    if isinstance(value, int | float):
        if value < 0:
            raise errors.InvalidInput(name, value, "a number >= 0")
        return [float(value)] * n
    if isinstance(value, tuple) and len(value) == 2:
        low, high = value
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value) or not (
            0 <= low <= high
        ):
            raise errors.InvalidInput(name, value, "a (low, high) range with 0 <= low <= high")
        return [round(rng.uniform(low, high), 1) for _ in range(n)]
    if isinstance(value, list) and value:
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise errors.InvalidInput(name, v, "numbers >= 0 to choose from")
        return [float(rng.choice(value)) for _ in range(n)]
    raise errors.InvalidInput(name, value, "a number, a (low, high) range or a list")


def population(
    hosts: int = 6,
    nat_mix: Mapping[str, float] | None = None,
    latency_ms: float | tuple[float, float] | list[float] | None = DEFAULT_LATENCY_MS,
    *,
    trials: int = 10,
    transports: Sequence[str] = ("tcp", "quic"),
    jitter_ms: float | tuple[float, float] | list[float] | None = None,
    loss_percent: float | None = None,
    seed: int = 0,
    timeout_s: float = 30.0,
    name: str = "campaign",
) -> Scenario:
    """The scenario of a campaign: a public relay and ``hosts`` NATed hosts ``p1`` …
    ``pN`` whose NAT types follow ``nat_mix`` (:func:`nat_counts`, shuffled with
    ``seed``) and whose links get ``latency_ms`` (a number for all, a ``(low, high)``
    range drawn per host, or a list to choose from). Every drawn value is written into the
    scenario, so saving it keeps the exact population.

    Example:
        >>> s = population(hosts=5, nat_mix={"cone": 3, "symmetric": 2}, seed=1)
        >>> sorted(h.nat.value for h in s.hosts)
        ['none', 'port_restricted', 'port_restricted', 'port_restricted', 'symmetric', 'symmetric']
        >>> s == population(hosts=5, nat_mix={"cone": 3, "symmetric": 2}, seed=1)
        True
    """
    if isinstance(hosts, bool) or not isinstance(hosts, int) or not 2 <= hosts <= 200:
        raise errors.InvalidInput("hosts", hosts, "an integer from 2 to 200")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise errors.InvalidInput("seed", seed, "an integer")
    rng = random.Random(seed)
    kinds = [k for k, count in nat_counts(hosts, nat_mix).items() for _ in range(count)]
    rng.shuffle(kinds)
    latencies = _latencies(latency_ms, hosts, rng, "latency_ms")
    jitters = _latencies(jitter_ms, hosts, rng, "jitter_ms")
    specs = [HostSpec("relay", NatType.NONE, config={"enable_relay_server": True})]
    for i, (kind, latency, jitter) in enumerate(zip(kinds, latencies, jitters, strict=True), 1):
        link = LinkSpec(latency_ms=latency, jitter_ms=jitter, loss_percent=loss_percent)
        specs.append(HostSpec(f"p{i}", kind, link=link))
    mix = ", ".join(f"{k.value} {share:.0%}" for k, share in _mix(nat_mix).items())
    return Scenario(
        name,
        hosts=tuple(specs),
        description=f"hole-punching campaign: {hosts} hosts ({mix}) and a public relay",
        seed=seed,
        campaign=CampaignSpec(
            trials=trials, transports=tuple(transports), relay="relay", timeout_s=timeout_s
        ),
    )


class CampaignResult(ScenarioResult):
    """A campaign's attempts (``attempts``: one row each, :data:`ATTEMPT_COLUMNS`), its
    scenario and the versions it ran with; ``save(path)`` keeps all three."""

    @property
    def attempts(self) -> pd.DataFrame:
        return self.frame

    def table(self) -> pd.DataFrame:
        """The success table: per NAT pair and transport, then all together."""
        return success_table(self.frame)

    def compare_with_field(self) -> pd.DataFrame:
        """This campaign's figures next to the field's (:data:`FIELD`)."""
        return compare_with_field(self.frame)


def _rate(won: int, tried: int) -> float:
    return round(won / tried, 3) if tried else float("nan")


def _summary(group: pd.DataFrame) -> dict[str, Any]:
    counts = {o: int((group["outcome"] == o).sum()) for o in OUTCOMES}
    won = group[group["outcome"] == "SUCCESS"]
    punched = counts["SUCCESS"] + counts["FAILED"]
    return {
        "attempts": len(group),
        **{o.lower(): counts[o] for o in OUTCOMES},
        "success_rate": _rate(counts["SUCCESS"], punched),
        "first_attempt_share": _rate(int(won["first_attempt"].sum()), len(won)),
        "time_to_direct_ms_median": (
            round(float(won["time_to_direct_ms"].median()), 1) if len(won) else float("nan")
        ),
    }


def success_table(attempts: pd.DataFrame) -> pd.DataFrame:
    """Per NAT pair and transport, and one ``all`` row: how many attempts ended each way,
    the success rate of the hole-punching stage (``SUCCESS / (SUCCESS + FAILED)``, as the
    field reports it: attempts where DCUtR ran), the first-attempt share of the successes
    and the median time to a direct connection.

    Example:
        >>> frame = pd.DataFrame({"dialer_nat": ["a", "a", "a"], "target_nat": ["b"] * 3,
        ...     "transport": ["tcp"] * 3, "outcome": ["SUCCESS", "FAILED", "NO_STREAM"],
        ...     "first_attempt": [True, False, False],
        ...     "time_to_direct_ms": [300.0, float("nan"), float("nan")]})
        >>> row = success_table(frame).iloc[0]
        >>> int(row["attempts"]), float(row["success_rate"]), float(row["first_attempt_share"])
        (3, 0.5, 1.0)
    """
    rows = []
    for (dialer_nat, target_nat, transport), group in attempts.groupby(
        ["dialer_nat", "target_nat", "transport"], sort=True
    ):
        rows.append(
            {
                "dialer_nat": dialer_nat,
                "target_nat": target_nat,
                "transport": transport,
                **_summary(group),
            }
        )
    if len(attempts):
        rows.append(
            {"dialer_nat": "all", "target_nat": "all", "transport": "all", **_summary(attempts)}
        )
    columns = [
        "dialer_nat",
        "target_nat",
        "transport",
        "attempts",
        *(o.lower() for o in OUTCOMES),
        "success_rate",
        "first_attempt_share",
        "time_to_direct_ms_median",
    ]
    return pd.DataFrame(rows, columns=columns)


def compare_with_field(attempts: pd.DataFrame) -> pd.DataFrame:
    """The lab's success rate (all, TCP, QUIC) and first-attempt share next to the field's,
    and the success rate the NAT mix alone predicts (pairs where neither side maps per
    destination), with the caveat for each row.

    Example:
        >>> frame = pd.DataFrame({"dialer_nat": ["port_restricted"] * 2,
        ...     "target_nat": ["port_restricted", "symmetric"], "transport": ["tcp", "tcp"],
        ...     "outcome": ["SUCCESS", "FAILED"], "first_attempt": [True, False],
        ...     "time_to_direct_ms": [300.0, float("nan")]})
        >>> table = compare_with_field(frame).set_index("metric")
        >>> float(table.loc["success rate (hole-punching stage)", "lab"])
        0.5
        >>> float(table.loc["success rate the NAT mix predicts", "lab"])
        0.5
    """

    def stage(frame: pd.DataFrame) -> tuple[float, int]:
        won = int((frame["outcome"] == "SUCCESS").sum())
        tried = won + int((frame["outcome"] == "FAILED").sum())
        return _rate(won, tried), tried

    rows = []
    overall, n = stage(attempts)
    field_low = FIELD["success_rate"] - FIELD["success_rate_spread"]
    field_high = FIELD["success_rate"] + FIELD["success_rate_spread"]
    rows.append(
        {
            "metric": "success rate (hole-punching stage)",
            "lab": overall,
            "lab_n": n,
            "field": f"{FIELD['success_rate']:.0%} ± {FIELD['success_rate_spread']:.1%}",
            "within_field_range": bool(field_low <= overall <= field_high) if n else None,
            "caveat": "the lab's NATs are Linux conntrack; the field's are every router and "
            "carrier NAT of 85,000 networks",
        }
    )
    for transport in ("tcp", "quic"):
        part = attempts[attempts["transport"] == transport]
        rate, n = stage(part)
        rows.append(
            {
                "metric": f"success rate over {transport.upper()}",
                "lab": rate,
                "lab_n": n,
                "field": f"~{FIELD[f'{transport}_success_rate']:.0%}",
                "within_field_range": bool(field_low <= rate <= field_high) if n else None,
                "caveat": "the field found TCP and QUIC statistically indistinguishable",
            }
        )
    won = attempts[attempts["outcome"] == "SUCCESS"]
    share = _rate(int(won["first_attempt"].sum()), len(won))
    rows.append(
        {
            "metric": "successes on the first attempt",
            "lab": share,
            "lab_n": len(won),
            "field": f"{FIELD['first_attempt_share']:.1%}",
            "within_field_range": None,
            "caveat": "a lab link has no cross traffic: its RTT estimate is exact",
        }
    )
    ran = attempts[attempts["outcome"].isin(("SUCCESS", "FAILED"))]
    eim = ~ran["dialer_nat"].eq(NatType.SYMMETRIC.value) & ~ran["target_nat"].eq(
        NatType.SYMMETRIC.value
    )
    rows.append(
        {
            "metric": "success rate the NAT mix predicts",
            "lab": _rate(int(eim.sum()), len(ran)),
            "lab_n": len(ran),
            "field": "",
            "within_field_range": None,
            "caveat": "pairs where neither side maps per destination; the gap to the "
            "measured rate is what timing, loss and latency cost",
        }
    )
    return pd.DataFrame(
        rows, columns=["metric", "lab", "lab_n", "field", "within_field_range", "caveat"]
    )


# ------------------------------------------------------------------ running
def _connected(a: LabHost, b: LabHost) -> bool:
    return bool((a.node.connections()["peer_id"] == b.node.peer_id).any())


def _punches(host: LabHost) -> int:
    return len(host.node.hole_punches())


def _classify(node_outcome: str, reason: str) -> str:
    """punchr's outcome for a DCUtR result recorded by the initiating node.

    Example:
        >>> _classify("direct_dial", ""), _classify("error", "could not open the DCUtR stream")
        ('CONNECTION_REVERSED', 'NO_STREAM')
    """
    if node_outcome == "success":
        return "SUCCESS"
    if node_outcome == "direct_dial":
        return "CONNECTION_REVERSED"
    if node_outcome == "error" and ("DCUtR stream" in reason or "no relayed" in reason):
        return "NO_STREAM"
    return "FAILED"


def _attempt(
    number: int,
    transport: str,
    dialer: LabHost,
    target: LabHost,
    relay: LabHost,
    timeout_s: float,
    latency: Mapping[str, float | None],
) -> dict[str, Any]:
    """One attempt: ``dialer`` connects to ``target`` through ``relay``; ``target``
    drives DCUtR; the row says how it ended. Everything between the two is closed after."""
    row: dict[str, Any] = {
        "attempt": number,
        "transport": transport,
        "dialer": dialer.name,
        "target": target.name,
        "dialer_nat": dialer.nat.value,
        "target_nat": target.nat.value,
        "dialer_latency_ms": latency.get(dialer.name),
        "target_latency_ms": latency.get(target.name),
        "outcome": "CANCELLED",
        "dcutr_attempts": 0,
        "first_attempt": False,
        "relayed_rtt_ms": float("nan"),
        "time_to_direct_ms": float("nan"),
        "node_outcome": "",
        "reason": "",
        "started": datetime.datetime.now(datetime.UTC),
        "duration_ms": float("nan"),
    }
    started = time.monotonic()
    try:
        if _connected(dialer, target):
            dialer.node.disconnect(target.node.peer_id)
            wait_until(lambda: not _connected(target, dialer), 5)
        before = _punches(target)
        try:
            dialer.node.connect(circuit_addr(target, relay, transport), timeout=timeout_s)
        except errors.UcsdkError as exc:
            if not dialer.node.running or not target.node.running:
                raise
            row.update(outcome="NO_CONNECTION", reason=str(exc)[:200])
            return row
        if not wait_until(
            functools.partial(lambda n: _punches(target) > n, before), timeout_s, 0.1
        ):
            row.update(outcome="NO_STREAM", reason=f"no DCUtR outcome within {timeout_s:g} s")
            return row
        punch = target.node.hole_punches().iloc[-1]
        node_outcome, reason = str(punch["outcome"]), str(punch["reason"])
        outcome = _classify(node_outcome, reason)
        attempts = int(punch["attempts"])
        rtt = punch["rtt_ms"]
        row.update(
            outcome=outcome,
            node_outcome=node_outcome,
            reason="" if outcome == "SUCCESS" else reason[:200],
            dcutr_attempts=attempts,
            first_attempt=outcome == "SUCCESS" and attempts <= 1,
            relayed_rtt_ms=float(rtt) if isinstance(rtt, int | float) else float("nan"),
        )
        if outcome in ("SUCCESS", "CONNECTION_REVERSED"):
            row["time_to_direct_ms"] = float(punch["time_to_direct_ms"])
        return row
    except KeyboardInterrupt:
        row.update(outcome="CANCELLED", reason="interrupted")
        raise
    except errors.UcsdkError as exc:
        row.update(outcome="CANCELLED", reason=f"a node went away: {exc}"[:200])
        return row
    finally:
        row["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        with contextlib.suppress(errors.UcsdkError):
            if dialer.node.running and target.node.running and _connected(dialer, target):
                dialer.node.disconnect(target.node.peer_id)
                wait_until(lambda: not _connected(target, dialer), 5)


def _pairs(scenario: Scenario, spec: CampaignSpec, rng: random.Random) -> list[tuple[str, str]]:
    if spec.pairs:
        return list(spec.pairs)
    names = [
        h.name for h in scenario.hosts if h.node and h.name != spec.relay and h.nat != NatType.NONE
    ]
    if len(names) < 2:
        raise errors.InvalidInput(
            "campaign hosts", names, "at least two NATed hosts with nodes besides the relay"
        )
    pairs = [(a, b) for a in names for b in names if a != b]
    rng.shuffle(pairs)
    return pairs


def _run_transport(
    scenario: Scenario,
    spec: CampaignSpec,
    transport: str,
    pairs: list[tuple[str, str]],
    rows: list[dict[str, Any]],
    *,
    show_progress: bool | None,
    keep_logs: bool,
) -> None:
    defaults = {**CAMPAIGN_DEFAULTS, **scenario.node_defaults, **TRANSPORT_CONFIG[transport]}
    latency = {h.name: h.link.latency_ms for h in scenario.hosts}
    with scenario.lab(keep_logs=keep_logs, node_defaults=defaults) as lab:
        lab.wait_ready(show_progress=show_progress)
        relay = lab.host(spec.relay)
        targets = sorted({b for _, b in pairs})
        dialers = sorted({a for a, _ in pairs} - set(targets))

        def join(name: str) -> None:
            host = lab.host(name)
            address = relay.multiaddr(transport)
            if name in targets:
                host.node.reserve(address)
            else:
                host.node.connect(address)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(join, targets + dialers))
        desc = f"campaign {scenario.name} ({transport})"
        with progress(spec.trials, desc, enabled=show_progress, unit="attempt") as bar:
            for k in range(spec.trials):
                a, b = pairs[k % len(pairs)]
                rows.append(
                    _attempt(
                        len(rows) + 1,
                        transport,
                        lab.host(a),
                        lab.host(b),
                        relay,
                        spec.timeout_s,
                        latency,
                    )
                )
                bar.update(1)
                bar.set_postfix_str(f"{sum(r['outcome'] == 'SUCCESS' for r in rows)} success")


def run_campaign(
    scenario: Scenario, *, show_progress: bool | None = None, keep_logs: bool = False
) -> CampaignResult:
    """Run ``scenario``'s campaign (see :class:`~ucsdk.lab.spec.CampaignSpec`): per
    transport, build the lab with every node speaking only that transport, reserve each
    target on the relay, and make ``trials`` attempts through pairs of hosts in turn.

    Interrupting (Ctrl-C, a notebook's stop) ends the campaign after marking the running
    attempt ``CANCELLED``; the attempts so far are returned and the labs are removed.
    """
    spec = scenario.campaign
    if spec is None:
        raise errors.InvalidInput("scenario campaign", None, "a [campaign] table")
    relay = scenario.host(spec.relay)
    if relay.nat is not NatType.NONE or not relay.config.get("enable_relay_server"):
        raise errors.InvalidInput(
            "campaign relay", spec.relay, "a public host with enable_relay_server = true"
        )
    rng = random.Random(scenario.seed)
    pairs = _pairs(scenario, spec, rng)
    rows: list[dict[str, Any]] = []
    with contextlib.suppress(KeyboardInterrupt):
        for transport in spec.transports:
            _run_transport(
                scenario,
                spec,
                transport,
                pairs,
                rows,
                show_progress=show_progress,
                keep_logs=keep_logs,
            )
    frame = pd.DataFrame(rows, columns=list(ATTEMPT_COLUMNS))
    return CampaignResult(scenario, frame, versions())


def run(
    scenario: Scenario | str | Path,
    out: str | Path | None = None,
    *,
    show_progress: bool | None = None,
    keep_logs: bool = False,
) -> ScenarioResult:
    """Run a scenario (or a scenario file): build its lab, run its campaign (a
    :class:`CampaignResult`) or, without one, a direct-dial reachability table over every
    pair of hosts; stop the lab; save the results to ``out`` (``.parquet`` or ``.csv``,
    with the scenario and versions inside) when given. ``ucsdk lab run FILE`` calls it.
    """
    if not isinstance(scenario, Scenario):
        scenario = Scenario.load(scenario)
    result: ScenarioResult
    if scenario.campaign is not None:
        result = run_campaign(scenario, show_progress=show_progress, keep_logs=keep_logs)
    else:
        with scenario.lab(keep_logs=keep_logs) as lab:
            lab.wait_ready(show_progress=show_progress)
            result = ScenarioResult(scenario, lab.reachability(), versions())
    if out is not None:
        result.save(out)
    return result


def campaign(
    hosts: int = 6,
    nat_mix: Mapping[str, float] | None = None,
    latency_ms: float | tuple[float, float] | list[float] | None = DEFAULT_LATENCY_MS,
    trials: int = 10,
    *,
    transports: Sequence[str] = ("tcp", "quic"),
    jitter_ms: float | tuple[float, float] | list[float] | None = None,
    loss_percent: float | None = None,
    seed: int = 0,
    timeout_s: float = 30.0,
    show_progress: bool | None = None,
    keep_logs: bool = False,
) -> CampaignResult:
    """A punchr-style measurement over a lab population: :func:`population` builds the
    scenario (``hosts`` NATed hosts drawn from ``nat_mix``, default :data:`FIELD_NAT_MIX`,
    with links of ``latency_ms``), :func:`run_campaign` makes ``trials`` attempts per
    transport. ``result.attempts`` has one row per attempt, ``result.table()`` the success
    table, ``result.compare_with_field()`` the field's figures beside the lab's, and
    ``result.save("x.parquet")`` keeps it all with the scenario.
    """
    scenario = population(
        hosts,
        nat_mix,
        latency_ms,
        trials=trials,
        transports=transports,
        jitter_ms=jitter_ms,
        loss_percent=loss_percent,
        seed=seed,
        timeout_s=timeout_s,
    )
    return run_campaign(scenario, show_progress=show_progress, keep_logs=keep_logs)


__all__ = [
    "ATTEMPT_COLUMNS",
    "CAMPAIGN_DEFAULTS",
    "FIELD",
    "FIELD_NAT_MIX",
    "OUTCOMES",
    "CampaignResult",
    "campaign",
    "compare_with_field",
    "nat_counts",
    "population",
    "run",
    "run_campaign",
    "success_table",
]
