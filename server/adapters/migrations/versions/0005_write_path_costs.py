"""Less database work per superlike, and top supporters read without a sort.

- `ix_stream_supporters_ranking` becomes (stream_id, coins DESC, reached_at_position): the order
  ListTopSupporters reads, so the top N are the index's first N entries.
- Pending host credits move from a flag on their ledger entries (`applied`, in the predicate of a
  partial index, so settling rewrote every credit entry and its three index entries) to a queue,
  `pending_credits`, of one row per host and write: settling deletes those rows. Credits pending at
  the upgrade are queued as one row per host. The ledger is insert-only from here on.
- PostgreSQL only: autovacuum visits the queue after every thousand deleted rows.
- The superlikes' two indexes on idempotency keys (sender and key, unique; age, for the purge) hold
  only superlikes that have a key: a superlike sent without one no longer writes an entry in either.
- PostgreSQL only: wallets keep room on each page (fill factor 85) for HOT balance updates. The table
  is rebuilt, so the pages it already has get that room too.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen here rather than imported: a migration must keep doing what it did when it was written.
WALLETS_FILLFACTOR = 85
PENDING_CREDITS_STORAGE = {"autovacuum_vacuum_scale_factor": 0, "autovacuum_vacuum_threshold": 1000}
_KEYED = "idempotency_key IS NOT NULL"


def upgrade() -> None:
    op.drop_index("ix_stream_supporters_ranking", table_name="stream_supporters")
    op.create_index(
        "ix_stream_supporters_ranking",
        "stream_supporters",
        ["stream_id", sa.desc(sa.column("coins")), "reached_at_position"],
    )

    with op.batch_alter_table("superlikes") as batch:
        batch.drop_constraint("uq_superlikes_sender_key", type_="unique")
    op.create_index(
        "uq_superlikes_sender_key",
        "superlikes",
        ["sender_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text(_KEYED),
        sqlite_where=sa.text(_KEYED),
    )
    op.drop_index("ix_superlikes_created_at_ms", table_name="superlikes")
    op.create_index(
        "ix_superlikes_keyed_created_at_ms",
        "superlikes",
        ["created_at_ms"],
        postgresql_where=sa.text(_KEYED),
        sqlite_where=sa.text(_KEYED),
    )

    op.create_table(
        "pending_credits",
        sa.Column("user_id", sa.String(24), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.CheckConstraint("amount >= 0 AND entries > 0", name="ck_pending_credits_counts_positive"),
        postgresql_with=PENDING_CREDITS_STORAGE,
    )
    op.execute(
        "INSERT INTO pending_credits (user_id, amount, entries)"
        " SELECT user_id, SUM(amount), COUNT(*) FROM ledger_entries WHERE NOT applied GROUP BY user_id"
    )
    op.drop_index("ix_ledger_entries_pending_user_id", table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint("ck_ledger_entries_only_credits_pending", type_="check")
        batch.drop_column("applied")

    # Table options are declared per database, like the partial indexes of 0002: SQLite has no fill
    # factor and rebuilds the table all the same.
    with op.batch_alter_table(
        "wallets", recreate="always", table_kwargs={"postgresql_with": {"fillfactor": WALLETS_FILLFACTOR}}
    ):
        pass


def downgrade() -> None:
    with op.batch_alter_table("wallets", recreate="always", table_kwargs={"postgresql_with": {}}):
        pass

    # Which entries were pending is not kept, only how much each host is owed: settle it all, so
    # every entry is applied, as the `applied` column says when it comes back.
    op.execute(
        "UPDATE wallets SET balance = balance + (SELECT SUM(amount) FROM pending_credits p"
        " WHERE p.user_id = wallets.user_id) WHERE user_id IN (SELECT user_id FROM pending_credits)"
    )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("applied", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.create_check_constraint("ck_ledger_entries_only_credits_pending", "applied OR kind = 'superlike_credit'")
    op.create_index(
        "ix_ledger_entries_pending_user_id",
        "ledger_entries",
        ["user_id"],
        postgresql_where=sa.text("NOT applied"),
        sqlite_where=sa.text("NOT applied"),
    )
    op.drop_table("pending_credits")

    op.drop_index("ix_superlikes_keyed_created_at_ms", table_name="superlikes")
    op.create_index("ix_superlikes_created_at_ms", "superlikes", ["created_at_ms"])
    op.drop_index("uq_superlikes_sender_key", table_name="superlikes")
    with op.batch_alter_table("superlikes") as batch:
        batch.create_unique_constraint("uq_superlikes_sender_key", ["sender_id", "idempotency_key"])

    op.drop_index("ix_stream_supporters_ranking", table_name="stream_supporters")
    op.create_index("ix_stream_supporters_ranking", "stream_supporters", ["stream_id", "coins", "reached_at_position"])
