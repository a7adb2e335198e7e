"""One writer per app: app_locks, held by a run while it writes to the app.

Revision ID: 0003_app_locks
Revises: 0002_health_and_approvals
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_app_locks"
down_revision: str | None = "0002_health_and_approvals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_locks",
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app"),
    )


def downgrade() -> None:
    op.drop_table("app_locks")
