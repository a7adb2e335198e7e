"""App locks in the directory database: one writer per app, on SQLite and PostgreSQL.

Taking a lock is one statement, ``INSERT ... ON CONFLICT (app) DO UPDATE ... WHERE the
existing lock has expired``, so two runs racing for a free or stale lock cannot both win:
PostgreSQL locks the conflicting row, SQLite serialises writers. A holder renews its lock
while it works; one that was killed stops renewing, and its lock expires instead of
blocking the app forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from directory.models import AppLock, utcnow
from directory.queries import aware, check_app_name, upsert


@dataclass(frozen=True)
class LockState:
    """The lock on an app as the database has it after an attempt to take it."""

    app: str
    holder: str
    acquired_at: datetime
    expires_at: datetime

    def held_by(self, holder: str) -> bool:
        return self.holder == holder


class AppLockMixin:
    engine: Engine

    def try_lock_app(self, app: str, holder: str, ttl: timedelta) -> LockState:
        """Take the app's lock if it is free or expired; returns whoever holds it now."""
        check_app_name(app)
        now = utcnow()
        values = {"app": app, "holder": holder, "acquired_at": now, "expires_at": now + ttl}
        with self.engine.begin() as conn:
            stmt = upsert(conn, AppLock).values(values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[AppLock.app],
                    set_={k: v for k, v in values.items() if k != "app"},
                    where=(AppLock.expires_at < now) | (AppLock.holder == holder),
                )
            )
            row = conn.execute(
                sa.select(AppLock.holder, AppLock.acquired_at, AppLock.expires_at).where(
                    AppLock.app == app
                )
            ).one()
            acquired_at, expires_at = aware(row.acquired_at), aware(row.expires_at)
        assert acquired_at is not None and expires_at is not None
        return LockState(app, row.holder, acquired_at, expires_at)

    def take_over_app_lock(self, app: str, dead: str, holder: str, ttl: timedelta) -> bool:
        """Take the lock from a holder known to be dead, before it expires; False when
        someone else was quicker."""
        now = utcnow()
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(AppLock)
                .where(AppLock.app == app, AppLock.holder == dead)
                .values(holder=holder, acquired_at=now, expires_at=now + ttl)
            )
        return bool(done.rowcount)

    def renew_app_lock(self, app: str, holder: str, ttl: timedelta) -> bool:
        """Push the expiry out; False when the lock is no longer ours (it expired and
        another run took it)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(AppLock)
                .where(AppLock.app == app, AppLock.holder == holder)
                .values(expires_at=utcnow() + ttl)
            )
        return bool(done.rowcount)

    def release_app_lock(self, app: str, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(AppLock).where(AppLock.app == app, AppLock.holder == holder))
