from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendSuperlikeRequest(_message.Message):
    __slots__ = ("stream_id", "request_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    request_id: str
    def __init__(self, stream_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class SenderSnapshot(_message.Message):
    __slots__ = ("id", "username", "name", "surname", "profile_photo")
    ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SURNAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_PHOTO_FIELD_NUMBER: _ClassVar[int]
    id: str
    username: str
    name: str
    surname: str
    profile_photo: str
    def __init__(self, id: _Optional[str] = ..., username: _Optional[str] = ..., name: _Optional[str] = ..., surname: _Optional[str] = ..., profile_photo: _Optional[str] = ...) -> None: ...

class SendSuperlikeResponse(_message.Message):
    __slots__ = ("stream_id", "sender_id", "sender_snapshot", "price", "timestamp", "superlike_id", "sender_balance")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SUPERLIKE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_BALANCE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    sender_id: str
    sender_snapshot: SenderSnapshot
    price: int
    timestamp: str
    superlike_id: str
    sender_balance: int
    def __init__(self, stream_id: _Optional[str] = ..., sender_id: _Optional[str] = ..., sender_snapshot: _Optional[_Union[SenderSnapshot, _Mapping]] = ..., price: _Optional[int] = ..., timestamp: _Optional[str] = ..., superlike_id: _Optional[str] = ..., sender_balance: _Optional[int] = ...) -> None: ...
