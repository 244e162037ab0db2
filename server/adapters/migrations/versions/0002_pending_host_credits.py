"""Pending host credits: ledger entries folded into wallets after the superlike commits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing entries are all part of their wallets' balances already.
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


def downgrade() -> None:
    op.execute(
        "UPDATE wallets SET balance = balance + (SELECT COALESCE(SUM(amount), 0) FROM ledger_entries e "
        "WHERE e.user_id = wallets.user_id AND NOT e.applied)"
    )
    op.drop_index("ix_ledger_entries_pending_user_id", table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint("ck_ledger_entries_only_credits_pending", type_="check")
        batch.drop_column("applied")
