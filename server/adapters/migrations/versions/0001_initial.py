"""Initial schema: users, wallets, live streams, chat bans, superlikes, ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

OBJECT_ID = sa.String(24)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", OBJECT_ID, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("surname", sa.String(100), nullable=False),
        sa.Column("profile_photo", sa.String(512), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "wallets",
        sa.Column("user_id", OBJECT_ID, nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("balance >= 0", name="ck_wallets_balance_not_negative"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_wallets_user_id_users"),
        sa.PrimaryKeyConstraint("user_id", name="pk_wallets"),
    )
    op.create_table(
        "live_streams",
        sa.Column("id", OBJECT_ID, nullable=False),
        sa.Column("host_id", OBJECT_ID, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("superlike_price", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("state IN ('scheduled', 'live', 'ended')", name="ck_live_streams_state_known"),
        sa.CheckConstraint("superlike_price >= 0", name="ck_live_streams_price_not_negative"),
        sa.ForeignKeyConstraint(["host_id"], ["users.id"], name="fk_live_streams_host_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_live_streams"),
    )
    op.create_index("ix_live_streams_host_id", "live_streams", ["host_id"])
    op.create_table(
        "chat_bans",
        sa.Column("stream_id", OBJECT_ID, nullable=False),
        sa.Column("user_id", OBJECT_ID, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["stream_id"], ["live_streams.id"], name="fk_chat_bans_stream_id_live_streams"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_chat_bans_user_id_users"),
        sa.PrimaryKeyConstraint("stream_id", "user_id", name="pk_chat_bans"),
    )
    op.create_table(
        "superlikes",
        sa.Column("id", OBJECT_ID, nullable=False),
        sa.Column("stream_id", OBJECT_ID, nullable=False),
        sa.Column("sender_id", OBJECT_ID, nullable=False),
        sa.Column("sender_username", sa.String(64), nullable=False),
        sa.Column("sender_name", sa.String(100), nullable=False),
        sa.Column("sender_surname", sa.String(100), nullable=False),
        sa.Column("sender_profile_photo", sa.String(512), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("sender_balance_after", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(["stream_id"], ["live_streams.id"], name="fk_superlikes_stream_id_live_streams"),
        sa.ForeignKeyConstraint(["sender_id"], ["users.id"], name="fk_superlikes_sender_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_superlikes"),
        sa.UniqueConstraint("sender_id", "idempotency_key", name="uq_superlikes_sender_key"),
    )
    op.create_index("ix_superlikes_stream_id_created_at_ms", "superlikes", ["stream_id", "created_at_ms"])
    op.create_index("ix_superlikes_created_at_ms", "superlikes", ["created_at_ms"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("user_id", OBJECT_ID, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("superlike_id", OBJECT_ID, nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('coin_credit', 'superlike_debit', 'superlike_credit')", name="ck_ledger_entries_kind_known"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_ledger_entries_user_id_users"),
        sa.ForeignKeyConstraint(["superlike_id"], ["superlikes.id"], name="fk_ledger_entries_superlike_id_superlikes"),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
    )
    op.create_index("ix_ledger_entries_user_id", "ledger_entries", ["user_id"])
    op.create_index("ix_ledger_entries_superlike_id", "ledger_entries", ["superlike_id"])


def downgrade() -> None:
    op.drop_table("ledger_entries")
    op.drop_table("superlikes")
    op.drop_table("chat_bans")
    op.drop_table("live_streams")
    op.drop_table("wallets")
    op.drop_table("users")
