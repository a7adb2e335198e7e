"""The directory store: one engine from one URL, the schema kept at the latest migration,
and every read and write the sync engine and the CLI need.

``Store`` is assembled from three parts so no module grows past a screenful of concerns:
the directory and link reads/writes here, the action log in ``actionlog.py``, the
administrative operations (find, assign, deactivate...) in ``admin.py`` and what incremental
syncs read (watermarks, changed users) in ``watermarks.py``. Reads come back
as pandas frames (``read_sql``); writes go in batches of ``BATCH_SIZE``, never one
statement per user.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from directory.actionlog import ActionLogMixin, Outcome
from directory.admin import DirectoryAdminMixin
from directory.database import create_engine, resolve_database_url, upgrade_to_head
from directory.errors import (
    AmbiguousUserError,
    CsvImportError,
    DirectoryError,
    GroupCycleError,
    GroupNotFoundError,
    InvalidNameError,
    RowError,
    RunNotFoundError,
    SafetyHoldError,
    UserNotFoundError,
)
from directory.grouplinks import GroupLinkMixin
from directory.health import AppStateMixin
from directory.locks import AppLockMixin, LockState
from directory.models import Group, Link, Run, User, utcnow
from directory.queries import (
    SUPPORTED_DIALECTS,
    batched,
    check_app_name,
    effective_apps,
    group_members_select,
    plain,
    read_frame,
    read_users_frame,
    upsert_many,
)
from directory.watermarks import WatermarkMixin

__all__ = [
    "AmbiguousUserError",
    "CsvImportError",
    "DirectoryError",
    "GroupCycleError",
    "GroupNotFoundError",
    "InvalidNameError",
    "LockState",
    "Outcome",
    "RowError",
    "RunNotFoundError",
    "SafetyHoldError",
    "Store",
    "UserNotFoundError",
    "resolve_database_url",
]

LINK_COLUMNS = ["user_id", "remote_id", "attr_hash", "status"]


class Store(
    ActionLogMixin,
    DirectoryAdminMixin,
    AppStateMixin,
    AppLockMixin,
    GroupLinkMixin,
    WatermarkMixin,
):
    """The directory database. Opening it upgrades the schema to head (a no-op when it is
    already there), so every caller sees the tables this code expects."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name not in SUPPORTED_DIALECTS:
            self.engine.dispose()
            raise DirectoryError(
                f"unsupported database {self.engine.dialect.name!r}: use SQLite or PostgreSQL"
            )
        upgrade_to_head(self.engine)
        self._sessions = sessionmaker(self.engine)

    def dispose(self) -> None:
        """Close pooled connections (tests and CLI commands open many stores)."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    # -- the directory, as the sync engine reads it ------------------------------------

    def read_users(self) -> pd.DataFrame:
        """Every user (active or not), one row each, in user_name order. ``manager`` is
        the manager's user_name; missing values are None."""
        with self.engine.connect() as conn:
            return read_users_frame(conn)

    def read_assigned(self, app: str) -> set[str]:
        """Ids of users assigned ``app`` directly or through a group, whether active or
        not: deciding what an inactive assignee means is the plan's job."""
        assigned = effective_apps(app, distinct=False).subquery()
        stmt = sa.select(assigned.c.user_id)
        with self.engine.connect() as conn:
            return set(conn.scalars(stmt))

    def read_groups(self) -> pd.DataFrame:
        """Every group: ``group_id`` (int) and ``name``, in name order."""
        stmt = sa.select(Group.id.label("group_id"), Group.name)
        with self.engine.connect() as conn:
            groups = read_frame(conn, stmt, ["group_id", "name"])
        groups["group_id"] = groups["group_id"].astype(int)
        return groups.sort_values("name", kind="stable").reset_index(drop=True)

    def read_group_members(self) -> pd.DataFrame:
        """Distinct ``group_id`` (int), ``user_id`` pairs: the group's own members and the
        members of every group nested in it, at any depth, active or not."""
        with self.engine.connect() as conn:
            members = read_frame(conn, group_members_select(), ["group_id", "user_id"])
        members["group_id"] = members["group_id"].astype(int)
        return members

    def deactivated_during(self, run_id: str, user_ids: Iterable[str]) -> set[str]:
        """Which of ``user_ids`` were deactivated (or removed) since run ``run_id`` started:
        a run checks before it writes, so an offboarding during a sync is never undone."""
        wanted = list(dict.fromkeys(user_ids))
        started = sa.select(Run.started_at).where(Run.id == run_id).scalar_subquery()
        kept: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in batched(wanted):
                unchanged = sa.or_(User.active, User.updated_at <= started)
                stmt = sa.select(User.id).where(User.id.in_(chunk), unchanged)
                kept.update(conn.scalars(stmt))
        return set(wanted) - kept

    # -- links: Roster's memory between runs -----------------------------------------

    def read_links(self, app: str) -> pd.DataFrame:
        stmt = (
            sa.select(Link.user_id, Link.remote_id, Link.attr_hash, Link.status)
            .where(Link.app == app)
            .order_by(Link.user_id)
        )
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, LINK_COLUMNS)

    def upsert_links(self, app: str, rows: Sequence[Mapping]) -> None:
        """Insert or update links keyed on (user_id, app) with ON CONFLICT DO UPDATE.
        A user listed twice keeps the last row (PostgreSQL rejects a batch that touches
        one row twice)."""
        check_app_name(app)
        now = utcnow()
        latest = {
            str(row["user_id"]): {
                "user_id": str(row["user_id"]),
                "app": app,
                "remote_id": str(row["remote_id"]),
                "attr_hash": plain(row.get("attr_hash")),
                "status": str(row["status"]),
                "updated_at": now,
            }
            for row in rows
        }
        with self.engine.begin() as conn:
            upsert_many(
                conn,
                Link,
                latest.values(),
                keys=[Link.user_id, Link.app],
                update=["remote_id", "attr_hash", "status", "updated_at"],
            )

    def delete_links(self, app: str, user_ids: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            for batch in batched(dict.fromkeys(user_ids)):
                conn.execute(sa.delete(Link).where(Link.app == app, Link.user_id.in_(batch)))

    def linked_apps(self, user_id: str) -> list[str]:
        stmt = sa.select(Link.app).where(Link.user_id == user_id).order_by(Link.app)
        with self.engine.connect() as conn:
            return list(conn.scalars(stmt))
