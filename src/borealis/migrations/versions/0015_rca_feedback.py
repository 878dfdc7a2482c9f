"""A responder's mark on an RCA report: right, partly right or wrong, and the true cause.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rca_runs") as batch:
        batch.add_column(sa.Column("feedback", sa.String(16), nullable=True))
        batch.add_column(sa.Column("feedback_cause", sa.String(500), nullable=True))
        batch.add_column(sa.Column("feedback_by_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("feedback_at", UTCDateTime(), nullable=True))
        batch.create_foreign_key(
            "fk_rca_runs_feedback_by_id_users", "users", ["feedback_by_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("rca_runs") as batch:
        batch.drop_constraint("fk_rca_runs_feedback_by_id_users", type_="foreignkey")
        for column in ("feedback_at", "feedback_by_id", "feedback_cause", "feedback"):
            batch.drop_column(column)
