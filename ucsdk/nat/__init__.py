"""NAT traversal services: AutoNAT v1, Circuit Relay v2, DCUtR hole punching (TCP and QUIC)."""

from ucsdk.nat.autonat import AutoNAT
from ucsdk.nat.dcutr import DCUtR
from ucsdk.nat.relay import CircuitRelayClient, CircuitRelayServer

__all__ = ["AutoNAT", "CircuitRelayClient", "CircuitRelayServer", "DCUtR"]
