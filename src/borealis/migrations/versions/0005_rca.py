"""RCA: runs per incident and the evidence each run gathered.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, JSONType, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rca_runs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("analyzer", sa.String(200), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("report", JSONType, nullable=True),
        sa.Column("markdown", sa.Text(), nullable=True),
        sa.Column("usage", JSONType, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("job_id", BigId, nullable=True),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_rca_runs_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_rca_runs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rca_runs")),
    )
    op.create_index(op.f("ix_rca_runs_incident_id_id"), "rca_runs", ["incident_id", "id"])
    op.create_index(op.f("ix_rca_runs_user_id_created_at"), "rca_runs", ["user_id", "created_at"])

    op.create_table(
        "rca_evidence",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("rca_id", BigId, nullable=False),
        sa.Column("evidence_id", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=True),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("entity_id", sa.String(200), nullable=True),
        sa.Column("entity_name", sa.Text(), nullable=True),
        sa.Column("entity_type", sa.String(200), nullable=True),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("event_type", sa.String(200), nullable=True),
        sa.Column("root_cause_relevant", sa.Boolean(), nullable=False),
        sa.Column("problem_id", sa.String(200), nullable=True),
        sa.Column("data", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["rca_id"], ["rca_runs.id"], name=op.f("fk_rca_evidence_rca_id_rca_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rca_evidence")),
        sa.UniqueConstraint("rca_id", "evidence_id", name=op.f("uq_rca_evidence_rca_id")),
    )
    op.create_index(op.f("ix_rca_evidence_entity_id"), "rca_evidence", ["entity_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_rca_evidence_entity_id"), table_name="rca_evidence")
    op.drop_table("rca_evidence")
    op.drop_index(op.f("ix_rca_runs_user_id_created_at"), table_name="rca_runs")
    op.drop_index(op.f("ix_rca_runs_incident_id_id"), table_name="rca_runs")
    op.drop_table("rca_runs")
