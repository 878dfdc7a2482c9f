"""Webhook auto-install: the problem notification installed through Settings 2.0, per connection.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from borealis.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("notification_object_id", sa.String(500), nullable=True))
        batch.add_column(sa.Column("notification_profile_id", sa.String(500), nullable=True))
        batch.add_column(sa.Column("notification_profile_name", sa.String(500), nullable=True))
        batch.add_column(sa.Column("notification_installed_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("notification_installed_at")
        batch.drop_column("notification_profile_name")
        batch.drop_column("notification_profile_id")
        batch.drop_column("notification_object_id")
