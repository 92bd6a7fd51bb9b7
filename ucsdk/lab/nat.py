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
  the filter for the other.

Example:
    >>> NatType.parse("symmetric") is NatType.SYMMETRIC
    True
    >>> NatType.PORT_RESTRICTED.hole_punching
    'works: endpoint-independent mapping; both sides dial at once to open the filters'
"""

from __future__ import annotations

import enum

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
        return "address-and-port-dependent"

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
        }[self]


def router_ruleset(
    nat: NatType, wan: str, lan: str, forward_to: str | None = None, ports: tuple[int, ...] = ()
) -> str:
    """The nftables ruleset for a router doing ``nat`` from ``lan`` out through ``wan``.

    ``forward_to``/``ports``: for :attr:`NatType.PORT_FORWARDED`, the inside address whose
    TCP and UDP ``ports`` are forwarded.

    Example:
        >>> rules = router_ruleset(NatType.SYMMETRIC, "wan0", "lan0")
        >>> 'oifname "wan0" masquerade random' in rules, "policy drop" in rules
        (True, True)
    """
    if nat is NatType.NONE:
        raise errors.InvalidInput("NAT type for a router", nat.value, "a type other than none")
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
    return (
        "table ip ucsdk_nat {\n"
        "    chain prerouting {\n"
        "        type nat hook prerouting priority dstnat; policy accept;\n"
        f"{dnat}"
        "    }\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        f'        oifname "{wan}" {masq}\n'
        "    }\n"
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
