"""Write-back to Dynatrace: the workspace's switch, and the comment kept on each problem.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("write_back", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "dynatrace_comments",
        sa.Column("problem_id", BigId, autoincrement=False, nullable=False),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("comment_id", sa.String(200), nullable=False),
        sa.Column("rca_run_id", BigId, nullable=True),
        sa.Column("written_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["problems.id"],
            name=op.f("fk_dynatrace_comments_problem_id_problems"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_dynatrace_comments_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rca_run_id"],
            ["rca_runs.id"],
            name=op.f("fk_dynatrace_comments_rca_run_id_rca_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("problem_id", name=op.f("pk_dynatrace_comments")),
    )
    op.create_index(op.f("ix_dynatrace_comments_incident_id"), "dynatrace_comments", ["incident_id"])


def downgrade() -> None:
    op.drop_table("dynatrace_comments")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("write_back")
