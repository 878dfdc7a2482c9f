"""Follow-ups: problem changes acknowledged by intake and not yet correlated or enriched. Notifications
drop ``parsed``, a copy of the normalized fields nothing read (the raw body stays).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, JSONType, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "follow_ups",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "problem_id",
            BigId,
            sa.ForeignKey("problems.id", ondelete="CASCADE", name="fk_follow_ups_problem_id_problems"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_follow_ups_user_id_users"),
            nullable=False,
        ),
        sa.Column("created", sa.Boolean, nullable=False),
        sa.Column("correlate", sa.Boolean, nullable=False),
        sa.Column("enrich", sa.Boolean, nullable=False),
        sa.Column("previous_keys", JSONType, nullable=True),
        sa.Column("states", JSONType, nullable=False),
        sa.Column("next_at", sa.BigInteger, nullable=False),
        sa.Column("queued_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_follow_ups"),
        sa.UniqueConstraint("problem_id", name="uq_follow_ups_problem_id"),
    )
    op.create_index("ix_follow_ups_user_next", "follow_ups", ["user_id", "next_at", "id"])
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("parsed")


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("parsed", JSONType, nullable=False, server_default="{}"))
    op.drop_index("ix_follow_ups_user_next", table_name="follow_ups")
    op.drop_table("follow_ups")
