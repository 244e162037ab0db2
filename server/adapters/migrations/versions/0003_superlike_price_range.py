"""Superlike prices are 1 to 1,000,000 coins (a free superlike was accepted before).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen here rather than imported: a migration must keep doing what it did when it was written.
MIN_PRICE = 1
MAX_PRICE = 1_000_000


def upgrade() -> None:
    # Only a price of 0 could be stored before (the old CHECK was `>= 0`, the column an INTEGER whose
    # values fit the new upper bound unless set by hand). Such a stream keeps running at the lowest
    # real price; superlikes already sent keep the price they were charged.
    op.execute(f"UPDATE live_streams SET superlike_price = {MIN_PRICE} WHERE superlike_price < {MIN_PRICE}")
    op.execute(f"UPDATE live_streams SET superlike_price = {MAX_PRICE} WHERE superlike_price > {MAX_PRICE}")
    # SQLite rebuilds the table (batch mode); server.adapters.schema runs migrations with its foreign
    # keys switched off, as the rebuild of a referenced table requires, and checks them before COMMIT.
    with op.batch_alter_table("live_streams") as batch:
        batch.drop_constraint("ck_live_streams_price_not_negative", type_="check")
        batch.create_check_constraint(
            "ck_live_streams_price_in_range", f"superlike_price BETWEEN {MIN_PRICE} AND {MAX_PRICE}"
        )


def downgrade() -> None:
    with op.batch_alter_table("live_streams") as batch:
        batch.drop_constraint("ck_live_streams_price_in_range", type_="check")
        batch.create_check_constraint("ck_live_streams_price_not_negative", "superlike_price >= 0")
