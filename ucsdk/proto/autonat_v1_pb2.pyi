from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("type", "dial", "dialResponse")
    class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DIAL: _ClassVar[Message.MessageType]
        DIAL_RESPONSE: _ClassVar[Message.MessageType]
    DIAL: Message.MessageType
    DIAL_RESPONSE: Message.MessageType
    class ResponseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[Message.ResponseStatus]
        E_DIAL_ERROR: _ClassVar[Message.ResponseStatus]
        E_DIAL_REFUSED: _ClassVar[Message.ResponseStatus]
        E_BAD_REQUEST: _ClassVar[Message.ResponseStatus]
        E_INTERNAL_ERROR: _ClassVar[Message.ResponseStatus]
    OK: Message.ResponseStatus
    E_DIAL_ERROR: Message.ResponseStatus
    E_DIAL_REFUSED: Message.ResponseStatus
    E_BAD_REQUEST: Message.ResponseStatus
    E_INTERNAL_ERROR: Message.ResponseStatus
    class PeerInfo(_message.Message):
        __slots__ = ("id", "addrs")
        ID_FIELD_NUMBER: _ClassVar[int]
        ADDRS_FIELD_NUMBER: _ClassVar[int]
        id: bytes
        addrs: _containers.RepeatedScalarFieldContainer[bytes]
        def __init__(self, id: _Optional[bytes] = ..., addrs: _Optional[_Iterable[bytes]] = ...) -> None: ...
    class Dial(_message.Message):
        __slots__ = ("peer",)
        PEER_FIELD_NUMBER: _ClassVar[int]
        peer: Message.PeerInfo
        def __init__(self, peer: _Optional[_Union[Message.PeerInfo, _Mapping]] = ...) -> None: ...
    class DialResponse(_message.Message):
        __slots__ = ("status", "statusText", "addr")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        STATUSTEXT_FIELD_NUMBER: _ClassVar[int]
        ADDR_FIELD_NUMBER: _ClassVar[int]
        status: int
        statusText: str
        addr: bytes
        def __init__(self, status: _Optional[int] = ..., statusText: _Optional[str] = ..., addr: _Optional[bytes] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DIAL_FIELD_NUMBER: _ClassVar[int]
    DIALRESPONSE_FIELD_NUMBER: _ClassVar[int]
    type: int
    dial: Message.Dial
    dialResponse: Message.DialResponse
    def __init__(self, type: _Optional[int] = ..., dial: _Optional[_Union[Message.Dial, _Mapping]] = ..., dialResponse: _Optional[_Union[Message.DialResponse, _Mapping]] = ...) -> None: ...
