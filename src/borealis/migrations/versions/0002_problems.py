"""Problems: problems, their notifications, rejected webhook deliveries, per-user counts, search terms.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, JSONType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Search terms compare by code point ("C" on PostgreSQL) so that a word prefix is a key range.
TERM = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "problems",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("pid_key", sa.String(200), nullable=False),
        sa.Column("pid", sa.String(200), nullable=False),
        sa.Column("display_id", sa.String(200), nullable=True),
        sa.Column("api_problem_id", sa.String(200), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(100), nullable=True),
        sa.Column("impact", sa.String(100), nullable=True),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("problem_url", sa.Text(), nullable=True),
        sa.Column("impacted_entity", sa.Text(), nullable=True),
        sa.Column("impacted_entities", JSONType, nullable=False),
        sa.Column("root_cause_entity_id", sa.String(200), nullable=True),
        sa.Column("root_cause_entity_name", sa.Text(), nullable=True),
        sa.Column("root_cause_entity_type", sa.String(200), nullable=True),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("tags_raw", sa.Text(), nullable=True),
        sa.Column("management_zones", JSONType, nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=True),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("details", JSONType, nullable=True),
        sa.Column("details_format", sa.String(16), nullable=True),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("first_received_at", UTCDateTime(), nullable=False),
        sa.Column("last_received_at", UTCDateTime(), nullable=False),
        sa.Column("notification_count", sa.Integer(), nullable=False),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("lifecycle", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_problems_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_problems_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_problems")),
        sa.UniqueConstraint("connection_id", "pid_key", name=op.f("uq_problems_connection_id")),
    )
    op.create_index(op.f("ix_problems_user_activity"), "problems", ["user_id", "last_received_at", "id"])
    op.create_index(
        op.f("ix_problems_user_state_activity"),
        "problems",
        ["user_id", "state", "last_received_at", "id"],
    )
    op.create_index(
        op.f("ix_problems_user_severity_activity"),
        "problems",
        ["user_id", "severity", "last_received_at", "id"],
    )
    op.create_index(
        op.f("ix_problems_user_impact_activity"),
        "problems",
        ["user_id", "impact", "last_received_at", "id"],
    )

    op.create_table(
        "notifications",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("problem_id", BigId, nullable=True),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("pid", sa.String(200), nullable=True),
        sa.Column("display_id", sa.String(200), nullable=True),
        sa.Column("state", sa.String(64), nullable=True),
        sa.Column("state_raw", sa.String(200), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("observed_at", UTCDateTime(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("last_received_at", UTCDateTime(), nullable=False),
        sa.Column("delivery_count", sa.Integer(), nullable=False),
        sa.Column("parsed", JSONType, nullable=False),
        sa.Column("warnings", JSONType, nullable=False),
        sa.Column("raw_body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["problems.id"],
            name=op.f("fk_notifications_problem_id_problems"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_notifications_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("problem_id", "content_hash", name=op.f("uq_notifications_problem_id")),
    )
    op.create_index(
        op.f("ix_notifications_connection_received"), "notifications", ["connection_id", "received_at"]
    )

    op.create_table(
        "rejected_deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=True),
        sa.Column("raw_body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_rejected_deliveries_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_deliveries")),
    )
    op.create_index(
        op.f("ix_rejected_deliveries_connection_received"),
        "rejected_deliveries",
        ["connection_id", "received_at"],
    )

    op.create_table(
        "problem_counts",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(100), nullable=False),
        sa.Column("impact", sa.String(100), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_problem_counts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "state", "severity", "impact", name=op.f("pk_problem_counts")),
    )

    op.create_table(
        "search_users",
        sa.Column("number", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_search_users_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_search_users")),
        sa.UniqueConstraint("user_id", name=op.f("uq_search_users_user_id")),
    )
    op.create_table(
        "problem_terms",
        sa.Column("problem_id", BigId, autoincrement=False, nullable=False),
        sa.Column("term", TERM, nullable=False),
        sa.Column("user_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["problems.id"],
            name=op.f("fk_problem_terms_problem_id_problems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("problem_id", "term", name=op.f("pk_problem_terms")),
        sqlite_with_rowid=False,
    )
    op.create_index(
        op.f("ix_problem_terms_user_term"), "problem_terms", ["user_number", "term", "problem_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_problem_terms_user_term"), table_name="problem_terms")
    op.drop_table("problem_terms")
    op.drop_table("search_users")
    op.drop_table("problem_counts")
    op.drop_index(op.f("ix_rejected_deliveries_connection_received"), table_name="rejected_deliveries")
    op.drop_table("rejected_deliveries")
    op.drop_index(op.f("ix_notifications_connection_received"), table_name="notifications")
    op.drop_table("notifications")
    for name in (
        "ix_problems_user_impact_activity",
        "ix_problems_user_severity_activity",
        "ix_problems_user_state_activity",
        "ix_problems_user_activity",
    ):
        op.drop_index(op.f(name), table_name="problems")
    op.drop_table("problems")
