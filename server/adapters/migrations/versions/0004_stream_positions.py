"""Reading superlikes back: per-stream positions, supporters' running totals, the position key.

- `superlikes.stream_position`: 1, 2, 3, ... per stream in commit order, assigned by the write that
  charges the superlike (it holds the stream's row lock while it does), so history pages and the live
  feed walk one stable order by key. Existing superlikes are numbered by (created_at_ms, id).
- `live_streams.last_position`: the stream's highest position so far.
- `stream_supporters`: each sender's total on each stream, kept by the same write; ranked by an index.
- `service_keys`: the key that seals page tokens and feed cursors, shared by every replica.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("live_streams") as batch:
        batch.add_column(sa.Column("last_position", sa.BigInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("superlikes") as batch:
        batch.add_column(sa.Column("stream_position", sa.BigInteger(), nullable=True))

    # UPDATE ... FROM: PostgreSQL, and SQLite since 3.33.
    op.execute(
        "UPDATE superlikes SET stream_position = numbered.position FROM ("
        " SELECT id, ROW_NUMBER() OVER (PARTITION BY stream_id ORDER BY created_at_ms, id) AS position"
        " FROM superlikes) AS numbered WHERE numbered.id = superlikes.id"
    )
    op.execute(
        "UPDATE live_streams SET last_position = counted.last FROM ("
        " SELECT stream_id, MAX(stream_position) AS last FROM superlikes GROUP BY stream_id) AS counted"
        " WHERE counted.stream_id = live_streams.id"
    )
    op.drop_index("ix_superlikes_stream_id_created_at_ms", table_name="superlikes")
    with op.batch_alter_table("superlikes") as batch:
        batch.alter_column("stream_position", existing_type=sa.BigInteger(), nullable=False)
        batch.create_unique_constraint("uq_superlikes_stream_id", ["stream_id", "stream_position"])

    op.create_table(
        "stream_supporters",
        sa.Column(
            "stream_id",
            sa.String(24),
            sa.ForeignKey("live_streams.id", name="fk_stream_supporters_stream_id_live_streams"),
            nullable=False,
        ),
        sa.Column(
            "sender_id",
            sa.String(24),
            sa.ForeignKey("users.id", name="fk_stream_supporters_sender_id_users"),
            nullable=False,
        ),
        sa.Column("coins", sa.BigInteger(), nullable=False),
        sa.Column("superlikes", sa.BigInteger(), nullable=False),
        sa.Column("reached_at_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "sender_id", name="pk_stream_supporters"),
    )
    op.create_index(
        "ix_stream_supporters_ranking",
        "stream_supporters",
        ["stream_id", "coins", "reached_at_position"],
    )
    op.execute(
        "INSERT INTO stream_supporters (stream_id, sender_id, coins, superlikes, reached_at_position)"
        " SELECT stream_id, sender_id, SUM(price), COUNT(*), MAX(stream_position)"
        " FROM superlikes GROUP BY stream_id, sender_id"
    )

    keys = op.create_table(
        "service_keys",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_service_keys"),
    )
    op.bulk_insert(keys, [{"name": "stream_positions", "secret": os.urandom(32)}])


def downgrade() -> None:
    op.drop_table("service_keys")
    op.drop_index("ix_stream_supporters_ranking", table_name="stream_supporters")
    op.drop_table("stream_supporters")
    with op.batch_alter_table("superlikes") as batch:
        batch.drop_constraint("uq_superlikes_stream_id", type_="unique")
        batch.drop_column("stream_position")
    op.create_index("ix_superlikes_stream_id_created_at_ms", "superlikes", ["stream_id", "created_at_ms"])
    with op.batch_alter_table("live_streams") as batch:
        batch.drop_column("last_position")
