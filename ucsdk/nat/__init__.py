"""NAT traversal services: AutoNAT (more to come: Circuit Relay v2, DCUtR)."""

from ucsdk.nat.autonat import AutoNAT

__all__ = ["AutoNAT"]
