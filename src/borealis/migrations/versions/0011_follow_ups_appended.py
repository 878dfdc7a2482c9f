"""Follow-ups are appended, one row per change, and merged per problem when carried out: the webhook's
answer path inserts and never waits on a row the follow-up job holds. ``version`` is the problem's
notification count the change left, so the job knows which rows the problem it read already includes.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("follow_ups") as batch:
        batch.drop_constraint("uq_follow_ups_problem_id", type_="unique")
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.create_index("ix_follow_ups_problem_id", ["problem_id"])


def downgrade() -> None:
    with op.batch_alter_table("follow_ups") as batch:
        batch.drop_index("ix_follow_ups_problem_id")
        batch.drop_column("version")
        batch.create_unique_constraint("uq_follow_ups_problem_id", ["problem_id"])
