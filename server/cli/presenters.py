"""The JSON documents `livechat admin` prints: camelCase keys, integers as JSON numbers.

Operators and scripts read these; the shapes are documented in README.md (CLI).
"""

from __future__ import annotations

from typing import Any

from server.adapters.audit import AuditReport
from server.domain.accounts import UserAccount
from server.domain.streams import ChatBanStatus, Stream, StreamStateChange


def user_json(account: UserAccount) -> dict[str, Any]:
    return {
        "id": account.user_id,
        "username": account.profile.username,
        "name": account.profile.name,
        "surname": account.profile.surname,
        "profilePhoto": account.profile.profile_photo,
        # What the user owns, including superlike earnings not yet folded into the wallet; only the
        # settled part can be spent until the settlement task (sub-second) folds the rest.
        "balance": account.balance,
        "pendingCredits": account.pending_credits,
    }


def stream_json(stream: Stream) -> dict[str, Any]:
    return {
        "id": stream.stream_id,
        "hostId": stream.host_id,
        "state": stream.state.value,
        "superlikePrice": stream.superlike_price,
    }


def state_change_json(change: StreamStateChange) -> dict[str, Any]:
    """The stream after start-stream/end-stream; `changed` is false when it already was in that state."""
    return {**stream_json(change.stream), "previousState": change.previous_state.value, "changed": change.changed}


def ban_json(status: ChatBanStatus) -> dict[str, Any]:
    return {"streamId": status.stream_id, "userId": status.user_id, "banned": status.banned}


def audit_json(report: AuditReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "wallets": report.wallets,
        "superlikes": report.superlikes,
        "totalBalance": report.total_balance,
        "pendingCredits": report.pending_credits,
        "coinsIssued": report.coins_issued,
        "problems": report.problems,
    }
