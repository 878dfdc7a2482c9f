"""The on-call workflow: acknowledgement, assignee and their durations on incidents, the member on
timeline lines, and notes with their edit history.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("acknowledged_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("acknowledged_by_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("assignee_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("time_to_acknowledge_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("time_to_resolve_seconds", sa.Float(), nullable=True))
        batch.create_foreign_key(
            "fk_incidents_acknowledged_by_id_users",
            "users",
            ["acknowledged_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            "fk_incidents_assignee_id_users", "users", ["assignee_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index(
        "ix_incidents_workspace_assignee_started",
        "incidents",
        ["workspace_id", "assignee_id", "started_at", "id"],
    )
    # Incidents resolved before: their time to resolve, from what they already record.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE incidents SET time_to_resolve_seconds = EXTRACT(EPOCH FROM (resolved_at - started_at)) "
            "WHERE resolved_at IS NOT NULL"
        )
    else:
        op.execute(
            "UPDATE incidents SET time_to_resolve_seconds = "
            "ROUND((julianday(resolved_at) - julianday(started_at)) * 86400.0, 3) WHERE resolved_at IS NOT NULL"
        )
    with op.batch_alter_table("incident_events") as batch:
        batch.add_column(sa.Column("user_id", sa.String(36), nullable=True))
        batch.create_foreign_key(
            "fk_incident_events_user_id_users", "users", ["user_id"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "incident_notes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("author_id", sa.String(36), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_notes_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_incident_notes_author_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_notes")),
    )
    op.create_index("ix_incident_notes_incident_id_id", "incident_notes", ["incident_id", "id"])
    op.create_table(
        "incident_note_revisions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("note_id", BigId, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("written_at", UTCDateTime(), nullable=False),
        sa.Column("replaced_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_id"],
            ["incident_notes.id"],
            name=op.f("fk_incident_note_revisions_note_id_incident_notes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_note_revisions")),
    )
    op.create_index("ix_incident_note_revisions_note_id_id", "incident_note_revisions", ["note_id", "id"])


def downgrade() -> None:
    op.drop_table("incident_note_revisions")
    op.drop_table("incident_notes")
    with op.batch_alter_table("incident_events") as batch:
        batch.drop_constraint("fk_incident_events_user_id_users", type_="foreignkey")
        batch.drop_column("user_id")
    op.drop_index("ix_incidents_workspace_assignee_started", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint("fk_incidents_assignee_id_users", type_="foreignkey")
        batch.drop_constraint("fk_incidents_acknowledged_by_id_users", type_="foreignkey")
        for column in (
            "time_to_resolve_seconds",
            "time_to_acknowledge_seconds",
            "assignee_id",
            "acknowledged_by_id",
            "acknowledged_at",
        ):
            batch.drop_column(column)
