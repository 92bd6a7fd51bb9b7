from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[Status]
    OK: _ClassVar[Status]
    ERROR: _ClassVar[Status]
UNKNOWN: Status
OK: Status
ERROR: Status

class Metadata(_message.Message):
    __slots__ = ("clientVersion", "timestamp")
    CLIENTVERSION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    clientVersion: str
    timestamp: int
    def __init__(self, clientVersion: _Optional[str] = ..., timestamp: _Optional[int] = ...) -> None: ...

class DirectMessageRequest(_message.Message):
    __slots__ = ("metadata", "content", "type")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    content: str
    type: str
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., content: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class DirectMessageResponse(_message.Message):
    __slots__ = ("metadata", "status", "statusText")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUSTEXT_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    status: Status
    statusText: str
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., status: _Optional[_Union[Status, str]] = ..., statusText: _Optional[str] = ...) -> None: ...
