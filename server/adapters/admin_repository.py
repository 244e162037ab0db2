"""Storage for the operator's use cases (server/services/admin.py): users, wallets, streams, bans.

Not on the request path, so plain SQLAlchemy Core expressions are fine here. Every method runs on
the caller's connection, inside the caller's transaction: Storage.write_transaction's, so on SQLite
the operator's writes queue on the same thread as the server's.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Connection, cast, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.adapters.tables import ChatBan, LedgerEntry, LiveStream, SuperlikeRecord, User, Wallet, pending_credits
from server.domain.accounts import Profile, UserAccount
from server.domain.streams import Stream
from server.domain.superlike import StreamState


class AdminRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def _inserted(self, statement: object) -> bool:
        """Runs an INSERT in a savepoint: False on a unique-key clash, with the transaction still usable
        (PostgreSQL would otherwise refuse every later statement of the transaction)."""
        try:
            with self._connection.begin_nested():
                self._connection.execute(statement)  # type: ignore[arg-type]
        except IntegrityError:
            return False
        return True

    def find_user(self, user_id: str) -> UserAccount | None:
        # SUM over a BIGINT is NUMERIC on PostgreSQL (a Decimal in Python): cast back to an integer.
        pending = (
            select(cast(func.coalesce(func.sum(pending_credits.c.amount), 0), BigInteger))
            .where(pending_credits.c.user_id == User.id)
            .scalar_subquery()
        )
        row = self._connection.execute(
            select(
                User.id,
                User.username,
                User.name,
                User.surname,
                User.profile_photo,
                Wallet.balance,
                pending.label("pending"),
            )
            .join(Wallet, Wallet.user_id == User.id)
            .where(User.id == user_id)
        ).one_or_none()
        if row is None:
            return None
        return UserAccount(
            user_id=row.id,
            profile=Profile(username=row.username, name=row.name, surname=row.surname, profile_photo=row.profile_photo),
            settled_balance=row.balance,
            pending_credits=row.pending,
        )

    def find_user_id_by_username(self, username: str) -> str | None:
        return self._connection.execute(select(User.id).where(User.username == username)).scalar()

    def insert_user(self, user_id: str, profile: Profile, created_at_ms: int) -> bool:
        created = self._inserted(
            insert(User).values(
                id=user_id,
                username=profile.username,
                name=profile.name,
                surname=profile.surname,
                profile_photo=profile.profile_photo,
                created_at_ms=created_at_ms,
            )
        )
        if created:
            self._connection.execute(insert(Wallet).values(user_id=user_id, balance=0))
        return created

    def credit(self, user_id: str, coins: int, created_at_ms: int) -> bool:
        updated = self._connection.execute(
            update(Wallet).where(Wallet.user_id == user_id).values(balance=Wallet.balance + coins)
        )
        if updated.rowcount != 1:
            return False
        self._connection.execute(
            insert(LedgerEntry).values(user_id=user_id, amount=coins, kind="coin_credit", created_at_ms=created_at_ms)
        )
        return True

    def find_stream(self, stream_id: str) -> Stream | None:
        row = self._connection.execute(
            select(LiveStream.id, LiveStream.host_id, LiveStream.state, LiveStream.superlike_price).where(
                LiveStream.id == stream_id
            )
        ).one_or_none()
        if row is None:
            return None
        return Stream(
            stream_id=row.id, host_id=row.host_id, state=StreamState(row.state), superlike_price=row.superlike_price
        )

    def insert_stream(self, stream: Stream, created_at_ms: int) -> bool:
        return self._inserted(
            insert(LiveStream).values(
                id=stream.stream_id,
                host_id=stream.host_id,
                state=stream.state.value,
                superlike_price=stream.superlike_price,
                created_at_ms=created_at_ms,
            )
        )

    def update_stream_state(self, stream_id: str, state: StreamState, from_states: frozenset[StreamState]) -> bool:
        changed = self._connection.execute(
            update(LiveStream)
            .where(LiveStream.id == stream_id, LiveStream.state.in_(sorted(s.value for s in from_states)))
            .values(state=state.value)
        )
        return changed.rowcount == 1

    def add_ban(self, stream_id: str, user_id: str, created_at_ms: int) -> None:
        # Banning twice (or concurrently) is not an error: the ban simply exists.
        self._inserted(insert(ChatBan).values(stream_id=stream_id, user_id=user_id, created_at_ms=created_at_ms))

    def remove_ban(self, stream_id: str, user_id: str) -> None:
        self._connection.execute(delete(ChatBan).where(ChatBan.stream_id == stream_id, ChatBan.user_id == user_id))

    def clear_idempotency_keys(self, created_before_ms: int) -> int:
        """Frees keys of superlikes created before the cutoff; the superlikes themselves stay."""
        result = self._connection.execute(
            update(SuperlikeRecord)
            .where(SuperlikeRecord.idempotency_key.is_not(None), SuperlikeRecord.created_at_ms < created_before_ms)
            .values(idempotency_key=None)
        )
        return int(result.rowcount)
