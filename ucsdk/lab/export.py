"""Scenarios for engines that reach past one machine: Mininet, Containernet and Shadow.

The lab runs one interpreter per host on one machine (about 100 hosts on two cores). For
bigger populations, :func:`export` writes a scenario for an engine that spreads further:

- **Mininet** (``to_mininet``): a standalone Python script with the same topology and
  addresses as the lab (a switch for the public hosts, one for the routers' WAN side, a
  router node per NAT loading *the same* nftables ruleset ucsdk uses), link impairments as
  Mininet ``TCLink`` parameters (``delay``, ``jitter``, ``loss`` in percent, ``bw`` in
  Mbit/s; see mininet/link.py), and a ``ucsdk node`` on each host. Mininet can be spread
  over several machines with its cluster edition (Maxinet and the like).
- **Containernet** (``to_mininet(..., containernet=True)``): the same with each host a
  Docker container of an image holding ucsdk (``image=``).
- **Shadow** (``to_shadow``): a Shadow 3 configuration (YAML): one network-graph node per
  host joined through a core node, edge latency the host's one-way share of its round
  trip, jitter and ``packet_loss`` as a fraction, node bandwidth from ``bandwidth_mbps``;
  each host runs ``python3 -m ucsdk node``. Shadow models no NAT: every host is directly
  reachable there (:func:`export_warnings` says so per host).

See ``docs/research.md`` for what carries over and what does not.

Example:
    >>> from ucsdk.lab.spec import HostSpec, LinkSpec, Scenario
    >>> s = Scenario("pair", hosts=(HostSpec("relay", "none"),
    ...     HostSpec("a", "symmetric", link=LinkSpec(latency_ms=40, loss_percent=1))))
    >>> script = to_mininet(s)
    >>> compile(script, "pair.py", "exec") is not None and "masquerade random" in script
    True
    >>> import yaml
    >>> config = yaml.safe_load(to_shadow(s))
    >>> sorted(config["hosts"]), config["hosts"]["a"]["ip_addr"]
    (['a', 'relay'], '198.51.100.10')
    >>> export_warnings(s, "shadow")[0]
    'a: Shadow has no NAT; behind symmetric in the lab, directly reachable in Shadow'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ucsdk import errors
from ucsdk.lab._lab import ISP_NET, LIBP2P_PORT, PUBLIC_NET
from ucsdk.lab.nat import NatType, router_ruleset
from ucsdk.lab.spec import HostSpec, Scenario

ENGINES = ("mininet", "containernet", "shadow")
#: Bandwidth of a Shadow host whose link has no cap.
SHADOW_DEFAULT_BANDWIDTH = "1 Gbit"


@dataclass(frozen=True)
class _Placed:
    """A scenario host with the lab's addresses (the same plan as :class:`ucsdk.lab.Lab`)."""

    spec: HostSpec
    index: int  # n of the NATed host (10.n.0.0/24), or k of the public host
    address: str  # the host's own address
    public_ip: str  # what the internet sees

    @property
    def nat(self) -> NatType:
        return self.spec.nat


def _place(scenario: Scenario) -> list[_Placed]:
    placed, public, natted = [], 0, 0
    for h in scenario.hosts:
        if h.nat is NatType.NONE:
            public += 1
            ip = f"{PUBLIC_NET}.{9 + public}"
            placed.append(_Placed(h, public, ip, ip))
        else:
            natted += 1
            placed.append(_Placed(h, natted, f"10.{natted}.0.2", f"{ISP_NET}.{9 + natted}"))
    return placed


def _node_args(h: _Placed, scenario: Scenario) -> list[str]:
    """``ucsdk node`` arguments for a host: listen on the lab's port, TCP and QUIC."""
    config = {**scenario.node_defaults, **h.spec.config}
    args = ["node", "--listen-host", "0.0.0.0", "--port", str(LIBP2P_PORT), "--no-mdns"]
    for transport in config.get("transports", ["tcp", "quic"]):
        args += ["--transport", str(transport)]
    args += ["--json", "--interval", "10"]
    return args


