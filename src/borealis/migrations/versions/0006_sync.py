"""Sync: problem enrichments, the entity cache and its relationships, sync state per connection.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import BigId, JSONType, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _connection_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["connection_id"],
        ["connections.id"],
        name=op.f(f"fk_{table}_connection_id_connections"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "problem_enrichments",
        sa.Column("problem_id", BigId, nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("details", JSONType, nullable=True),
        sa.Column("entity_ids", JSONType, nullable=False),
        sa.Column("not_fetched", JSONType, nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["problems.id"],
            name=op.f("fk_problem_enrichments_problem_id_problems"),
            ondelete="CASCADE",
        ),
        _connection_fk("problem_enrichments"),
        sa.PrimaryKeyConstraint("problem_id", name=op.f("pk_problem_enrichments")),
    )
    op.create_index(op.f("ix_problem_enrichments_connection_id"), "problem_enrichments", ["connection_id"])

    op.create_table(
        "entity_cache",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("entity_type", sa.String(200), nullable=True),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("document", JSONType, nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        _connection_fk("entity_cache"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_cache")),
        sa.UniqueConstraint("connection_id", "entity_id", name=op.f("uq_entity_cache_connection_id")),
    )
    op.create_index(op.f("ix_entity_cache_expires_at"), "entity_cache", ["expires_at"])

    op.create_table(
        "entity_relations",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("source_entity_id", sa.String(200), nullable=False),
        sa.Column("from_entity_id", sa.String(200), nullable=False),
        sa.Column("relation", sa.String(200), nullable=False),
        sa.Column("to_entity_id", sa.String(200), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        _connection_fk("entity_relations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_relations")),
    )
    op.create_index("ix_entity_relations_from", "entity_relations", ["connection_id", "from_entity_id"])
    op.create_index("ix_entity_relations_to", "entity_relations", ["connection_id", "to_entity_id"])
    op.create_index("ix_entity_relations_source", "entity_relations", ["connection_id", "source_entity_id"])

    op.create_table(
        "sync_states",
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("cursor", UTCDateTime(), nullable=True),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.Column("last_run_kind", sa.String(16), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("last_result", JSONType, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("backfilled_at", UTCDateTime(), nullable=True),
        sa.Column("unknown_pids", JSONType, nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _connection_fk("sync_states"),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_sync_states")),
    )


def downgrade() -> None:
    op.drop_table("sync_states")
    op.drop_index("ix_entity_relations_source", table_name="entity_relations")
    op.drop_index("ix_entity_relations_to", table_name="entity_relations")
    op.drop_index("ix_entity_relations_from", table_name="entity_relations")
    op.drop_table("entity_relations")
    op.drop_index(op.f("ix_entity_cache_expires_at"), table_name="entity_cache")
    op.drop_table("entity_cache")
    op.drop_index(op.f("ix_problem_enrichments_connection_id"), table_name="problem_enrichments")
    op.drop_table("problem_enrichments")
