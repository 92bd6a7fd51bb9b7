"""Peer discovery services; each reports peers to the manager's table."""

from ucsdk.discovery.pubsub import PubsubPeerDiscovery

__all__ = ["PubsubPeerDiscovery"]
