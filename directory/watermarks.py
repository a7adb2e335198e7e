"""What an incremental sync reads from the directory: the watermarks, the users changed
since them, and links whose user is gone. Mixed into ``Store``, which provides ``engine``.

A watermark is the start time of an app's last *successful* run of one mode; only a run
that finished ``ok`` (not failed, stopped, held, locked or dry) advances it. An incremental
run reads the users stamped (``directory.changes``) since the later of the two watermarks
less ``OVERLAP``: a stamp taken by a clock a little behind ours, or written by a
transaction that committed only after the previous run read the directory, is still
seen. Re-reading a user costs little, because a user whose desired attributes still hash
to what was last written is settled without a request to the app (``tasks.extract``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from directory.models import AccountRetry, Link, User
from directory.models import Watermark as WatermarkRow
from directory.queries import (
    USER_COLUMNS,
    aware,
    batched,
    check_app_name,
    read_frame,
    upsert,
    users_select,
)

#: how far before its watermark an incremental run looks: clock skew between the hosts
#: that write the directory and the one that syncs, plus the longest directory transaction
OVERLAP = timedelta(minutes=5)


class SyncMode(StrEnum):
    INCREMENTAL = "incremental"
    FULL = "full"


@dataclass(frozen=True)
class Watermarks:
    """An app's last successful incremental and full run starts (None: never)."""

    app: str
    incremental: datetime | None = None
    full: datetime | None = None
    #: the app's settings hash recorded by the later of the two runs
    settings_hash: str | None = None

    @property
    def latest(self) -> datetime | None:
        """A full run covers everything an incremental one does, so the later counts."""
        known = [t for t in (self.incremental, self.full) if t is not None]
        return max(known) if known else None

    def since(self, overlap: timedelta = OVERLAP) -> datetime | None:
        """Users stamped at or after this are read; None: no watermark, run full."""
        latest = self.latest
        return None if latest is None else latest - overlap


@dataclass(frozen=True)
class DirectorySubset:
    """The users an incremental run plans, and what their mapping needs besides."""

    #: ``read_users`` columns: the users to plan plus their managers (references resolve)
    users: pd.DataFrame
    #: ids of the users to plan (changed, their reports, failing accounts to retry)
    user_ids: frozenset[str]


class WatermarkMixin:
    engine: Engine

    def read_watermarks(self, app: str) -> Watermarks:
        stmt = sa.select(
            WatermarkRow.mode, WatermarkRow.started_at, WatermarkRow.settings_hash
        ).where(WatermarkRow.app == app)
        with self.engine.connect() as conn:
            rows = {
                mode: (aware(started), settings) for mode, started, settings in conn.execute(stmt)
            }
        times = {mode: started for mode, (started, _) in rows.items()}
        marks = Watermarks(app, times.get(SyncMode.INCREMENTAL), times.get(SyncMode.FULL))
        latest = next((m for m, (t, _) in rows.items() if t == marks.latest), None)
        return replace(marks, settings_hash=rows[latest][1] if latest else None)

    def save_watermark(
        self,
        app: str,
        mode: SyncMode,
        started_at: datetime,
        run_id: str | None = None,
        settings_hash: str | None = None,
    ) -> None:
        """Record a successful run; an older start never replaces a newer one (two runs
        may finish out of order)."""
        check_app_name(app)
        values = {
            "app": app,
            "mode": str(mode),
            "started_at": started_at,
            "run_id": run_id,
            "settings_hash": settings_hash,
        }
        with self.engine.begin() as conn:
            stmt = upsert(conn, WatermarkRow).values(values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[WatermarkRow.app, WatermarkRow.mode],
                    set_={k: v for k, v in values.items() if k not in ("app", "mode")},
                    where=WatermarkRow.started_at < started_at,
                )
            )

    def read_directory_subset(
        self, app: str, since: datetime, *, with_reports: bool
    ) -> DirectorySubset:
        """Users stamped since ``since``, users whose account for ``app`` is failing (they
        have a write to retry), and with ``with_reports`` the users whose manager is one of
        them (a manager leaving scope changes their reports' manager attribute); plus the
        managers of all these, only so that references resolve."""
        with self.engine.connect() as conn:
            ids = set(conn.scalars(sa.select(User.id).where(User.updated_at >= since)))
            retry = sa.select(AccountRetry.user_id).where(AccountRetry.app == app)
            ids |= set(conn.scalars(sa.select(User.id).where(User.id.in_(retry))))
            if with_reports and ids:
                ids |= _reports_of(conn, ids)
            wanted = _with_managers(conn, ids)
            frames = [
                read_frame(
                    conn, users_select().where(User.id.in_(chunk)), USER_COLUMNS, ("active",)
                )
                for chunk in batched(sorted(wanted))
            ]
        users = pd.concat(frames, ignore_index=True) if frames else _empty_users()
        users = users.sort_values("user_name", kind="stable").reset_index(drop=True)
        return DirectorySubset(users, frozenset(ids))

    def read_unowned_links(self, app: str) -> set[str]:
        """User ids of ``app``'s links whose user is no longer in the directory."""
        stmt = (
            sa.select(Link.user_id)
            .outerjoin(User, User.id == Link.user_id)
            .where(Link.app == app, User.id.is_(None))
        )
        with self.engine.connect() as conn:
            return set(conn.scalars(stmt))

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(User)) or 0)


def _reports_of(conn: sa.Connection, ids: set[str]) -> set[str]:
    names: set[str] = set()
    for chunk in batched(sorted(ids)):
        names.update(
            n.lower() for n in conn.scalars(sa.select(User.user_name).where(User.id.in_(chunk)))
        )
    reports: set[str] = set()
    for chunk in batched(sorted(names)):
        stmt = sa.select(User.id).where(sa.func.lower(User.manager).in_(chunk))
        reports.update(conn.scalars(stmt))
    return reports


def _with_managers(conn: sa.Connection, ids: Iterable[str]) -> set[str]:
    wanted = set(ids)
    managers: set[str] = set()
    for chunk in batched(sorted(wanted)):
        stmt = sa.select(User.manager).where(User.id.in_(chunk), User.manager.is_not(None))
        managers.update(m.lower() for m in conn.scalars(stmt) if m)
    for chunk in batched(sorted(managers)):
        stmt = sa.select(User.id).where(sa.func.lower(User.user_name).in_(chunk))
        wanted.update(conn.scalars(stmt))
    return wanted


def _empty_users() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in USER_COLUMNS})
    frame["active"] = frame["active"].astype(bool)
    return frame
