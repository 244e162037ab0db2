"""The schema, declared once: Alembic migrations are checked against it and queries are built from it.

Times are integer UTC milliseconds (`*_at_ms`): exact, portable between SQLite and PostgreSQL, and the
contract's timestamp is rendered from them without time-zone surprises.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.domain.streams import MAX_SUPERLIKE_PRICE, MIN_SUPERLIKE_PRICE

# Room left free on each wallets page for new row versions (PostgreSQL), so balance updates stay HOT.
WALLETS_FILLFACTOR = 85
# pending_credits is a queue, inserted into and deleted from all day: autovacuum should visit it after
# every thousand deleted rows rather than after 20 % of the table (its default, made for tables that
# mostly grow). The settlement vacuums it too (postgres/settlement.py).
PENDING_CREDITS_STORAGE = {"autovacuum_vacuum_scale_factor": 0, "autovacuum_vacuum_threshold": 1000}

# Deterministic constraint names, so migrations can name what they alter on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ObjectId = String(24)
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
LedgerEntryId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(ObjectId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    surname: Mapped[str] = mapped_column(String(100))
    profile_photo: Mapped[str] = mapped_column(String(512), default="")
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Wallet(Base):
    """One coin wallet per user. The CHECK is the last line of defence against overdrafts.

    Every superlike updates its sender's wallet. `balance` is in no index, so PostgreSQL can write the
    new row version on the same page without touching the index (a HOT update) - when the page has
    room, which the fill factor keeps (migration 0005)."""

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        {"postgresql_with": {"fillfactor": WALLETS_FILLFACTOR}},
    )

    user_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("users.id"), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger)


class LiveStream(Base):
    __tablename__ = "live_streams"
    __table_args__ = (
        CheckConstraint("state IN ('scheduled', 'live', 'ended')", name="state_known"),
        # The domain's price range (server/domain/streams.py), enforced by the database as well.
        CheckConstraint(
            f"superlike_price BETWEEN {MIN_SUPERLIKE_PRICE} AND {MAX_SUPERLIKE_PRICE}", name="price_in_range"
        ),
    )

    id: Mapped[str] = mapped_column(ObjectId, primary_key=True)
    host_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    superlike_price: Mapped[int] = mapped_column(Integer, default=10)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    # The highest superlike position on this stream; the write that charges a superlike takes the next.
    last_position: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ChatBan(Base):
    __tablename__ = "chat_bans"

    stream_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("live_streams.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("users.id"), primary_key=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class SuperlikeRecord(Base):
    """A superlike as sent: the sender's snapshot and the price are copied, never joined later.

    `idempotency_key` is unique per sender while retained; the purge sets it to NULL after the
    retention window, which frees the key without touching the superlike itself. The two indexes
    on keys hold only the superlikes that have one: a superlike sent without a key (or whose key was
    purged) is looked up by neither, and costs no entry in them.
    """

    __tablename__ = "superlikes"
    __table_args__ = (
        Index(
            "uq_superlikes_sender_key",
            "sender_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
        # The purge finds the keys past the retention window by age.
        Index(
            "ix_superlikes_keyed_created_at_ms",
            "created_at_ms",
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
        # History pages and the live feed walk a stream's superlikes by this key.
        UniqueConstraint("stream_id", "stream_position", name="uq_superlikes_stream_id"),
    )

    id: Mapped[str] = mapped_column(ObjectId, primary_key=True)
    stream_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("live_streams.id"))
    sender_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("users.id"))
    sender_username: Mapped[str] = mapped_column(String(64))
    sender_name: Mapped[str] = mapped_column(String(100))
    sender_surname: Mapped[str] = mapped_column(String(100))
    sender_profile_photo: Mapped[str] = mapped_column(String(512))
    price: Mapped[int] = mapped_column(Integer)
    sender_balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # 1, 2, 3, ... per stream in commit order (see LiveStream.last_position).
    stream_position: Mapped[int] = mapped_column(BigInteger)


class LedgerEntry(Base):
    """Every coin movement, append-only: rows are inserted and never changed.

    kinds: `coin_credit` brings coins into the system (purchase, grant), `superlike_debit` and
    `superlike_credit` move a superlike's price from sender to host and always come in pairs.

    A wallet's balance includes all of its entries except the host credits still waiting in
    `pending_credits`. Invariant: balance + pending credits == sum of the wallet's entries.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('coin_credit', 'superlike_debit', 'superlike_credit')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(LedgerEntryId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("users.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    superlike_id: Mapped[str | None] = mapped_column(ObjectId, ForeignKey("superlikes.id"), nullable=True, index=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


# Host credits written but not yet in the host's wallet: each write of superlikes adds one row per host
# (its `entries` superlike_credit entries, `amount` coins), and the settlement (settlement.py) deletes
# the rows it adds to wallets. Hosts' wallet rows are thus never written by superlikes, so superlikes
# on one hot stream do not queue on them, and the ledger stays insert-only: settling is a delete here
# rather than an update of every credit entry (which, with its flag in an index, could never be HOT).
# A queue, not a record: no key (nothing looks a row up), vacuumed often on PostgreSQL, and no foreign
# key: each row is written by the statement that writes the host's credit entries for the same user,
# whose foreign key checks it; checking it again cost superlikes on streams of their own (a row each)
# 3 % more database CPU. The audit checks every wallet against its pending rows.
pending_credits = Table(
    "pending_credits",
    Base.metadata,
    Column("user_id", ObjectId, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("entries", Integer, nullable=False),
    CheckConstraint("amount >= 0 AND entries > 0", name="counts_positive"),
    postgresql_with=PENDING_CREDITS_STORAGE,
)


class StreamSupporter(Base):
    """A sender's running total on a stream, kept by the write that charges each superlike.

    `reached_at_position` is the position of the sender's latest superlike on the stream: of equal
    totals, the one reached first (lower position) ranks higher.
    """

    __tablename__ = "stream_supporters"

    stream_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("live_streams.id"), primary_key=True)
    sender_id: Mapped[str] = mapped_column(ObjectId, ForeignKey("users.id"), primary_key=True)
    coins: Mapped[int] = mapped_column(BigInteger)
    superlikes: Mapped[int] = mapped_column(BigInteger)
    reached_at_position: Mapped[int] = mapped_column(BigInteger)


# Top supporters are read by walking this index from the start: highest total first, of equal totals
# the earliest. (An all-ascending index read backwards gives the ties latest first, so the reader had
# to fetch and sort every supporter tied at the cut-off.) `coins` being in it makes every update of a
# running total a non-HOT update - the price of reading the ranking without sorting.
Index(
    "ix_stream_supporters_ranking",
    StreamSupporter.stream_id,
    StreamSupporter.coins.desc(),
    StreamSupporter.reached_at_position,
)


class ServiceKey(Base):
    """Secrets every replica must share, created by the migrations (e.g. the page-token key)."""

    __tablename__ = "service_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
