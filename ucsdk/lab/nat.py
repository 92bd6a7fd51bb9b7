"""NAT behaviours of the lab's routers, in RFC 4787 terms, and the nftables rules for each.

A NAT has two independent behaviours that decide whether hole punching can work:

- **Mapping** — which public ``ip:port`` an inside socket gets for a new destination.
  *Endpoint-independent mapping* (EIM) reuses one mapping for every destination, so what a
  third party (an AutoNAT server, a relay) observes is also what a peer can reach.
  *Endpoint-dependent mapping* (EDM, "symmetric") picks a new port per destination, so the
  address a peer learns from anyone else is wrong for that peer: hole punching fails.
- **Filtering** — which inbound packets a mapping lets in. Linux conntrack admits only
  replies to the exact remote ``ip:port`` the inside host sent to first:
  *address-and-port-dependent filtering*. An unsolicited dial from outside is dropped; a
  simultaneous dial from both sides (DCUtR) passes because each side's outgoing packet opens
  the filter for the other. *Endpoint-independent filtering* ("full cone") admits anyone
  to a mapping once it exists; *address-dependent filtering* admits any port of an address
  the host has sent to. The lab builds both from dynamic nftables sets that outgoing
  packets fill (:func:`router_ruleset`).
- **Port preservation** — whether the public port equals the inside port; **hairpinning** —
  whether a packet from inside to the router's own public mapping comes back in.

Example:
    >>> NatType.parse("symmetric") is NatType.SYMMETRIC
    True
    >>> NatType.PORT_RESTRICTED.hole_punching
    'works: endpoint-independent mapping; both sides dial at once to open the filters'
"""

from __future__ import annotations

import enum
import math

from ucsdk import errors


