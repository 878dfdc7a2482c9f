"""Incidents: incidents, problem attachments, timeline events, the candidate index, correlation settings.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("affected_entities", JSONType, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("problem_count", sa.Integer(), nullable=False),
        sa.Column("open_problem_count", sa.Integer(), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("merged_into_id", BigId, nullable=True),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_incidents_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"],
            ["incidents.id"],
            name=op.f("fk_incidents_merged_into_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(op.f("ix_incidents_merged_into_id"), "incidents", ["merged_into_id"])
    op.create_index(op.f("ix_incidents_user_started"), "incidents", ["user_id", "started_at", "id"])
    op.create_index(
        op.f("ix_incidents_user_status_started"), "incidents", ["user_id", "status", "started_at", "id"]
    )
    op.create_index(
        op.f("ix_incidents_user_priority_started"), "incidents", ["user_id", "priority", "started_at", "id"]
    )

    op.create_table(
        "incident_problems",
        sa.Column("problem_id", BigId, autoincrement=False, nullable=False),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("related_problem_id", BigId, nullable=True),
        sa.Column("attached_at", UTCDateTime(), nullable=False),
        sa.Column("problem_state", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["problems.id"],
            name=op.f("fk_incident_problems_problem_id_problems"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_problems_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["related_problem_id"],
            ["problems.id"],
            name=op.f("fk_incident_problems_related_problem_id_problems"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("problem_id", name=op.f("pk_incident_problems")),
    )
    op.create_index(op.f("ix_incident_problems_incident_id"), "incident_problems", ["incident_id"])
    op.create_index(
        op.f("ix_incident_problems_related_problem_id"), "incident_problems", ["related_problem_id"]
    )

    op.create_table(
        "incident_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(16), nullable=False),
        sa.Column("problem_id", BigId, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_events_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["problems.id"],
            name=op.f("fk_incident_events_problem_id_problems"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
    )
    op.create_index(op.f("ix_incident_events_incident_at"), "incident_events", ["incident_id", "at", "id"])
    op.create_index(op.f("ix_incident_events_problem_id"), "incident_events", ["problem_id"])

    op.create_table(
        "incident_keys",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("problem_id", BigId, nullable=False),
        sa.Column("incident_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_incident_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["problems.id"],
            name=op.f("fk_incident_keys_problem_id_problems"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_keys_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_keys")),
        sa.UniqueConstraint("problem_id", "key", name=op.f("uq_incident_keys_problem_id")),
    )
    op.create_index(op.f("ix_incident_keys_user_key"), "incident_keys", ["user_id", "key"])
    op.create_index(op.f("ix_incident_keys_incident_id"), "incident_keys", ["incident_id"])

    op.create_table(
        "correlation_settings",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("max_hops", sa.Integer(), nullable=False),
        sa.Column("root_cause", sa.Boolean(), nullable=False),
        sa.Column("entities", sa.Boolean(), nullable=False),
        sa.Column("topology", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.Boolean(), nullable=False),
        sa.Column("management_zones", sa.Boolean(), nullable=False),
        sa.Column("title", sa.Boolean(), nullable=False),
        sa.Column("time", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_correlation_settings_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_correlation_settings")),
    )


def downgrade() -> None:
    op.drop_table("correlation_settings")
    op.drop_index(op.f("ix_incident_keys_incident_id"), table_name="incident_keys")
    op.drop_index(op.f("ix_incident_keys_user_key"), table_name="incident_keys")
    op.drop_table("incident_keys")
    op.drop_index(op.f("ix_incident_events_problem_id"), table_name="incident_events")
    op.drop_index(op.f("ix_incident_events_incident_at"), table_name="incident_events")
    op.drop_table("incident_events")
    op.drop_index(op.f("ix_incident_problems_related_problem_id"), table_name="incident_problems")
    op.drop_index(op.f("ix_incident_problems_incident_id"), table_name="incident_problems")
    op.drop_table("incident_problems")
    op.drop_index(op.f("ix_incidents_user_priority_started"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_user_status_started"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_user_started"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_merged_into_id"), table_name="incidents")
    op.drop_table("incidents")
