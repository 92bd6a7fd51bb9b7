"""Protobuf messages ucsdk speaks, built from their ``.proto`` definitions at import time.

The message classes are made with protobuf's own descriptor machinery (no generated code
to keep in sync, no ``protoc`` needed); each ``.proto`` file beside this module is the
reference text.

Example:
    >>> from ucsdk.proto import Peer
    >>> wire = Peer(publicKey=b"k", addrs=[b"a", b"b"]).SerializeToString()
    >>> list(Peer.FromString(wire).addrs)
    [b'a', b'b']
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_POOL = descriptor_pool.DescriptorPool()
_F = descriptor_pb2.FieldDescriptorProto


def _build(
    file_name: str, package: str, syntax: str, messages: dict[str, list[tuple]]
) -> dict[str, Any]:
    """Messages from ``(name, number, type, label[, message type name])`` field tuples.

    Nested messages are declared at top level (same wire format); enum fields are varints.
    """
    proto = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax=syntax)
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for name, number, field_type, label, *type_name in fields:
            field = message.field.add(name=name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = f".{package}.{type_name[0]}"
    _POOL.Add(proto)
    return {
        name: message_factory.GetMessageClass(
            _POOL.FindMessageTypeByName(f"{package}.{name}" if package else name)
        )
        for name in messages
    }


_discovery = _build(
    "ucsdk/peer_discovery.proto",
    "ucsdk.pubsub_discovery",
    "proto3",
    {
        "Peer": [
            ("publicKey", 1, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
            ("addrs", 2, _F.TYPE_BYTES, _F.LABEL_REPEATED),
        ]
    },
)
Peer: Any = _discovery["Peer"]
"""``Peer { bytes publicKey = 1; repeated bytes addrs = 2; }`` (pubsub peer discovery)."""

_autonat = _build(
    "ucsdk/autonat_v1.proto",
    "autonat.pb",
    "proto2",
    {
        "PeerInfo": [
            ("id", 1, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
            ("addrs", 2, _F.TYPE_BYTES, _F.LABEL_REPEATED),
        ],
        "Dial": [("peer", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "PeerInfo")],
        "DialResponse": [
            ("status", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL),
            ("statusText", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL),
            ("addr", 3, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
        ],
        "Message": [
            ("type", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL),
            ("dial", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Dial"),
            ("dialResponse", 3, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "DialResponse"),
        ],
    },
)
AutoNATMessage: Any = _autonat["Message"]
"""AutoNAT v1 ``Message`` (``/libp2p/autonat/1.0.0``); see ``autonat_v1.proto``."""

_relay = _build(
    "ucsdk/circuit_v2.proto",
    "circuit.pb",
    "proto2",
    {
        "Peer": [
            ("id", 1, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
            ("addrs", 2, _F.TYPE_BYTES, _F.LABEL_REPEATED),
        ],
        "Reservation": [
            ("expire", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL),
            ("addrs", 2, _F.TYPE_BYTES, _F.LABEL_REPEATED),
            ("voucher", 3, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
        ],
        "Limit": [
            ("duration", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL),
            ("data", 2, _F.TYPE_UINT64, _F.LABEL_OPTIONAL),
        ],
        "HopMessage": [
            ("type", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL),
            ("peer", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Peer"),
            ("reservation", 3, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Reservation"),
            ("limit", 4, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Limit"),
            ("status", 5, _F.TYPE_UINT32, _F.LABEL_OPTIONAL),
        ],
        "StopMessage": [
            ("type", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL),
            ("peer", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Peer"),
            ("limit", 3, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Limit"),
            ("status", 4, _F.TYPE_UINT32, _F.LABEL_OPTIONAL),
        ],
        "Voucher": [
            ("relay", 1, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
            ("peer", 2, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
            ("expiration", 3, _F.TYPE_UINT64, _F.LABEL_OPTIONAL),
        ],
    },
)
HopMessage: Any = _relay["HopMessage"]
"""Circuit Relay v2 ``HopMessage`` (``/libp2p/circuit/relay/0.2.0/hop``)."""
StopMessage: Any = _relay["StopMessage"]
"""Circuit Relay v2 ``StopMessage`` (``/libp2p/circuit/relay/0.2.0/stop``)."""
Voucher: Any = _relay["Voucher"]
"""The reservation voucher carried in a signed envelope."""

_envelope = _build(
    "ucsdk/envelope.proto",
    "record.pb",
    "proto3",
    {
        # public_key is a serialized libp2p crypto PublicKey message (same wire type).
        "Envelope": [
            ("public_key", 1, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
            ("payload_type", 2, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
            ("payload", 3, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
            ("signature", 5, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
        ],
    },
)
Envelope: Any = _envelope["Envelope"]
"""A signed envelope (libp2p RFC 0002)."""

_holepunch = _build(
    "ucsdk/holepunch.proto",
    "holepunch.pb",
    "proto2",
    {
        "HolePunch": [
            ("type", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL),
            ("ObsAddrs", 2, _F.TYPE_BYTES, _F.LABEL_REPEATED),
        ]
    },
)
HolePunch: Any = _holepunch["HolePunch"]
"""DCUtR ``HolePunch{type: CONNECT=100 | SYNC=300; repeated bytes ObsAddrs=2}``."""

__all__ = [
    "AutoNATMessage",
    "Envelope",
    "HolePunch",
    "HopMessage",
    "Peer",
    "StopMessage",
    "Voucher",
]
