"""Incremental sync: per-app watermarks, and an index on users.updated_at.

``watermarks``: app x mode (incremental, full) -> when the last successful run of that
mode started, and a hash of the app's settings then (a changed mapping or scope must be
applied to everyone, so the next run is full). ``ix_users_updated_at`` lets an
incremental run read only the users stamped since then instead of the whole directory.

Revision ID: 0005_watermarks
Revises: 0004_groups
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_watermarks"
down_revision: str | None = "0004_groups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "watermarks",
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("settings_hash", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app", "mode"),
    )
    op.create_index("ix_users_updated_at", "users", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_users_updated_at", table_name="users")
    op.drop_table("watermarks")
