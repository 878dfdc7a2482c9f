"""Jobs: durable background work and periodic schedules.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, JSONType, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_RUNNING = sa.text("state = 'running'")
_QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("key", sa.String(200), nullable=True),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_jobs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_state_run_after", "jobs", ["state", "run_after"])
    op.create_index("ix_jobs_user_id_state", "jobs", ["user_id", "state"])
    op.create_index(
        "uq_jobs_running_key",
        "jobs",
        ["key"],
        unique=True,
        postgresql_where=_RUNNING,
        sqlite_where=_RUNNING,
    )
    op.create_index(
        "uq_jobs_queued_kind_key",
        "jobs",
        ["kind", "key"],
        unique=True,
        postgresql_where=_QUEUED,
        sqlite_where=_QUEUED,
    )
    op.create_table(
        "job_schedules",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.Column("last_fired_at", UTCDateTime(), nullable=True),
        sa.Column("last_job_id", BigId, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_job_schedules_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_schedules")),
        sa.UniqueConstraint("kind", "key", name="uq_job_schedules_kind_key"),
    )
    op.create_index(op.f("ix_job_schedules_user_id"), "job_schedules", ["user_id"])
    op.create_index(op.f("ix_job_schedules_next_run_at"), "job_schedules", ["next_run_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_job_schedules_next_run_at"), table_name="job_schedules")
    op.drop_index(op.f("ix_job_schedules_user_id"), table_name="job_schedules")
    op.drop_table("job_schedules")
    op.drop_index("uq_jobs_queued_kind_key", table_name="jobs")
    op.drop_index("uq_jobs_running_key", table_name="jobs")
    op.drop_index("ix_jobs_user_id_state", table_name="jobs")
    op.drop_index("ix_jobs_state_run_after", table_name="jobs")
    op.drop_table("jobs")
