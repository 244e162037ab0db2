"""Operator actions behind the `livechat admin` commands, and the ledger audit.

Not on the request path, so plain SQLAlchemy Core expressions are fine here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.adapters.database import READ_ONLY_OPTION, is_sqlite

from server.adapters.tables import ChatBan, LedgerEntry, LiveStream, SuperlikeRecord, User, Wallet
from server.domain import errors
from server.domain.clock import now_ms
from server.domain.ids import is_object_id, new_object_id, normalize_object_id
from server.domain.superlike import StreamState


def _object_id(value: str, what: str) -> str:
    if not is_object_id(value):
        raise errors.InvalidAdminInput(f"{what} must be a 24-character hex id")
    return normalize_object_id(value)


def _non_negative(value: int, what: str) -> int:
    if value < 0:
        raise errors.InvalidAdminInput(f"{what} must not be negative")
    return value


class AdminRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def create_user(
        self,
        *,
        username: str,
        name: str,
        surname: str,
        profile_photo: str,
        coins: int,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        _non_negative(coins, "coins")
        if not username:
            raise errors.InvalidAdminInput("username must not be empty")
        now = now_ms()
        user_id = _object_id(user_id, "user id") if user_id else new_object_id(now)
        try:
            await self._connection.execute(
                insert(User).values(
                    id=user_id,
                    username=username,
                    name=name,
                    surname=surname,
                    profile_photo=profile_photo,
                    created_at_ms=now,
                )
            )
        except IntegrityError as error:
            raise errors.Conflict(f"a user with id {user_id} or username {username!r} exists") from error
        await self._connection.execute(insert(Wallet).values(user_id=user_id, balance=0))
        if coins:
            await self._credit(user_id, coins, now)
        return await self.get_user(user_id)

    async def get_user(self, user_id: str) -> dict[str, Any]:
        user_id = _object_id(user_id, "user id")
        pending = (
            select(func.coalesce(func.sum(LedgerEntry.amount), 0))
            .where(LedgerEntry.user_id == User.id, LedgerEntry.applied.is_(False))
            .scalar_subquery()
        )
        row = (
            await self._connection.execute(
                select(
                    User.id, User.username, User.name, User.surname, User.profile_photo, Wallet.balance,
                    pending.label("pending"),
                )
                .join(Wallet, Wallet.user_id == User.id)
                .where(User.id == user_id)
            )
        ).one_or_none()
        if row is None:
            raise errors.UserNotFound()
        return {
            "id": row.id,
            "username": row.username,
            "name": row.name,
            "surname": row.surname,
            "profilePhoto": row.profile_photo,
            # What the user owns, including superlike earnings not yet folded into the wallet; only
            # the settled part can be spent until the settlement task (sub-second) folds the rest.
            "balance": row.balance + row.pending,
            "pendingCredits": row.pending,
        }

    async def credit_coins(self, user_id: str, coins: int) -> dict[str, Any]:
        user_id = _object_id(user_id, "user id")
        if coins <= 0:
            raise errors.InvalidAdminInput("coins must be positive")
        await self._credit(user_id, coins, now_ms())
        return await self.get_user(user_id)

    async def _credit(self, user_id: str, coins: int, now: int) -> None:
        updated = await self._connection.execute(
            update(Wallet).where(Wallet.user_id == user_id).values(balance=Wallet.balance + coins)
        )
        if updated.rowcount != 1:
            raise errors.UserNotFound()
        await self._connection.execute(
            insert(LedgerEntry).values(user_id=user_id, amount=coins, kind="coin_credit", created_at_ms=now)
        )

    async def create_stream(
        self, *, host_id: str, price: int, state: StreamState, stream_id: str | None = None
    ) -> dict[str, Any]:
        host_id = _object_id(host_id, "host id")
        _non_negative(price, "price")
        await self.get_user(host_id)
        now = now_ms()
        stream_id = _object_id(stream_id, "stream id") if stream_id else new_object_id(now)
        try:
            await self._connection.execute(
                insert(LiveStream).values(
                    id=stream_id, host_id=host_id, state=state.value, superlike_price=price, created_at_ms=now
                )
            )
        except IntegrityError as error:
            raise errors.Conflict(f"a stream with id {stream_id} exists") from error
        return await self.get_stream(stream_id)

    async def get_stream(self, stream_id: str) -> dict[str, Any]:
        stream_id = _object_id(stream_id, "stream id")
        row = (
            await self._connection.execute(
                select(LiveStream.id, LiveStream.host_id, LiveStream.state, LiveStream.superlike_price).where(
                    LiveStream.id == stream_id
                )
            )
        ).one_or_none()
        if row is None:
            raise errors.StreamNotFound()
        return {"id": row.id, "hostId": row.host_id, "state": row.state, "superlikePrice": row.superlike_price}

    async def set_stream_state(self, stream_id: str, state: StreamState) -> dict[str, Any]:
        current = await self.get_stream(stream_id)
        allowed = {
            StreamState.LIVE: {StreamState.SCHEDULED.value},
            StreamState.ENDED: {StreamState.SCHEDULED.value, StreamState.LIVE.value},
        }
        allowed_from = allowed.get(state, set())
        if current["state"] not in allowed_from:
            raise errors.Conflict(f"stream is {current['state']}; it cannot become {state.value}")
        # Conditional on the state just read: a concurrent end-stream must not be undone by a start.
        changed = await self._connection.execute(
            update(LiveStream)
            .where(LiveStream.id == current["id"], LiveStream.state.in_(allowed_from))
            .values(state=state.value)
        )
        if changed.rowcount != 1:
            raise errors.Conflict(f"stream {current['id']} changed state concurrently; retry")
        return await self.get_stream(current["id"])

    async def ban(self, stream_id: str, user_id: str) -> dict[str, Any]:
        stream = await self.get_stream(stream_id)
        user = await self.get_user(user_id)
        # Banning twice (or concurrently) is not an error: the ban simply exists.
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        await self._connection.execute(
            dialect.insert(ChatBan)
            .values(stream_id=stream["id"], user_id=user["id"], created_at_ms=now_ms())
            .on_conflict_do_nothing()
        )
        return {"streamId": stream["id"], "userId": user["id"], "banned": True}

    async def unban(self, stream_id: str, user_id: str) -> dict[str, Any]:
        stream = await self.get_stream(stream_id)
        user = await self.get_user(user_id)
        await self._connection.execute(
            delete(ChatBan).where(ChatBan.stream_id == stream["id"], ChatBan.user_id == user["id"])
        )
        return {"streamId": stream["id"], "userId": user["id"], "banned": False}

    async def purge_idempotency_keys(self, older_than_ms: int) -> int:
        """Frees keys of superlikes created before the cutoff; the superlikes themselves stay."""
        result = await self._connection.execute(
            update(SuperlikeRecord)
            .where(SuperlikeRecord.idempotency_key.is_not(None), SuperlikeRecord.created_at_ms < older_than_ms)
            .values(idempotency_key=None)
        )
        return int(result.rowcount)


@dataclass(frozen=True)
class AuditReport:
    wallets: int
    superlikes: int
    total_balance: int
    pending_credits: int
    coins_issued: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "wallets": self.wallets,
            "superlikes": self.superlikes,
            "totalBalance": self.total_balance,
            "pendingCredits": self.pending_credits,
            "coinsIssued": self.coins_issued,
            "problems": self.problems,
        }


async def audit_database(engine: AsyncEngine) -> AuditReport:
    """The audit on one consistent snapshot, while servers keep writing and settling.

    The checks span several statements; under READ COMMITTED a settlement committing between two of
    them would look like coins vanishing. PostgreSQL gets REPEATABLE READ; SQLite a read transaction
    (a snapshot in WAL mode) that does not take the write lock.
    """
    async with engine.connect() as connection:
        if is_sqlite(engine):
            connection = await connection.execution_options(**{READ_ONLY_OPTION: True})
        else:
            connection = await connection.execution_options(isolation_level="REPEATABLE READ")
        async with connection.begin():
            return await audit_ledger(connection)


async def audit_ledger(connection: AsyncConnection, *, max_listed: int = 20) -> AuditReport:
    """Checks the money invariants inside the caller's transaction (see audit_database for a live one).

    1. every wallet balance equals the sum of its applied ledger entries, and none is negative;
    2. the sum of all balances plus pending (unapplied) credits equals the coins ever issued
       (coin_credit entries): superlikes only move coins, never create or destroy them;
    3. every superlike has exactly one debit of -price from its sender and one credit of +price to its
       stream's host, and no superlike ledger entry lacks its superlike.
    """
    problems: list[str] = []
    entry_sums = (
        select(LedgerEntry.user_id, func.coalesce(func.sum(LedgerEntry.amount), 0).label("total"))
        .where(LedgerEntry.applied.is_(True))
        .group_by(LedgerEntry.user_id)
        .subquery()
    )
    mismatched = await connection.execute(
        select(Wallet.user_id, Wallet.balance, func.coalesce(entry_sums.c.total, 0))
        .outerjoin(entry_sums, entry_sums.c.user_id == Wallet.user_id)
        .where((Wallet.balance != func.coalesce(entry_sums.c.total, 0)) | (Wallet.balance < 0))
        .limit(max_listed)
    )
    for user_id, balance, total in mismatched:
        problems.append(f"wallet {user_id}: balance {balance} but its applied ledger entries sum to {total}")

    wallets, total_balance = (
        await connection.execute(select(func.count(), func.coalesce(func.sum(Wallet.balance), 0)))
    ).one()
    coins_issued, pending = (
        await connection.execute(
            select(
                func.coalesce(func.sum(case((LedgerEntry.kind == "coin_credit", LedgerEntry.amount))), 0),
                func.coalesce(func.sum(case((LedgerEntry.applied.is_(False), LedgerEntry.amount))), 0),
            )
        )
    ).one()
    if total_balance + pending != coins_issued:
        problems.append(
            f"balances sum to {total_balance} with {pending} pending, but {coins_issued} coins were issued"
        )

    superlikes = (await connection.execute(select(func.count()).select_from(SuperlikeRecord))).scalar_one()
    # One pass: each superlike joined to its entries through the index on ledger_entries.superlike_id,
    # the only join condition, so no planner can pick another path. (Correlated counts filtered by
    # user id let SQLite walk a sender's or a hot host's whole history per superlike; a join of two
    # aggregates became a quadratic nested loop on PostgreSQL without statistics.)
    entry = LedgerEntry.__table__.alias("entry")
    is_debit = and_(
        entry.c.kind == "superlike_debit",
        entry.c.user_id == SuperlikeRecord.sender_id,
        entry.c.amount == -SuperlikeRecord.price,
    )
    is_credit = and_(
        entry.c.kind == "superlike_credit",
        entry.c.user_id == LiveStream.host_id,
        entry.c.amount == SuperlikeRecord.price,
    )
    broken = await connection.execute(
        select(SuperlikeRecord.id)
        .join(LiveStream, LiveStream.id == SuperlikeRecord.stream_id)
        .outerjoin(entry, entry.c.superlike_id == SuperlikeRecord.id)
        .group_by(SuperlikeRecord.id, LiveStream.host_id)
        .having(
            (func.count(entry.c.id) != 2)
            | (func.sum(case((is_debit, 1), else_=0)) != 1)
            | (func.sum(case((is_credit, 1), else_=0)) != 1)
        )
        .limit(max_listed)
    )
    for (superlike_id,) in broken:
        problems.append(f"superlike {superlike_id}: ledger entries do not match its price, sender and host")
    orphans = (
        await connection.execute(
            select(func.count())
            .select_from(LedgerEntry)
            .outerjoin(SuperlikeRecord, SuperlikeRecord.id == LedgerEntry.superlike_id)
            .where(LedgerEntry.kind != "coin_credit", SuperlikeRecord.id.is_(None))
        )
    ).scalar_one()
    if orphans:
        problems.append(f"{orphans} superlike ledger entries have no superlike")
    return AuditReport(
        wallets=int(wallets),
        superlikes=int(superlikes),
        total_balance=int(total_balance),
        pending_credits=int(pending),
        coins_issued=int(coins_issued),
        problems=problems,
    )