class NatType(str, enum.Enum):
    """How the router in front of a lab host translates and filters traffic."""

    #: No NAT: the host has a public address and accepts inbound connections.
    NONE = "none"
    #: Typical home router: endpoint-independent mapping with port preservation
    #: (nftables ``masquerade``) and address-and-port-dependent filtering.
    PORT_RESTRICTED = "port_restricted"
    #: Endpoint-dependent mapping: ``masquerade random`` picks a random public port for
    #: every new flow, so each destination sees a different port.
    SYMMETRIC = "symmetric"
    #: A home router with a static port forward (DNAT) to the host's libp2p port, like UPnP
    #: or a manual forward: the host is reachable from outside on that port.
    PORT_FORWARDED = "port_forwarded"
    #: Two routers in a row (home router behind carrier-grade NAT), both endpoint-independent
    #: mapping with address-and-port-dependent filtering.
    DOUBLE = "double"
    #: "Full cone": endpoint-independent mapping and endpoint-INDEPENDENT filtering: once
    #: the host sent from a port, anyone may send to its public mapping.
    FULL_CONE = "full_cone"
    #: "Restricted cone": endpoint-independent mapping and ADDRESS-dependent filtering: any
    #: port of an address the host has sent to may reach the mapping.
    ADDRESS_RESTRICTED = "address_restricted"

    @classmethod
    def parse(cls, value: NatType | str | None) -> NatType:
        """Accept a member, its value, or a common alias (``"cone"``, ``"public"``, ...)."""
        if value is None:
            return cls.NONE
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_").replace(" ", "_")
            aliases = {
                "public": cls.NONE,
                "no_nat": cls.NONE,
                "cone": cls.PORT_RESTRICTED,
                "home": cls.PORT_RESTRICTED,
                "eim": cls.PORT_RESTRICTED,
                "port_restricted_cone": cls.PORT_RESTRICTED,
                "edm": cls.SYMMETRIC,
                "random": cls.SYMMETRIC,
                "forwarded": cls.PORT_FORWARDED,
                "dnat": cls.PORT_FORWARDED,
                "upnp": cls.PORT_FORWARDED,
                "double_nat": cls.DOUBLE,
                "cgnat": cls.DOUBLE,
                "cgn": cls.DOUBLE,
                "full": cls.FULL_CONE,
                "eif": cls.FULL_CONE,
                "open": cls.FULL_CONE,
                "restricted": cls.ADDRESS_RESTRICTED,
                "restricted_cone": cls.ADDRESS_RESTRICTED,
                "address_restricted_cone": cls.ADDRESS_RESTRICTED,
                "adf": cls.ADDRESS_RESTRICTED,
                "apdf": cls.PORT_RESTRICTED,
            }
            if key in aliases:
                return aliases[key]
            for member in cls:
                if member.value == key:
                    return member
        raise errors.InvalidInput(
            "NAT type", value, "one of " + ", ".join(repr(m.value) for m in cls)
        )

    @property
    def mapping(self) -> str:
        """RFC 4787 mapping behaviour."""
        return {
            NatType.NONE: "none (public address)",
            NatType.SYMMETRIC: "endpoint-dependent (random port per destination)",
        }.get(self, "endpoint-independent (port preserved)")

    @property
    def filtering(self) -> str:
        """RFC 4787 filtering behaviour."""
        if self is NatType.NONE:
            return "none"
        if self is NatType.PORT_FORWARDED:
            return "address-and-port-dependent, except the forwarded port"
        if self is NatType.FULL_CONE:
            return "endpoint-independent (anyone may send to a mapping)"
        if self is NatType.ADDRESS_RESTRICTED:
            return "address-dependent (any port of an address the host sent to)"
        return "address-and-port-dependent"

    @property
    def behaviour(self) -> tuple[str, str]:
        """``(mapping, filtering)`` as the short codes :class:`ucsdk.lab.behaviour.
        NatBehaviourReport` classifies a NAT by (RFC 5780 §4.3–4.4): ``"no_nat"``,
        ``"endpoint_independent"``, ``"address_dependent"`` or
        ``"address_and_port_dependent"``.

        Example:
            >>> NatType.FULL_CONE.behaviour
            ('endpoint_independent', 'endpoint_independent')
            >>> NatType.SYMMETRIC.behaviour
            ('address_and_port_dependent', 'address_and_port_dependent')
        """
        if self is NatType.NONE:
            return ("no_nat", "endpoint_independent")
        mapping = (
            "address_and_port_dependent" if self is NatType.SYMMETRIC else "endpoint_independent"
        )
        filtering = {
            NatType.FULL_CONE: "endpoint_independent",
            NatType.ADDRESS_RESTRICTED: "address_dependent",
        }.get(self, "address_and_port_dependent")
        return (mapping, filtering)

    @property
    def hole_punching(self) -> str:
        """What this NAT does to DCUtR hole punching, in one line."""
        return {
            NatType.NONE: "not needed: the host is directly reachable",
            NatType.PORT_RESTRICTED: (
                "works: endpoint-independent mapping; both sides dial at once to open the filters"
            ),
            NatType.SYMMETRIC: (
                "fails: each destination sees a new port, so the observed address is wrong"
            ),
            NatType.PORT_FORWARDED: "not needed on the forwarded port: dial it directly",
            NatType.DOUBLE: "works when both NATs map endpoint-independently (as here)",
            NatType.FULL_CONE: (
                "rarely needed: once the host has sent from its port (to a relay, say), "
                "anyone can dial its observed address directly"
            ),
            NatType.ADDRESS_RESTRICTED: (
                "works: endpoint-independent mapping; the peer's first packet opens the filter "
                "for the peer's whole address"
            ),
        }[self]


#: Without port preservation, an endpoint-independent NAT maps inside port ``p`` to public
#: port ``p ^ PORT_XOR``: one public port per inside port whatever the destination (EIM),
#: never the same number, and its own inverse, so inbound packets map back the same way.
PORT_XOR = 0x4000
#: Idle lifetime of a dynamic UDP mapping/filter entry when ``udp_timeout_s`` is not given
#: (the kernel's default ``nf_conntrack_udp_timeout_stream``).
DEFAULT_UDP_MAPPING_S = 120
#: Idle lifetime of a dynamic TCP mapping/filter entry: RFC 5382 REQ-5's 2 h 4 min.
TCP_MAPPING_S = 7440
#: At most this many entries per dynamic set: a busy (or hostile) inside host cannot grow
#: the router's state without bound; when full, new mappings get no inbound opening.
MAX_MAPPINGS = 4096


def public_port(inside_port: int, port_preservation: bool = True) -> int:
    """The public port an endpoint-independent lab NAT gives ``inside_port``.

    Example:
        >>> public_port(4001), public_port(4001, port_preservation=False)
        (4001, 20385)
    """
    return inside_port if port_preservation else inside_port ^ PORT_XOR


