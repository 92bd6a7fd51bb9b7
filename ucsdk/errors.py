"""Every exception ucsdk raises at its API edge.

All of them derive from :class:`UcsdkError`, so ``except ucsdk.errors.UcsdkError`` catches
anything the SDK means to tell you. Each message names the value, peer or operation at fault.

Example:
    >>> from ucsdk.errors import ConfigError, UcsdkError
    >>> err = ConfigError("mdns_query_interval", -1, "a positive number of seconds")
    >>> isinstance(err, UcsdkError), err.field, err.value
    (True, 'mdns_query_interval', -1)
    >>> str(err)
    'mdns_query_interval=-1 is invalid: expected a positive number of seconds'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class UcsdkError(Exception):
    """Base class of every error raised by ucsdk."""


class ConfigError(UcsdkError, ValueError):
    """A :class:`ucsdk.ConnectivityConfig` field holds a value that cannot work.

    Raised when the config is validated (on ``Node(...)``, ``ConnectivityConfig.validate()``
    or ``UniversalConnectivityManager(...)``).
    """

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}={value!r} is invalid: expected {expected}")


class InvalidInput(UcsdkError, ValueError):
    """An argument passed to a ucsdk call is malformed (see the subclasses)."""

    def __init__(self, what: str, value: Any, expected: str) -> None:
        self.what = what
        self.value = value
        self.expected = expected
        super().__init__(f"invalid {what} {value!r}: expected {expected}")


class InvalidMultiaddr(InvalidInput):
    """A string that should be a multiaddr does not parse as one."""

    def __init__(self, value: Any, reason: str = "") -> None:
        expected = "a multiaddr such as /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW..."
        if reason:
            expected = f"{expected} ({reason})"
        super().__init__("multiaddr", value, expected)


class InvalidPeerId(InvalidInput):
    """A string that should be a peer id is not a valid base58 libp2p peer id."""

    def __init__(self, value: Any) -> None:
        super().__init__("peer id", value, "a base58 libp2p peer id such as 12D3KooW...")


class NodeStopped(UcsdkError, RuntimeError):
    """The node (or manager) is not running, so the call cannot be served."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(f"cannot {operation}: the node is not running (start it first)")


class NodeStartError(UcsdkError, RuntimeError):
    """A node could not start (e.g. a listen address is taken or not on this machine)."""

    def __init__(self, listen_addrs: Sequence[str], reason: str) -> None:
        self.listen_addrs = list(listen_addrs)
        self.reason = reason
        super().__init__(f"node could not start listening on {', '.join(listen_addrs)}: {reason}")


class DialError(UcsdkError, ConnectionError):
    """Dialling a peer failed on every address that was tried."""

    def __init__(self, peer_id: str | None, addrs: Sequence[str], reason: str) -> None:
        self.peer_id = peer_id
        self.addrs = list(addrs)
        self.reason = reason
        where = ", ".join(self.addrs) if self.addrs else "no known address"
        who = peer_id if peer_id else "peer"
        super().__init__(f"could not connect to {who} via {where}: {reason}")


class PeerNotFound(DialError):
    """No address is known for the peer, so it cannot be dialled."""

    def __init__(self, peer_id: str) -> None:
        super().__init__(peer_id, [], "the peer is unknown (no address is known for it)")


class PingError(UcsdkError):
    """A ping exchange failed after a stream was opened (bad echo, reset stream)."""

    def __init__(self, peer_id: str, reason: str) -> None:
        self.peer_id = peer_id
        self.reason = reason
        super().__init__(f"ping to {peer_id} failed: {reason}")


class OperationFailed(UcsdkError, RuntimeError):
    """An operation failed inside py-libp2p for a reason none of the other errors names
    (e.g. closing a connection, a DHT lookup); the original exception is ``__cause__``."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"{operation} failed: {reason}")


class StreamClosed(UcsdkError, ConnectionError):
    """A stream ended (closed or reset by the peer, or its connection went) before the
    read or write finished."""

    def __init__(self, protocol: str, peer_id: str, reason: str) -> None:
        self.protocol = protocol
        self.peer_id = peer_id
        self.reason = reason
        super().__init__(f"{protocol} stream with {peer_id} ended: {reason}")


class MessageTooLarge(UcsdkError, ValueError):
    """A length-prefixed message announced more bytes than the reader allows (the stream
    was reset before the body was read)."""

    def __init__(self, protocol: str, size: int, limit: int) -> None:
        self.protocol = protocol
        self.size = size
        self.limit = limit
        super().__init__(f"a {protocol} message of {size} bytes is over the {limit}-byte limit")


class Timeout(UcsdkError, TimeoutError):
    """A blocking call did not finish within its ``timeout``."""

    def __init__(self, operation: str, seconds: float) -> None:
        self.operation = operation
        self.seconds = seconds
        super().__init__(f"{operation} did not finish within {seconds:g} s")


class WrongThread(UcsdkError, RuntimeError):
    """A blocking :class:`ucsdk.Node` method was called from the node's own event loop."""

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"{operation} blocks and was called from the node's event-loop thread "
            "(a callback?); use the manager's async API or `await node.aio.<method>()` there"
        )


class LabUnavailable(UcsdkError, RuntimeError):
    """The NAT lab cannot run on this machine; the message says what is missing and how to
    get it (root, or the Debian package that provides a tool)."""

    def __init__(self, missing: str, remedy: str) -> None:
        self.missing = missing
        self.remedy = remedy
        super().__init__(f"the NAT lab needs {missing}: {remedy}")


class LabError(UcsdkError, RuntimeError):
    """A NAT-lab operation failed: a command that builds the topology, or a call to a lab
    node's process (``kind`` is the exception class the node raised, e.g. ``DialError``)."""

    def __init__(self, where: str, kind: str, message: str) -> None:
        self.where = where
        self.kind = kind
        self.message = message
        super().__init__(f"{where}: {kind}: {message}")


__all__ = [
    "ConfigError",
    "DialError",
    "InvalidInput",
    "InvalidMultiaddr",
    "InvalidPeerId",
    "LabError",
    "LabUnavailable",
    "MessageTooLarge",
    "NodeStartError",
    "NodeStopped",
    "OperationFailed",
    "PeerNotFound",
    "PingError",
    "StreamClosed",
    "Timeout",
    "UcsdkError",
    "WrongThread",
]
