"""The NAT lab: real topologies with real NAT in Linux network namespaces.

Build hosts behind routers that do real nftables NAT, run a ucsdk node on each host as its
own process, and look at what happens: which dials work, which mapping a NAT used, what
each node sees. Results come back as pandas DataFrames. Needs root, ``ip``, ``nft`` and
``tc``; see :class:`Lab` and :class:`NatType`, and ``docs/lab.md``.

Example (as root):
    >>> import ucsdk.lab
    >>> with ucsdk.lab.Lab() as lab:  # doctest: +SKIP
    ...     relay = lab.add_public_host("relay")
    ...     a = lab.add_host("a", nat="port_restricted")
    ...     b = lab.add_host("b", nat="symmetric")
    ...     print(lab.reachability())  # who can dial whom directly
    ...     print(lab.mapping(b))      # symmetric NAT: a new public port per destination
    ...     print(lab.nat_behaviour(a))  # RFC 5780: mapping, filtering, hairpinning
"""

from ucsdk.lab._lab import LIBP2P_PORT, Lab, LabHost, LabNode
from ucsdk.lab.behaviour import NatBehaviourReport
from ucsdk.lab.campaigns import CampaignResult, campaign, run
from ucsdk.lab.nat import NatType
from ucsdk.lab.net import check_requirements
from ucsdk.lab.spec import CampaignSpec, HostSpec, LinkSpec, Scenario, load_results

__all__ = [
    "LIBP2P_PORT",
    "CampaignResult",
    "CampaignSpec",
    "HostSpec",
    "Lab",
    "LabHost",
    "LabNode",
    "LinkSpec",
    "NatBehaviourReport",
    "NatType",
    "Scenario",
    "campaign",
    "check_requirements",
    "load_results",
    "run",
]
