"""ucsdk: explore, script and teach libp2p peer connectivity from Python and Jupyter.

Example:
    >>> import ucsdk
    >>> with ucsdk.Node.development() as a, ucsdk.Node.development() as b:
    ...     _ = a.connect(b.addrs[0])
    ...     len(a.ping(b.peer_id, count=2))
    2
"""

from ucsdk import errors, graph, identity, lab, plots
from ucsdk._service import ServiceHealth
from ucsdk.addresses import AddressInfo
from ucsdk.config import IPFS_BOOTSTRAP_PEERS, ConnectivityConfig
from ucsdk.discovery.mdns import MDNSService
from ucsdk.discovery.pubsub import PubsubPeerDiscovery
from ucsdk.manager import UniversalConnectivityManager, setup_universal_connectivity
from ucsdk.messaging.pubsub import Message, TopicInfo, Verdict
from ucsdk.messaging.streams import BlockingStream, Stream
from ucsdk.metrics import ConnectivityMetrics, Event
from ucsdk.nat.autonat import AutoNAT
from ucsdk.nat.dcutr import DCUtR
from ucsdk.nat.relay import CircuitRelayClient, CircuitRelayServer
from ucsdk.peers import ConnectionInfo, DialAttempt, DiscoveredPeer, PeerInfo
from ucsdk.sync import AioStream, AsyncNode, Node

__version__ = "0.1.0"

__all__ = [
    "IPFS_BOOTSTRAP_PEERS",
    "AddressInfo",
    "AioStream",
    "AsyncNode",
    "AutoNAT",
    "BlockingStream",
    "CircuitRelayClient",
    "CircuitRelayServer",
    "ConnectionInfo",
    "ConnectivityConfig",
    "ConnectivityMetrics",
    "DCUtR",
    "DialAttempt",
    "DiscoveredPeer",
    "Event",
    "MDNSService",
    "Message",
    "Node",
    "PeerInfo",
    "PubsubPeerDiscovery",
    "ServiceHealth",
    "Stream",
    "TopicInfo",
    "UniversalConnectivityManager",
    "Verdict",
    "__version__",
    "errors",
    "graph",
    "identity",
    "lab",
    "plots",
    "setup_universal_connectivity",
    "widgets",
]


def __getattr__(name: str) -> object:
    # ``ucsdk.widgets`` imports ipywidgets: only when first used, so scripts start faster.
    if name == "widgets":
        import importlib

        return importlib.import_module("ucsdk.widgets")
    raise AttributeError(f"module 'ucsdk' has no attribute {name!r}")
