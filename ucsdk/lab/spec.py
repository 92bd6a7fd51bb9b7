"""Scenario files: a whole lab written down in TOML or YAML, run again the same way.

A :class:`Scenario` names the hosts, the NAT in front of each, each host's link (latency,
jitter, loss, bandwidth) and node settings, and optionally a hole-punching campaign to run
on them. It loads from and saves to TOML or YAML, builds itself in a :class:`~ucsdk.lab.Lab`,
and its results are saved as Parquet or CSV with the scenario and the software versions
inside the file, so a table in a paper or a class can be traced to what made it.

A scenario file (TOML)::

    name = "two-homes"
    description = "two peers behind home routers, 40 ms apart, and a public relay"
    seed = 1

    [node_defaults]
    connection_timeout = 3.0

    [[hosts]]
    name = "relay"
    nat = "none"
    config = { enable_relay_server = true }

    [[hosts]]
    name = "alice"
    nat = "port_restricted"
    link = { latency_ms = 20.0 }

    [[hosts]]
    name = "bob"
    nat = "port_restricted"
    link = { latency_ms = 20.0, loss_percent = 1.0 }

    [campaign]
    trials = 10
    transports = ["tcp", "quic"]

Run it with ``ucsdk lab run two-homes.toml --out results.parquet``, or from Python with
:func:`ucsdk.lab.run` (``ucsdk.lab.run("two-homes.toml", out="results.parquet")``).

Example:
    >>> import ucsdk.lab
    >>> text = '''
    ... name = "tiny"
    ... [[hosts]]
    ... name = "relay"
    ... nat = "none"
    ... [[hosts]]
    ... name = "a"
    ... nat = "cone"
    ... link = { latency_ms = 40 }
    ... '''
    >>> scenario = Scenario.loads(text, "toml")
    >>> [(h.name, h.nat.value, h.link.latency_ms) for h in scenario.hosts]
    [('relay', 'none', None), ('a', 'port_restricted', 40.0)]
    >>> Scenario.loads(scenario.dumps("yaml"), "yaml") == scenario
    True
    >>> result = ucsdk.lab.run(scenario, out="results.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import tomllib

from ucsdk import errors
from ucsdk.lab.nat import NatType

if TYPE_CHECKING:
    from ucsdk.lab._lab import Lab

FORMATS = ("toml", "yaml")
RESULT_FORMATS = ("parquet", "csv")
#: Keys of a host's ``link`` table: what :meth:`ucsdk.lab.Lab.impair` takes.
LINK_KEYS = ("latency_ms", "jitter_ms", "loss_percent", "bandwidth_mbps")
#: NAT options of a host, passed to :meth:`ucsdk.lab.Lab.add_host`.
NAT_OPTION_KEYS = ("port_preservation", "hairpinning", "udp_timeout_s")
_HOST_KEYS = {"name", "nat", "node", "link", "config", *NAT_OPTION_KEYS}
_TOP_KEYS = {"name", "description", "seed", "node_defaults", "hosts", "campaign"}
_CAMPAIGN_KEYS = {"trials", "transports", "relay", "timeout_s", "pairs"}
_TRANSPORTS = ("tcp", "quic")
#: Where the scenario and the versions live in a result file (Parquet key-value metadata;
#: ``# key: json`` lines before a CSV's header).
META_SCENARIO = "ucsdk.scenario"
META_VERSIONS = "ucsdk.versions"


def _number(name: str, value: Any, low: float = 0.0, high: float | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.InvalidInput(name, value, "a number")
    if value < low or (high is not None and value > high):
        limit = f"from {low:g} to {high:g}" if high is not None else f">= {low:g}"
        raise errors.InvalidInput(name, value, f"a number {limit}")
    return float(value)


def _plain(name: str, value: Any) -> Any:
    """``value`` if it is plain data a file can hold (no None inside: TOML has no null)."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(name, v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(f"{name}.{k}", v) for k, v in value.items()}
    raise errors.InvalidInput(name, value, "plain data: text, numbers, booleans, lists, tables")


