"""Workspaces: every per-user record moves to a workspace, and each user gets a personal one.

A user's personal workspace takes the user's own id, so the data moves without copying: each
``user_id`` becomes ``workspace_id`` with the same value. Webhook URLs (``/dynatrace/webhook/<id>``)
and their secrets keep working unchanged, and so do API keys, which now act in the personal
workspace as its owner. The RCA preference moves from the user to the workspace.

On SQLite the tables whose foreign key changes are rebuilt; foreign keys are off meanwhile (see
``env.py``), so rebuilding a parent does not cascade into its children.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, JSONType, UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# (table, nullable, unique constraint on the column, [(old index, new index, columns)])
_OWNED = [
    ("connections", False, True, []),
    (
        "problems",
        False,
        False,
        [
            ("ix_problems_user_activity", "ix_problems_workspace_activity", ["last_received_at", "id"]),
            (
                "ix_problems_user_state_activity",
                "ix_problems_workspace_state_activity",
                ["state", "last_received_at", "id"],
            ),
            (
                "ix_problems_user_severity_activity",
                "ix_problems_workspace_severity_activity",
                ["severity", "last_received_at", "id"],
            ),
            (
                "ix_problems_user_impact_activity",
                "ix_problems_workspace_impact_activity",
                ["impact", "last_received_at", "id"],
            ),
        ],
    ),
    ("problem_counts", False, False, []),
    (
        "follow_ups",
        False,
        False,
        [("ix_follow_ups_user_next", "ix_follow_ups_workspace_next", ["next_at", "id"])],
    ),
    (
        "incidents",
        False,
        False,
        [
            ("ix_incidents_user_started", "ix_incidents_workspace_started", ["started_at", "id"]),
            (
                "ix_incidents_user_status_started",
                "ix_incidents_workspace_status_started",
                ["status", "started_at", "id"],
            ),
            (
                "ix_incidents_user_priority_started",
                "ix_incidents_workspace_priority_started",
                ["priority", "started_at", "id"],
            ),
        ],
    ),
    (
        "incident_keys",
        False,
        False,
        [("ix_incident_keys_user_key", "ix_incident_keys_workspace_key", ["key"])],
    ),
    ("correlation_settings", False, False, []),
    (
        "rca_runs",
        False,
        False,
        [("ix_rca_runs_user_id_created_at", "ix_rca_runs_workspace_id_created_at", ["created_at"])],
    ),
    ("jobs", True, False, [("ix_jobs_user_id_state", "ix_jobs_workspace_id_state", ["state"])]),
    ("job_schedules", True, False, [("ix_job_schedules_user_id", "ix_job_schedules_workspace_id", [])]),
]


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("rca_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
    )
    op.create_table(
        "workspace_members",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_members_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_workspace_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("workspace_id", "user_id", name=op.f("pk_workspace_members")),
    )
    op.create_index(op.f("ix_workspace_members_user_id"), "workspace_members", ["user_id"])
    op.create_table(
        "audit_entries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.String(36), nullable=True),
        sa.Column("actor_email", sa.String(320), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("via", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(320), nullable=True),
        sa.Column("details", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_audit_entries_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    op.create_index("ix_audit_entries_workspace_id_id", "audit_entries", ["workspace_id", "id"])
    op.create_index(op.f("ix_audit_entries_at"), "audit_entries", ["at"])

    # Every user's personal workspace, with their id and their RCA choice.
    op.execute(
        "INSERT INTO workspaces (id, name, rca_enabled, created_at) "
        "SELECT id, 'Personal', rca_enabled, created_at FROM users"
    )
    op.execute(
        "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) "
        "SELECT id, id, 'owner', created_at FROM users"
    )

    for table, nullable, unique, indexes in _OWNED:
        for old, _, _ in indexes:
            op.drop_index(old, table_name=table)
        _rename_owner(table, nullable=nullable, unique=unique)
        for _, new, columns in indexes:
            op.create_index(new, table, ["workspace_id", *columns])
    # The follow-up job is keyed by its workspace now.
    op.execute("UPDATE jobs SET key = 'workspace:' || substr(key, 6) WHERE key LIKE 'user:%'")

    # The search index's small numbers name workspaces (the same ids as before).
    op.rename_table("search_users", "search_workspaces")
    _rename_owner("search_workspaces", nullable=False, unique=True, old_table="search_users")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE search_workspaces RENAME CONSTRAINT pk_search_users TO pk_search_workspaces")
        op.execute("ALTER SEQUENCE search_users_number_seq RENAME TO search_workspaces_number_seq")
    # A plain rename: problem_terms is large and has no foreign key to change.
    op.drop_index("ix_problem_terms_user_term", table_name="problem_terms")
    op.execute("ALTER TABLE problem_terms RENAME COLUMN user_number TO workspace_number")
    op.create_index(
        "ix_problem_terms_workspace_term", "problem_terms", ["workspace_number", "term", "problem_id"]
    )

    # Keys act in their creator's personal workspace; sessions start there.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("workspace_id", sa.String(36), nullable=True))
    op.execute("UPDATE api_keys SET workspace_id = user_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("workspace_id", existing_type=sa.String(36), nullable=False)
        batch.create_foreign_key(
            "fk_api_keys_workspace_id_workspaces", "workspaces", ["workspace_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_api_keys_workspace_id", ["workspace_id"])
    with op.batch_alter_table("user_sessions") as batch:
        batch.add_column(sa.Column("workspace_id", sa.String(36), nullable=True))
        batch.create_foreign_key(
            "fk_user_sessions_workspace_id_workspaces",
            "workspaces",
            ["workspace_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("users") as batch:
        batch.drop_column("rca_enabled")


def _rename_owner(table: str, *, nullable: bool, unique: bool, old_table: str | None = None) -> None:
    """``user_id`` (referring to users) becomes ``workspace_id`` (referring to workspaces). Two steps:
    SQLite's rebuild drops a new constraint on a column renamed in the same batch."""
    named = old_table or table
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(f"fk_{named}_user_id_users", type_="foreignkey")
        if unique:
            batch.drop_constraint(f"uq_{named}_user_id", type_="unique")
        batch.alter_column(
            "user_id", new_column_name="workspace_id", existing_type=sa.String(36), existing_nullable=nullable
        )
    with op.batch_alter_table(table) as batch:
        batch.create_foreign_key(
            f"fk_{table}_workspace_id_workspaces", "workspaces", ["workspace_id"], ["id"], ondelete="CASCADE"
        )
        if unique:
            batch.create_unique_constraint(f"uq_{table}_workspace_id", ["workspace_id"])


def downgrade() -> None:
    raise NotImplementedError(
        "workspaces cannot be folded back into users (a workspace may have several members); restore a backup"
    )
