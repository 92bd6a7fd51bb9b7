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
    proto = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax=syntax)
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for name, number, field_type, label in fields:
            message.field.add(name=name, number=number, type=field_type, label=label)
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

__all__ = ["Peer"]