def _unknown(where: str, data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise errors.InvalidInput(f"{where} key", extra[0], "one of " + ", ".join(sorted(allowed)))


@dataclass(frozen=True)
class LinkSpec:
    """A host's link: ``latency_ms`` of round trip added, ``jitter_ms``, ``loss_percent``
    and ``bandwidth_mbps`` (see :meth:`ucsdk.lab.Lab.impair`); ``None`` is unimpaired."""

    latency_ms: float | None = None
    jitter_ms: float | None = None
    loss_percent: float | None = None
    bandwidth_mbps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "latency_ms", _number("latency_ms", self.latency_ms))
        object.__setattr__(self, "jitter_ms", _number("jitter_ms", self.jitter_ms))
        object.__setattr__(self, "loss_percent", _number("loss_percent", self.loss_percent, 0, 100))
        bandwidth = _number("bandwidth_mbps", self.bandwidth_mbps)
        if bandwidth == 0:
            raise errors.InvalidInput("bandwidth_mbps", self.bandwidth_mbps, "a number > 0")
        object.__setattr__(self, "bandwidth_mbps", bandwidth)

    @property
    def impaired(self) -> bool:
        return any(getattr(self, k) for k in LINK_KEYS)

    def to_dict(self) -> dict[str, float]:
        return {k: v for k in LINK_KEYS if (v := getattr(self, k)) is not None}


@dataclass(frozen=True)
class HostSpec:
    """One host of a scenario: its name, NAT, NAT options, link and node settings."""

    name: str
    nat: NatType = NatType.PORT_RESTRICTED
    link: LinkSpec = field(default_factory=LinkSpec)
    config: Mapping[str, Any] = field(default_factory=dict)
    node: bool = True
    port_preservation: bool | None = None
    hairpinning: bool | None = None
    udp_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise errors.InvalidInput("scenario host name", self.name, "a non-empty string")
        object.__setattr__(self, "nat", NatType.parse(self.nat))
        if not isinstance(self.node, bool):
            raise errors.InvalidInput(f"host {self.name} node", self.node, "true or false")
        for key in ("port_preservation", "hairpinning"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, bool):
                raise errors.InvalidInput(f"host {self.name} {key}", value, "true or false")
        object.__setattr__(
            self, "udp_timeout_s", _number(f"host {self.name} udp_timeout_s", self.udp_timeout_s)
        )
        if not isinstance(self.config, Mapping):
            raise errors.InvalidInput(f"host {self.name} config", self.config, "a table")
        object.__setattr__(self, "config", dict(_plain(f"host {self.name} config", self.config)))

    def nat_options(self) -> dict[str, Any]:
        return {k: v for k in NAT_OPTION_KEYS if (v := getattr(self, k)) is not None}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "nat": self.nat.value}
        if not self.node:
            out["node"] = False
        out.update(self.nat_options())
        if self.link.to_dict():
            out["link"] = self.link.to_dict()
        if self.config:
            out["config"] = dict(self.config)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostSpec:
        if not isinstance(data, Mapping):
            raise errors.InvalidInput("scenario host", data, "a table with at least a name")
        _unknown(f"host {data.get('name', '?')}", data, _HOST_KEYS)
        link = data.get("link") or {}
        if not isinstance(link, Mapping):
            raise errors.InvalidInput("link", link, "a table of " + ", ".join(LINK_KEYS))
        _unknown(f"host {data.get('name', '?')} link", link, LINK_KEYS)
        return cls(
            name=data.get("name", ""),
            nat=data.get("nat", NatType.PORT_RESTRICTED),
            link=LinkSpec(**link),
            config=data.get("config") or {},
            node=data.get("node", True),
            **{k: data[k] for k in NAT_OPTION_KEYS if k in data},
        )


