"""NAT traversal services: AutoNAT v1, Circuit Relay v2 (DCUtR comes next)."""

from ucsdk.nat.autonat import AutoNAT
from ucsdk.nat.relay import CircuitRelayClient, CircuitRelayServer

__all__ = ["AutoNAT", "CircuitRelayClient", "CircuitRelayServer"]