def _ruleset(h: _Placed, *, carrier: bool = False) -> str:
    if carrier:
        return router_ruleset(NatType.PORT_RESTRICTED, "wan0", "lan0")
    kind = NatType.PORT_RESTRICTED if h.nat is NatType.DOUBLE else h.nat
    if kind is NatType.PORT_FORWARDED:
        return router_ruleset(kind, "wan0", "lan0", forward_to=h.address, ports=(LIBP2P_PORT,))
    home_wan = f"10.{100 + h.index}.0.2" if h.nat is NatType.DOUBLE else h.public_ip
    options: dict[str, Any] = {
        k: v
        for k, v in (
            ("port_preservation", h.spec.port_preservation),
            ("hairpinning", h.spec.hairpinning),
            ("udp_timeout_s", h.spec.udp_timeout_s),
        )
        if v is not None
    }
    return router_ruleset(kind, "wan0", "lan0", inside=h.address, public_ip=home_wan, **options)


def _tclink(h: _Placed, *, host_end: bool) -> dict[str, Any]:
    """Mininet TCLink parameters for one end of the host's link. netem on each end delays
    what that end sends, so each end gets half the round trip and half the jitter (the
    lab's ``±jitter_ms / 2`` each way); loss only on the host's end, as in the lab."""
    link = h.spec.link
    params: dict[str, Any] = {}
    if link.latency_ms:
        params["delay"] = f"{link.latency_ms / 2:g}ms"
    if link.jitter_ms:
        params["jitter"] = f"{link.jitter_ms / 2:g}ms"
    if link.bandwidth_mbps:
        params["bw"] = link.bandwidth_mbps
    if host_end and link.loss_percent:
        params["loss"] = link.loss_percent
    return params


