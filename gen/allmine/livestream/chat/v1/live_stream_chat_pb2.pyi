from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
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

class ListSuperlikesRequest(_message.Message):
    __slots__ = ("stream_id", "page_size", "page_token")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    page_size: int
    page_token: str
    def __init__(self, stream_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSuperlikesResponse(_message.Message):
    __slots__ = ("superlikes", "next_page_token")
    SUPERLIKES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    superlikes: _containers.RepeatedCompositeFieldContainer[Superlike]
    next_page_token: str
    def __init__(self, superlikes: _Optional[_Iterable[_Union[Superlike, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Superlike(_message.Message):
    __slots__ = ("stream_id", "sender_id", "sender_snapshot", "price", "timestamp", "superlike_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SUPERLIKE_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    sender_id: str
    sender_snapshot: SenderSnapshot
    price: int
    timestamp: str
    superlike_id: str
    def __init__(self, stream_id: _Optional[str] = ..., sender_id: _Optional[str] = ..., sender_snapshot: _Optional[_Union[SenderSnapshot, _Mapping]] = ..., price: _Optional[int] = ..., timestamp: _Optional[str] = ..., superlike_id: _Optional[str] = ...) -> None: ...

class ListTopSupportersRequest(_message.Message):
    __slots__ = ("stream_id", "limit")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    limit: int
    def __init__(self, stream_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTopSupportersResponse(_message.Message):
    __slots__ = ("supporters",)
    SUPPORTERS_FIELD_NUMBER: _ClassVar[int]
    supporters: _containers.RepeatedCompositeFieldContainer[TopSupporter]
    def __init__(self, supporters: _Optional[_Iterable[_Union[TopSupporter, _Mapping]]] = ...) -> None: ...

class TopSupporter(_message.Message):
    __slots__ = ("rank", "sender_snapshot", "coins", "superlikes")
    RANK_FIELD_NUMBER: _ClassVar[int]
    SENDER_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    COINS_FIELD_NUMBER: _ClassVar[int]
    SUPERLIKES_FIELD_NUMBER: _ClassVar[int]
    rank: int
    sender_snapshot: SenderSnapshot
    coins: int
    superlikes: int
    def __init__(self, rank: _Optional[int] = ..., sender_snapshot: _Optional[_Union[SenderSnapshot, _Mapping]] = ..., coins: _Optional[int] = ..., superlikes: _Optional[int] = ...) -> None: ...

class StreamSuperlikesRequest(_message.Message):
    __slots__ = ("stream_id", "after")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    after: str
    def __init__(self, stream_id: _Optional[str] = ..., after: _Optional[str] = ...) -> None: ...

class StreamSuperlikesResponse(_message.Message):
    __slots__ = ("superlike", "cursor")
    SUPERLIKE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    superlike: Superlike
    cursor: str
    def __init__(self, superlike: _Optional[_Union[Superlike, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...

class StreamSuperlikeEventsRequest(_message.Message):
    __slots__ = ("stream_id", "after", "backlog")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    after: str
    backlog: int
    def __init__(self, stream_id: _Optional[str] = ..., after: _Optional[str] = ..., backlog: _Optional[int] = ...) -> None: ...