def router_ruleset(
    nat: NatType,
    wan: str,
    lan: str,
    forward_to: str | None = None,
    ports: tuple[int, ...] = (),
    *,
    inside: str | None = None,
    public_ip: str | None = None,
    port_preservation: bool = True,
    hairpinning: bool = False,
    udp_timeout_s: float | None = None,
    max_mappings: int = MAX_MAPPINGS,
) -> str:
    """The nftables ruleset for a router doing ``nat`` from ``lan`` out through ``wan``.

    ``forward_to``/``ports``: for :attr:`NatType.PORT_FORWARDED`, the inside address whose
    TCP and UDP ``ports`` are forwarded.

    The RFC 4787 variants need the inside host's address (``inside``) and, for hairpinning
    or a non-preserved port, the router's public address (``public_ip``):

    - :attr:`NatType.FULL_CONE` / :attr:`NatType.ADDRESS_RESTRICTED`: every packet leaving
      through ``wan`` records (after SNAT, in a postrouting chain at ``srcnat + 10``) its
      public ``proto . port`` and the inside port in a dynamic map, and for address-dependent
      filtering the ``remote address . proto . port`` in a dynamic set; a new inbound flow
      whose public port is in the map (and, ADF, whose source address is in the set) is
      DNATed to the inside port.
    - ``port_preservation=False``: SNAT to ``public_ip`` port ``p ^`` :data:`PORT_XOR` (still
      endpoint-independent; :func:`public_port`).
    - ``hairpinning=True``: a packet from ``lan`` to ``public_ip`` on a mapped port is DNATed
      back to the inside host and SNATed to the sender's public mapping (RFC 4787 REQ-9).
    - ``udp_timeout_s``: idle lifetime of the dynamic UDP entries (the caller sets the
      namespace's conntrack UDP timeouts to match).

    Entries time out when idle and each set holds at most ``max_mappings``.

    Example:
        >>> rules = router_ruleset(NatType.SYMMETRIC, "wan0", "lan0")
        >>> 'oifname "wan0" masquerade random' in rules, "policy drop" in rules
        (True, True)
        >>> cone = router_ruleset(NatType.FULL_CONE, "wan0", "lan0", inside="10.1.0.2")
        >>> "map mapped" in cone and "dnat ip to 10.1.0.2" in cone
        True
    """
    if nat is NatType.NONE:
        raise errors.InvalidInput("NAT type for a router", nat.value, "a type other than none")
    extended = (
        nat in (NatType.FULL_CONE, NatType.ADDRESS_RESTRICTED)
        or not port_preservation
        or hairpinning
    )
    if nat is NatType.SYMMETRIC and not port_preservation:
        port_preservation = True  # random ports already: nothing to preserve or not
    if not port_preservation and nat not in (
        NatType.PORT_RESTRICTED,
        NatType.FULL_CONE,
        NatType.ADDRESS_RESTRICTED,
    ):
        raise errors.InvalidInput(
            "port_preservation", False, "True for NAT type " + repr(nat.value)
        )
    if hairpinning and nat in (NatType.PORT_FORWARDED, NatType.DOUBLE):
        raise errors.InvalidInput("hairpinning", True, "False for NAT type " + repr(nat.value))
    masq = "masquerade random" if nat is NatType.SYMMETRIC else "masquerade"
    dnat = ""
    accept_forwarded = ""
    if nat is NatType.PORT_FORWARDED:
        if forward_to is None or not ports:
            raise errors.InvalidInput("port forward", forward_to, "an inside address and ports")
        port_set = ", ".join(str(p) for p in ports)
        dnat = (
            f'        iifname "{wan}" tcp dport {{ {port_set} }} dnat to {forward_to}\n'
            f'        iifname "{wan}" udp dport {{ {port_set} }} dnat to {forward_to}\n'
        )
        accept_forwarded = f'        iifname "{wan}" ct status dnat accept\n'
    sets = ""
    snat = f'        oifname "{wan}" {masq}\n'
    record = ""
    if extended:
        inside = inside or forward_to
        if inside is None:
            raise errors.InvalidInput("inside address", inside, "the NATed host's address")
        if (hairpinning or not port_preservation) and public_ip is None:
            raise errors.InvalidInput("public_ip", public_ip, "the router's WAN address")
        if not isinstance(max_mappings, int) or max_mappings < 1:
            raise errors.InvalidInput("max_mappings", max_mappings, "a whole number >= 1")
        udp_s = DEFAULT_UDP_MAPPING_S if udp_timeout_s is None else max(1, math.ceil(udp_timeout_s))
        tcp_s = TCP_MAPPING_S
        l4 = "meta l4proto { tcp, udp }"
        # public proto . port -> inside port, filled by outgoing packets after SNAT.
        sets = (
            "    map mapped {\n"
            "        type inet_proto . inet_service : inet_service\n"
            f"        flags dynamic,timeout; timeout {udp_s}s; size {max_mappings};\n"
            "    }\n"
        )
        to_inside = f"dnat ip to {inside} : meta l4proto . th dport map @mapped"
        # The inside port: the flow's original source if the host opened it, else (an
        # inbound flow let in by the filter) the source the host answers from.
        inside_port = (("original", "ct original proto-src"), ("reply", "ct reply proto-src"))
        for proto, secs in (("udp", udp_s), ("tcp", tcp_s)):
            for direction, port in inside_port:
                record += (
                    f'        oifname "{wan}" meta l4proto {proto} ct direction {direction} '
                    f"update @mapped {{ meta l4proto . th sport timeout {secs}s : {port} }}\n"
                )
        if nat is NatType.FULL_CONE:
            dnat += f'        iifname "{wan}" {l4} ct state new {to_inside}\n'
        if nat is NatType.ADDRESS_RESTRICTED:
            sets += (
                "    set peers {\n"
                "        type ipv4_addr . inet_proto . inet_service\n"
                f"        flags dynamic,timeout; timeout {udp_s}s; size {max_mappings};\n"
                "    }\n"
            )
            for proto, secs in (("udp", udp_s), ("tcp", tcp_s)):
                record += (
                    f'        oifname "{wan}" meta l4proto {proto} '
                    f"update @peers {{ ip daddr . meta l4proto . th sport timeout {secs}s }}\n"
                )
            dnat += (
                f'        iifname "{wan}" {l4} ct state new '
                f"ip saddr . meta l4proto . th dport @peers {to_inside}\n"
            )
        if nat in (NatType.FULL_CONE, NatType.ADDRESS_RESTRICTED):
            accept_forwarded += f'        iifname "{wan}" oifname "{lan}" ct status dnat accept\n'
        if not port_preservation:
            snat = (
                f'        oifname "{wan}" {l4} snat ip to {public_ip} : th sport ^ {PORT_XOR:#x}\n'
                + snat
            )
        if hairpinning:
            dnat += f'        iifname "{lan}" ip daddr {public_ip} {l4} ct state new {to_inside}\n'
            if nat is NatType.SYMMETRIC:
                hairpin_snat = f"snat ip to {public_ip} random"
            elif port_preservation:
                hairpin_snat = f"snat ip to {public_ip}"
            else:
                hairpin_snat = f"snat ip to {public_ip} : th sport ^ {PORT_XOR:#x}"
            snat = (
                f'        iifname "{lan}" oifname "{lan}" ct status dnat {l4} {hairpin_snat}\n'
                + snat
            )
            accept_forwarded += f'        iifname "{lan}" oifname "{lan}" ct status dnat accept\n'
    recorder = (
        (
            "    chain mappings {\n"
            "        type filter hook postrouting priority srcnat + 10; policy accept;\n"
            f"{record}"
            "    }\n"
        )
        if record
        else ""
    )
    return (
        "table ip ucsdk_nat {\n"
        f"{sets}"
        "    chain prerouting {\n"
        "        type nat hook prerouting priority dstnat; policy accept;\n"
        f"{dnat}"
        "    }\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        f"{snat}"
        "    }\n"
        f"{recorder}"
        "    chain forward {\n"
        "        type filter hook forward priority filter; policy drop;\n"
        "        ct state established,related accept\n"
        f'        iifname "{lan}" oifname "{wan}" accept\n'
        f"{accept_forwarded}"
        "    }\n"
        "    chain input {\n"
        "        type filter hook input priority filter; policy drop;\n"
        '        iifname "lo" accept\n'
        "        ct state established,related accept\n"
        f'        iifname "{lan}" accept\n'
        "        icmp type echo-request accept\n"
        "    }\n"
        "}\n"
    )