def to_mininet(
    scenario: Scenario, *, containernet: bool = False, image: str = "ucsdk:latest"
) -> str:
    """A standalone Mininet (or Containernet) script that builds ``scenario``: run it as
    root on a machine with Mininet, nftables and ucsdk (``python3 SCRIPT [--batch]``)."""
    placed = _place(scenario)
    lines = [
        "#!/usr/bin/env python3",
        f'"""{"Containernet" if containernet else "Mininet"} topology of the ucsdk lab '
        f"scenario {scenario.name!r}, exported by ucsdk.lab.export.",
        "",
        "Same addresses and NAT rulesets as the ucsdk lab; links are TCLinks (netem).",
        'Run as root: python3 THIS_FILE [--batch]  (--batch: build, wait, tear down)."""',
        "",
        "import sys",
        "import time",
        "",
        "from mininet.link import TCLink",
        "from mininet.log import setLogLevel",
        "from mininet.node import Node",
        "",
    ]
    if containernet:
        lines += ["from mininet.net import Containernet as Net", ""]
    else:
        lines += ["from mininet.net import Mininet as Net", ""]
    lines += [
        f"NODE_ARGS = {json.dumps({h.spec.name: _node_args(h, scenario) for h in placed})}",
        "RULESETS = {}",
    ]
    for h in placed:
        if h.nat is NatType.NONE:
            continue
        lines.append(f"RULESETS[{h.spec.name + '_gw'!r}] = {_ruleset(h)!r}")
        if h.nat is NatType.DOUBLE:
            lines.append(f"RULESETS[{h.spec.name + '_cgn'!r}] = {_ruleset(h, carrier=True)!r}")
    lines += [
        "",
        "",
        "def router(net, name):",
        "    r = net.addHost(name, cls=Node, ip=None)",
        "    r.cmd('sysctl -q -w net.ipv4.ip_forward=1')",
        "    return r",
        "",
        "",
        "def build():",
        "    net = Net(link=TCLink, controller=None)",
        "    inet = router(net, 'inet')",
        "    pub = net.addSwitch('s1', failMode='standalone')",
        "    isp = net.addSwitch('s2', failMode='standalone')",
        f"    net.addLink(inet, pub, intfName1='inet-pub', params1={{'ip': '{PUBLIC_NET}.1/24'}})",
        f"    net.addLink(inet, isp, intfName1='inet-isp', params1={{'ip': '{ISP_NET}.1/24'}})",
        "    hosts = {}",
    ]
    for h in placed:
        name = h.spec.name
        add = (
            f"net.addDocker({name!r}, ip=None, dimage={image!r})"
            if containernet
            else f"net.addHost({name!r}, ip=None)"
        )
        lines.append(f"    hosts[{name!r}] = host = {add}")
        near = {"ip": f"{h.address}/24", **_tclink(h, host_end=True)}
        far = _tclink(h, host_end=False)
        if h.nat is NatType.NONE:
            lines += [
                f"    net.addLink(host, pub, intfName1={name + '-eth0'!r}, "
                f"params1={near!r}, params2={far!r})",
                f"    host.setDefaultRoute('via {PUBLIC_NET}.1')",
            ]
            continue
        n = h.index
        lines.append(f"    gw = router(net, {name + '_gw'!r})")
        if h.nat is NatType.DOUBLE:
            lines += [
                f"    cgn = router(net, {name + '_cgn'!r})",
                f"    net.addLink(cgn, isp, intfName1={name + '-cwan'!r}, "
                f"params1={{'ip': '{h.public_ip}/24'}})",
                f"    net.addLink(gw, cgn, intfName1={name + '-wan'!r}, "
                f"intfName2={name + '-clan'!r}, params1={{'ip': '10.{100 + n}.0.2/24'}}, "
                f"params2={{'ip': '10.{100 + n}.0.1/24'}})",
                f"    cgn.setDefaultRoute('via {ISP_NET}.1')",
                f"    gw.setDefaultRoute('via 10.{100 + n}.0.1')",
            ]
        else:
            lines += [
                f"    net.addLink(gw, isp, intfName1={name + '-wan'!r}, "
                f"params1={{'ip': '{h.public_ip}/24'}})",
                f"    gw.setDefaultRoute('via {ISP_NET}.1')",
            ]
        lines += [
            f"    net.addLink(host, gw, intfName1={name + '-eth0'!r}, "
            f"intfName2={name + '-lan'!r}, params1={near!r}, "
            f"params2={ {'ip': f'10.{n}.0.1/24', **far}!r})",
            f"    host.setDefaultRoute('via 10.{n}.0.1')",
        ]
    lines += [
        "    net.start()",
        "    # The routers' interfaces carry the lab's names in the rulesets.",
        "    for name, ruleset in RULESETS.items():",
        "        r = net.get(name)",
        "        host = name.rsplit('_', 1)[0]",
        "        wan, lan = ('cwan', 'clan') if name.endswith('_cgn') else ('wan', 'lan')",
        "        for old, new in ((f'{host}-{wan}', 'wan0'), (f'{host}-{lan}', 'lan0')):",
        "            r.cmd(f'ip link set {old} down && ip link set {old} name {new}')",
        "            r.cmd(f'ip link set {new} up')",
        "        path = f'/tmp/ucsdk-{name}.nft'",
        "        with open(path, 'w') as fh:",
        "            fh.write(ruleset)",
        "        r.cmd(f'nft -f {path}')",
        "    for name, args in NODE_ARGS.items():",
        "        log = f'/tmp/ucsdk-{name}.log'",
        "        hosts[name].cmd('python3 -m ucsdk ' + ' '.join(args) + f' > {log} 2>&1 &')",
        "    return net",
        "",
        "",
        "if __name__ == '__main__':",
        "    setLogLevel('info')",
        "    net = build()",
        "    if '--batch' in sys.argv:",
        "        time.sleep(30)",
        "    else:",
        "        from mininet.cli import CLI",
        "",
        "        CLI(net)",
        "    net.stop()",
        "",
    ]
    return "\n".join(lines)


def _us(ms: float) -> str:
    return f"{max(1, round(ms * 1000))} us"


