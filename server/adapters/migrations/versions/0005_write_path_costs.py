"""Less database work per superlike, and top supporters read without a sort.

- `ix_stream_supporters_ranking` becomes (stream_id, coins DESC, reached_at_position): the order
  ListTopSupporters reads, so the top N are the index's first N entries.

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


def upgrade() -> None:
    op.drop_index("ix_stream_supporters_ranking", table_name="stream_supporters")
    op.create_index(
        "ix_stream_supporters_ranking",
        "stream_supporters",
        ["stream_id", sa.desc(sa.column("coins")), "reached_at_position"],
    )


def downgrade() -> None:
    op.drop_index("ix_stream_supporters_ranking", table_name="stream_supporters")
    op.create_index("ix_stream_supporters_ranking", "stream_supporters", ["stream_id", "coins", "reached_at_position"])