@dataclass(frozen=True)
class CampaignSpec:
    """A hole-punching campaign to run on a scenario's hosts (see
    :func:`ucsdk.lab.campaigns.run_campaign`): ``trials`` per transport, hosts paired in turn
    (``pairs``: explicit ``[dialer, target]`` names, else every ordered pair of NATed
    hosts), each trial through ``relay``, waiting at most ``timeout_s`` for its outcome."""

    trials: int = 10
    transports: tuple[str, ...] = ("tcp",)
    relay: str = "relay"
    timeout_s: float = 30.0
    pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise errors.InvalidInput("campaign trials", self.trials, "a positive integer")
        transports = (self.transports,) if isinstance(self.transports, str) else self.transports
        if not transports or any(t not in _TRANSPORTS for t in transports):
            raise errors.InvalidInput(
                "campaign transports", self.transports, "a list of 'tcp' and/or 'quic'"
            )
        object.__setattr__(self, "transports", tuple(dict.fromkeys(transports)))
        timeout = _number("campaign timeout_s", self.timeout_s)
        if not timeout:
            raise errors.InvalidInput("campaign timeout_s", self.timeout_s, "a number > 0")
        object.__setattr__(self, "timeout_s", timeout)
        pairs = []
        for pair in self.pairs:
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not all(isinstance(p, str) for p in pair)
                or pair[0] == pair[1]
            ):
                raise errors.InvalidInput("campaign pair", pair, "[dialer, target]: two host names")
            pairs.append((pair[0], pair[1]))
        object.__setattr__(self, "pairs", tuple(pairs))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trials": self.trials,
            "transports": list(self.transports),
            "relay": self.relay,
            "timeout_s": self.timeout_s,
        }
        if self.pairs:
            out["pairs"] = [list(p) for p in self.pairs]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CampaignSpec:
        if not isinstance(data, Mapping):
            raise errors.InvalidInput("campaign", data, "a table")
        _unknown("campaign", data, _CAMPAIGN_KEYS)
        kwargs = dict(data)
        if "transports" in kwargs:
            value = kwargs["transports"]
            kwargs["transports"] = (value,) if isinstance(value, str) else tuple(value)
        if "pairs" in kwargs:
            kwargs["pairs"] = tuple(tuple(p) if isinstance(p, list) else p for p in kwargs["pairs"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Scenario:
    """A lab written down: hosts, NATs, links, node settings and an optional campaign.

    Example:
        >>> s = Scenario("pair", hosts=[HostSpec("relay", "none"), HostSpec("a", "symmetric")])
        >>> print(s.dumps("toml").splitlines()[0])
        name = "pair"
        >>> s.host("a").nat.value
        'symmetric'
    """

    name: str
    hosts: tuple[HostSpec, ...] = ()
    description: str = ""
    seed: int = 0
    node_defaults: Mapping[str, Any] = field(default_factory=dict)
    campaign: CampaignSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise errors.InvalidInput("scenario name", self.name, "a non-empty string")
        hosts = tuple(self.hosts)
        if not all(isinstance(h, HostSpec) for h in hosts):
            raise errors.InvalidInput("scenario hosts", self.hosts, "HostSpec objects")
        names = [h.name for h in hosts]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise errors.InvalidInput("scenario host name", dup, "each name once")
        object.__setattr__(self, "hosts", hosts)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise errors.InvalidInput("scenario seed", self.seed, "an integer")
        if not isinstance(self.node_defaults, Mapping):
            raise errors.InvalidInput("node_defaults", self.node_defaults, "a table")
        object.__setattr__(self, "node_defaults", dict(_plain("node_defaults", self.node_defaults)))
        if self.campaign is not None:
            known = set(names)
            if self.campaign.relay not in known:
                raise errors.InvalidInput(
                    "campaign relay", self.campaign.relay, f"a host of the scenario {sorted(known)}"
                )
            for pair in self.campaign.pairs:
                for name in pair:
                    if name not in known:
                        raise errors.InvalidInput(
                            "campaign pair host", name, f"a host of the scenario {sorted(known)}"
                        )

    # ------------------------------------------------------------ access
    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise errors.InvalidInput("scenario host", name, f"one of {[h.name for h in self.hosts]}")

    def replace(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` (dataclass fields)."""
        return dataclasses.replace(self, **changes)

    def hosts_frame(self) -> pd.DataFrame:
        """One row per host: name, NAT, NAT options and link."""
        rows = []
        for h in self.hosts:
            rows.append(
                {
                    "host": h.name,
                    "nat": h.nat.value,
                    **{k: getattr(h, k) for k in NAT_OPTION_KEYS},
                    **{k: getattr(h.link, k) for k in LINK_KEYS},
                    "node": h.node,
                }
            )
        return pd.DataFrame(rows, columns=["host", "nat", *NAT_OPTION_KEYS, *LINK_KEYS, "node"])

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["seed"] = self.seed
        if self.node_defaults:
            out["node_defaults"] = dict(self.node_defaults)
        out["hosts"] = [h.to_dict() for h in self.hosts]
        if self.campaign is not None:
            out["campaign"] = self.campaign.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        if not isinstance(data, Mapping):
            raise errors.InvalidInput("scenario", data, "a table with a name and hosts")
        _unknown("scenario", data, _TOP_KEYS)
        hosts = data.get("hosts") or []
        if not isinstance(hosts, list):
            raise errors.InvalidInput("scenario hosts", hosts, "a list of host tables")
        campaign = data.get("campaign")
        return cls(
            name=data.get("name", ""),
            description=data.get("description", ""),
            seed=data.get("seed", 0),
            node_defaults=data.get("node_defaults") or {},
            hosts=tuple(HostSpec.from_dict(h) for h in hosts),
            campaign=None if campaign is None else CampaignSpec.from_dict(campaign),
        )

    def dumps(self, fmt: str = "toml") -> str:
        """The scenario as TOML or YAML text."""
        data = self.to_dict()
        if fmt == "toml":
            import tomli_w

            return tomli_w.dumps(data)
        if fmt == "yaml":
            import yaml

            return str(yaml.safe_dump(data, sort_keys=False))
        raise errors.InvalidInput("scenario format", fmt, "'toml' or 'yaml'")

    @classmethod
    def loads(cls, text: str, fmt: str = "toml") -> Scenario:
        """A scenario from TOML or YAML text (bad syntax or keys: :class:`InvalidInput`)."""
        if fmt == "toml":
            try:
                data: Any = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise errors.InvalidInput("scenario TOML", str(exc), "valid TOML") from None
        elif fmt == "yaml":
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise errors.InvalidInput("scenario YAML", str(exc), "valid YAML") from None
        else:
            raise errors.InvalidInput("scenario format", fmt, "'toml' or 'yaml'")
        return cls.from_dict(data)

    @staticmethod
    def _format_of(path: Path) -> str:
        suffix = path.suffix.lower()
        if suffix == ".toml":
            return "toml"
        if suffix in (".yaml", ".yml"):
            return "yaml"
        raise errors.InvalidInput("scenario file", str(path), "a .toml, .yaml or .yml file")

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a scenario file (``.toml``, ``.yaml`` or ``.yml``)."""
        path = Path(path)
        fmt = cls._format_of(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.InvalidInput(
                "scenario file", str(path), f"a readable file ({exc})"
            ) from None
        return cls.loads(text, fmt)

    def save(self, path: str | Path) -> Path:
        """Write the scenario; the format follows the file's suffix."""
        path = Path(path)
        path.write_text(self.dumps(self._format_of(path)), encoding="utf-8")
        return path

    # ------------------------------------------------------------ running
    def build(self, lab: Lab) -> None:
        """Add the scenario's hosts to ``lab`` (nodes start in the background)."""
        for h in self.hosts:
            link: dict[str, Any] = dict(h.link.to_dict())
            lab.add_host(
                h.name,
                nat=h.nat,
                node=h.node,
                **h.nat_options(),
                **link,
                **dict(h.config),
            )

    def lab(
        self, *, keep_logs: bool = False, node_defaults: Mapping[str, Any] | None = None
    ) -> Lab:
        """A new, built :class:`~ucsdk.lab.Lab` of this scenario (stop it when done, or use
        it in a ``with`` block)."""
        from ucsdk.lab._lab import Lab

        lab = Lab(
            self.name,
            node_defaults={**self.node_defaults, **dict(node_defaults or {})},
            keep_logs=keep_logs,
        )
        try:
            lab.start()
            self.build(lab)
        except BaseException:
            lab.stop()
            raise
        return lab


@dataclass
class ScenarioResult:
    """What a scenario produced: its ``frame`` of results, the scenario, the versions
    (:func:`ucsdk.lab.run`; a campaign's is a :class:`ucsdk.lab.CampaignResult`)."""

    scenario: Scenario
    frame: pd.DataFrame
    versions: dict[str, str]

    def save(self, path: str | Path) -> Path:
        """The frame as Parquet or CSV with the scenario and versions embedded."""
        return save_results(self.frame, path, self.scenario, self.versions)


def versions() -> dict[str, str]:
    """The software a result was made with: ucsdk, py-libp2p, Python, pandas, the kernel,
    and when.

    Example:
        >>> sorted(versions())[:3]
        ['created', 'kernel', 'libp2p']
    """

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {
        "ucsdk": dist("ucsdk"),
        "libp2p": dist("libp2p"),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "kernel": platform.release(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _result_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in RESULT_FORMATS:
        raise errors.InvalidInput("results file", str(path), "a .parquet or .csv file")
    return suffix


def save_results(
    frame: pd.DataFrame,
    path: str | Path,
    scenario: Scenario,
    versions_: Mapping[str, str] | None = None,
) -> Path:
    """Write ``frame`` to ``path`` (``.parquet`` or ``.csv``) with ``scenario`` and the
    versions embedded: Parquet key-value metadata, or ``# key: json`` lines above a CSV's
    header. :func:`load_results` reads all three back.

    Example:
        >>> import tempfile, os
        >>> s = Scenario("x", hosts=[HostSpec("a")])
        >>> path = os.path.join(tempfile.mkdtemp(), "r.csv")
        >>> _ = save_results(pd.DataFrame({"ok": [True, False]}), path, s)
        >>> frame, again, info = load_results(path)
        >>> list(frame["ok"]), again == s, "ucsdk" in info
        ([True, False], True, True)
    """
    path = Path(path)
    fmt = _result_format(path)
    meta = {
        META_SCENARIO: json.dumps(scenario.to_dict(), sort_keys=True),
        META_VERSIONS: json.dumps(dict(versions_ or versions()), sort_keys=True),
    }
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(_storable(frame), preserve_index=False)
        merged = {
            **(table.schema.metadata or {}),
            **{k.encode(): v.encode() for k, v in meta.items()},
        }
        pq.write_table(table.replace_schema_metadata(merged), path)
    else:
        buffer = io.StringIO()
        for key, value in meta.items():
            buffer.write(f"# {key}: {value}\n")
        _storable(frame).to_csv(buffer, index=False)
        path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists and other objects as JSON text, so Parquet and CSV store every column."""
    out = frame.copy()
    for column in out.columns:
        if (
            out[column].dtype == object
            and out[column].map(lambda v: isinstance(v, list | tuple | dict)).any()
        ):
            out[column] = out[column].map(
                lambda v: json.dumps(v) if isinstance(v, list | tuple | dict) else v
            )
    return out


def load_results(path: str | Path) -> tuple[pd.DataFrame, Scenario, dict[str, str]]:
    """The frame, scenario and versions that :func:`save_results` wrote to ``path``."""
    path = Path(path)
    fmt = _result_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        frame = table.to_pandas()
    else:
        text = path.read_text(encoding="utf-8")
        raw = {}
        lines = text.splitlines(keepends=True)
        skip = 0
        for line in lines:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            raw[key] = value.strip()
            skip += 1
        frame = pd.read_csv(io.StringIO("".join(lines[skip:])))
    if META_SCENARIO not in raw:
        raise errors.InvalidInput("results file", str(path), "a file written by save_results")
    scenario = Scenario.from_dict(json.loads(raw[META_SCENARIO]))
    return frame, scenario, json.loads(raw.get(META_VERSIONS, "{}"))