def to_shadow(scenario: Scenario, *, stop_time_s: int = 60) -> str:
    """A Shadow 3 configuration (YAML) for ``scenario``: node 0 is the core, node ``i``
    host ``i``; an edge from each host's node to the core carries half the host's round
    trip (so a path between two hosts adds half of each one's, as in the lab), its jitter
    and its loss; each host runs ``python3 -m ucsdk node``. NAT is dropped: see
    :func:`export_warnings`."""
    import yaml

    if isinstance(stop_time_s, bool) or not isinstance(stop_time_s, int) or stop_time_s < 1:
        raise errors.InvalidInput("stop_time_s", stop_time_s, "a positive whole number")
    placed = _place(scenario)
    gml = ["graph [", "  directed 0", "  node [", "    id 0", '    label "core"', "  ]"]
    hosts: dict[str, Any] = {}
    for i, h in enumerate(placed, 1):
        link = h.spec.link
        bandwidth = f"{link.bandwidth_mbps:g} Mbit" if link.bandwidth_mbps else None
        gml += [
            "  node [",
            f"    id {i}",
            f'    label "{h.spec.name}"',
            f'    host_bandwidth_down "{bandwidth or SHADOW_DEFAULT_BANDWIDTH}"',
            f'    host_bandwidth_up "{bandwidth or SHADOW_DEFAULT_BANDWIDTH}"',
            "  ]",
            "  edge [",
            f"    source {i}",
            "    target 0",
            f'    latency "{_us((link.latency_ms or 0) / 2)}"',
            f'    jitter "{_us((link.jitter_ms or 0) / 2) if link.jitter_ms else "0 us"}"',
            f"    packet_loss {(link.loss_percent or 0) / 100:g}",
            "  ]",
        ]
        hosts[h.spec.name] = {
            "network_node_id": i,
            "ip_addr": h.public_ip,
            "processes": [
                {
                    "path": "python3",
                    "args": ["-m", "ucsdk", *_node_args(h, scenario)],
                    "start_time": "1 s",
                    "expected_final_state": "running",
                }
            ],
        }
    gml.append("]")
    config = {
        "general": {"stop_time": f"{stop_time_s} s", "model_unblocked_syscall_latency": True},
        "network": {"graph": {"type": "gml", "inline": "\n".join(gml) + "\n"}},
        "hosts": hosts,
    }
    header = [f"# Shadow configuration of the ucsdk lab scenario {scenario.name!r}."]
    header += [f"# {w}" for w in export_warnings(scenario, "shadow")]
    return "\n".join(header) + "\n" + str(yaml.safe_dump(config, sort_keys=False))


def export_warnings(scenario: Scenario, engine: str) -> list[str]:
    """What the export to ``engine`` cannot keep of ``scenario``, one line per host."""
    if engine not in ENGINES:
        raise errors.InvalidInput("export engine", engine, "one of " + ", ".join(ENGINES))
    out = []
    for h in scenario.hosts:
        if engine == "shadow" and h.nat is not NatType.NONE:
            out.append(
                f"{h.name}: Shadow has no NAT; behind {h.nat.value} in the lab, directly "
                "reachable in Shadow"
            )
        if engine != "shadow" and h.link.jitter_ms:
            out.append(f"{h.name}: netem's jitter reorders packets; the lab's delay line does not")
    if scenario.campaign is not None:
        out.append(
            "the campaign is not exported: the engines run the nodes, not the lab's attempts"
        )
    return out


def export(scenario: Scenario, engine: str, path: str | Path, **options: Any) -> Path:
    """Write ``scenario`` for ``engine`` (``"mininet"``, ``"containernet"`` or
    ``"shadow"``) to ``path``; ``options`` go to :func:`to_mininet` / :func:`to_shadow`."""
    if engine not in ENGINES:
        raise errors.InvalidInput("export engine", engine, "one of " + ", ".join(ENGINES))
    if engine == "shadow":
        text = to_shadow(scenario, **options)
    else:
        text = to_mininet(scenario, containernet=engine == "containernet", **options)
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path
