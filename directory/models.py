"""The directory's tables (SQLAlchemy 2 style). Alembic migrations in ``migrations/`` create them.

users, groups and memberships are the source of truth; app assignments are direct
(``user_apps``) or through a group (``group_apps``). ``links`` is Roster's memory between
runs: directory user x app -> remote id, plus a hash of what was last written. ``runs`` and
``actions`` are the action log: every account action with old -> new values, attempts,
outcome and error, and for held actions the decision taken on them. ``app_health`` and
``account_retries`` are what Roster remembers about failures between runs: an app's run of
app-level failures (and its quarantine), and each failing account's next attempt.
``watermarks`` say when each app's last successful incremental and full runs started.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, orm_insert_sentinel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_name: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    given_name: Mapped[str | None] = mapped_column(String(255))
    family_name: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    department: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(255))
    employee_number: Mapped[str | None] = mapped_column(String(64))
    #: the manager's user_name; resolved to the manager's account in each app
    manager: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: stamped by every directory write that can change what an app should hold for this
    #: user (``directory.changes``): incremental syncs read the users stamped since their
    #: watermark
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, index=True
    )


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class GroupGroup(Base):
    """A group that is a member of another group: its members are the parent's too."""

    __tablename__ = "group_groups"

    parent_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    child_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class UserApp(Base):
    """A direct assignment of an app to a user."""

    __tablename__ = "user_apps"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    app: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class GroupApp(Base):
    """An app assigned to every member of a group."""

    __tablename__ = "group_apps"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    app: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Link(Base):
    """Directory user x app -> the account Roster manages there."""

    __tablename__ = "links"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    remote_id: Mapped[str] = mapped_column(String(255))
    #: sha256 of the attributes last written, so unchanged accounts cost no write
    attr_hash: Mapped[str | None] = mapped_column(String(64))
    #: LinkStatus: active, deactivated, failed
    status: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    __table_args__ = (UniqueConstraint("app", "remote_id", name="uq_links_app_remote"),)


class GroupLink(Base):
    """Directory group x app -> the app group Roster manages for it. No foreign key: the
    link outlives a deleted directory group, so its app group is deleted next run."""

    __tablename__ = "group_links"

    group_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    remote_id: Mapped[str] = mapped_column(String(255))
    #: the displayName last written
    display_name: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    __table_args__ = (UniqueConstraint("app", "remote_id", name="uq_group_links_app_remote"),)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    #: sync, offboard, import
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict | None] = mapped_column(JSON)


class ActionLog(Base):
    """One account action of one run. Written as an intent (``pending``) before the request,
    then updated with its outcome, so a crash leaves a trace of what may have been sent."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    app: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(32))
    user_name: Mapped[str | None] = mapped_column(String(255))
    remote_id: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    situation: Mapped[str] = mapped_column(String(24))
    #: {path: [old, new]}
    changes: Mapped[dict | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: pending, succeeded, failed, held, skipped; approved, rejected, expired for held rows
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    #: who approved or rejected a held action (the approver's name as they typed it)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the approver's comment
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    #: lets a batched INSERT ... RETURNING hand back ids in row order on SQLite too, which
    #: otherwise falls back to one INSERT per row (SQLAlchemy "insertmanyvalues" sentinel)
    _sentinel: Mapped[int | None] = orm_insert_sentinel()

    __table_args__ = (Index("ix_actions_app_user", "app", "user_id"),)


class AppHealth(Base):
    """An app's run of consecutive app-level failures (credentials refused, 5xx, unreachable),
    and its quarantine once the run is long enough. No row: the app is healthy."""

    __tablename__ = "app_health"

    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: consecutive failed runs (for the same reason, until quarantined)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: FailureKind: auth, server_error, unreachable, tls
    reason: Mapped[str | None] = mapped_column(String(24))
    last_error: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    quarantined_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: a quarantined app is skipped until then
    next_retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class AccountRetry(Base):
    """An account whose last action failed: how often in a row, and when to try it again."""

    __tablename__ = "account_retries"

    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_name: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str | None] = mapped_column(String(16))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Watermark(Base):
    """When the last successful run of one mode (incremental, full) started for an app:
    an incremental run reads the users changed since the later of the two (less an
    overlap, ``directory.watermarks``). A run that failed, stopped or was held leaves it."""

    __tablename__ = "watermarks"

    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: SyncMode: incremental or full
    mode: Mapped[str] = mapped_column(String(16), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(String(32))
    #: the app's settings when that run started (``tasks.incremental.settings_hash``)
    settings_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class AppLock(Base):
    """Who is writing to an app now. One row per app while a run holds it; a holder that
    died (kill -9, lost machine) stops renewing, and once ``expires_at`` passes the next
    run takes the lock over."""

    __tablename__ = "app_locks"

    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: host:pid:run of the holder, for the message the next run prints
    holder: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
