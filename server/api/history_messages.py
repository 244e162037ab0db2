"""Domain values of the read side as LiveStreamChat messages."""

from __future__ import annotations

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from server.domain.clock import format_timestamp
from server.domain.history import PostedSuperlike, RankedSupporter
from server.domain.superlike import SenderSnapshot


def sender_snapshot(sender: SenderSnapshot) -> chat_pb2.SenderSnapshot:
    return chat_pb2.SenderSnapshot(
        id=sender.user_id,
        username=sender.username,
        name=sender.name,
        surname=sender.surname,
        profile_photo=sender.profile_photo,
    )


def posted_superlike(superlike: PostedSuperlike) -> chat_pb2.Superlike:
    return chat_pb2.Superlike(
        stream_id=superlike.stream_id,
        sender_id=superlike.sender.user_id,
        sender_snapshot=sender_snapshot(superlike.sender),
        price=superlike.price,
        timestamp=format_timestamp(superlike.created_at_ms),
        superlike_id=superlike.superlike_id,
    )


def top_supporter(supporter: RankedSupporter) -> chat_pb2.TopSupporter:
    return chat_pb2.TopSupporter(
        rank=supporter.rank,
        sender_snapshot=sender_snapshot(supporter.sender),
        coins=supporter.coins,
        superlikes=supporter.superlikes,
    )
