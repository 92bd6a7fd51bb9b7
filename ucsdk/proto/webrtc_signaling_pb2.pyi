from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("type", "data")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SDP_OFFER: _ClassVar[Message.Type]
        SDP_ANSWER: _ClassVar[Message.Type]
        ICE_CANDIDATE: _ClassVar[Message.Type]
    SDP_OFFER: Message.Type
    SDP_ANSWER: Message.Type
    ICE_CANDIDATE: Message.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: int
    data: bytes
    def __init__(self, type: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
