"""Failure memory and approval decisions: app_health, account_retries, and who decided
on a held action (actions.decided_by, decided_at, decision_note).

Revision ID: 0002_health_and_approvals
Revises: 0001_initial
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_health_and_approvals"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DECISION_COLUMNS = ("decided_by", "decided_at", "decision_note")


def upgrade() -> None:
    op.create_table(
        "app_health",
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(24), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("quarantined_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app"),
    )
    op.create_table(
        "account_retries",
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=True),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app", "user_id"),
    )
    # nullable columns: SQLite adds them with a plain ALTER TABLE, no table rebuild
    op.add_column("actions", sa.Column("decided_by", sa.String(255), nullable=True))
    op.add_column("actions", sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("actions", sa.Column("decision_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        for column in DECISION_COLUMNS:
            batch.drop_column(column)
    op.drop_table("account_retries")
    op.drop_table("app_health")
