"""Groups in groups, and the groups Roster manages in apps.

``group_groups``: a group's member groups, so an assignment (and a pushed membership)
reaches the members of nested groups. ``group_links``: directory group x app -> the app
group Roster created or adopted for it, kept after the directory group is deleted so the
app group can be deleted too.

Revision ID: 0004_groups
Revises: 0003_app_locks
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_groups"
down_revision: str | None = "0003_app_locks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "group_groups",
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["child_id"], ["groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("parent_id", "child_id"),
    )
    op.create_index("ix_group_groups_child_id", "group_groups", ["child_id"])
    op.create_table(
        "group_links",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("remote_id", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "app"),
        sa.UniqueConstraint("app", "remote_id", name="uq_group_links_app_remote"),
    )


def downgrade() -> None:
    op.drop_table("group_links")
    op.drop_index("ix_group_groups_child_id", table_name="group_groups")
    op.drop_table("group_groups")
