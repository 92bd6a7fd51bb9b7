from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class HolePunch(_message.Message):
    __slots__ = ("type", "ObsAddrs")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CONNECT: _ClassVar[HolePunch.Type]
        SYNC: _ClassVar[HolePunch.Type]
    CONNECT: HolePunch.Type
    SYNC: HolePunch.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OBSADDRS_FIELD_NUMBER: _ClassVar[int]
    type: int
    ObsAddrs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, type: _Optional[int] = ..., ObsAddrs: _Optional[_Iterable[bytes]] = ...) -> None: ...
