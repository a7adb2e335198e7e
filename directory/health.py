"""What Roster remembers about failures between runs, and the decisions on held actions.

* ``app_health``: an app's run of consecutive app-level failures and its quarantine. No row
  means healthy; a successful run or ``roster quarantine lift`` deletes the row.
* ``account_retries``: accounts whose last action failed, with the failure count and the
  next attempt time, so a run can skip an account until its backoff has passed.
* decisions: the outcome (approved, rejected, expired), approver, time and comment written
  onto a run's held action rows.

The rules (when to quarantine, how long to wait) are pure functions in ``tasks.health``;
this module only reads and writes. Mixed into ``Store``, which provides ``engine``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from directory.actionlog import Outcome
from directory.errors import DirectoryError
from directory.models import AccountRetry, ActionLog, utcnow
from directory.models import AppHealth as AppHealthRow
from directory.queries import aware, batched, check_app_name, plain, read_frame, upsert, upsert_many

RETRY_COLUMNS = [
    "app",
    "user_id",
    "user_name",
    "action",
    "failures",
    "last_error",
    "last_failed_at",
    "next_attempt_at",
]
#: the outcomes a held row can be given once decided
DECISIONS = frozenset({Outcome.APPROVED, Outcome.REJECTED, Outcome.EXPIRED})


@dataclass(frozen=True)
class AppHealth:
    """One app's failure state; ``AppHealth(app)`` is a healthy app."""

    app: str
    failures: int = 0
    reason: str | None = None
    last_error: str | None = None
    failing_since: datetime | None = None
    quarantined_since: datetime | None = None
    next_retry_at: datetime | None = None

    @property
    def quarantined(self) -> bool:
        return self.quarantined_since is not None

    @property
    def healthy(self) -> bool:
        return self.failures == 0 and not self.quarantined


_HEALTH_FIELDS = [
    "app",
    "failures",
    "reason",
    "last_error",
    "failing_since",
    "quarantined_since",
    "next_retry_at",
]
_TIMES = ("failing_since", "quarantined_since", "next_retry_at")


def _health(row: Mapping) -> AppHealth:
    values = {key: row[key] for key in _HEALTH_FIELDS}
    values.update({key: aware(row[key]) for key in _TIMES})
    return AppHealth(**values)


class AppStateMixin:
    """App health, account retries and held-action decisions."""

    engine: Engine

    # -- app health and quarantine -----------------------------------------------------

    def read_app_health(self, app: str) -> AppHealth:
        stmt = sa.select(*(getattr(AppHealthRow, c) for c in _HEALTH_FIELDS)).where(
            AppHealthRow.app == app
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        return AppHealth(app) if row is None else _health(row)

    def list_app_health(self) -> list[AppHealth]:
        """Every app with a failure on record (quarantined or not), by name."""
        stmt = sa.select(*(getattr(AppHealthRow, c) for c in _HEALTH_FIELDS)).order_by(
            AppHealthRow.app
        )
        with self.engine.connect() as conn:
            return [_health(row) for row in conn.execute(stmt).mappings()]

    def save_app_health(self, health: AppHealth) -> None:
        """Write ``health``; a healthy state deletes the row."""
        check_app_name(health.app)
        if health.healthy:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(AppHealthRow).where(AppHealthRow.app == health.app))
            return
        values = {**asdict(health), "updated_at": utcnow()}
        with self.engine.begin() as conn:
            stmt = upsert(conn, AppHealthRow).values(values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[AppHealthRow.app],
                    set_={k: v for k, v in values.items() if k != "app"},
                )
            )

    def lift_quarantine(self, app: str) -> AppHealth:
        """Forget the app's failures (and quarantine); returns what was there before."""
        before = self.read_app_health(app)
        self.save_app_health(AppHealth(app))
        return before

    # -- account retries ---------------------------------------------------------------

    def read_account_retries(self, app: str | None = None) -> pd.DataFrame:
        """Failing accounts (of one app, or all), soonest next attempt first."""
        stmt = sa.select(*(getattr(AccountRetry, c) for c in RETRY_COLUMNS)).order_by(
            AccountRetry.next_attempt_at, AccountRetry.app, AccountRetry.user_id
        )
        if app is not None:
            stmt = stmt.where(AccountRetry.app == app)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, RETRY_COLUMNS)

    def save_account_retries(self, app: str, rows: Sequence[Mapping]) -> None:
        """Upsert retry state keyed on (app, user_id), in batches."""
        check_app_name(app)
        values = [{"app": app, **{c: plain(row.get(c)) for c in RETRY_COLUMNS[1:]}} for row in rows]
        with self.engine.begin() as conn:
            keys = [AccountRetry.app, AccountRetry.user_id]
            upsert_many(conn, AccountRetry, values, keys=keys, update=RETRY_COLUMNS[2:])

    def clear_account_retries(self, app: str, user_ids: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            for batch in batched(dict.fromkeys(user_ids)):
                conn.execute(
                    sa.delete(AccountRetry).where(
                        AccountRetry.app == app, AccountRetry.user_id.in_(batch)
                    )
                )

    # -- decisions on held actions -----------------------------------------------------

    def record_decision(
        self,
        run_id: str,
        app: str,
        outcome: str,
        *,
        decided_by: str | None,
        decided_at: datetime,
        note: str | None = None,
    ) -> int:
        """Mark the run's held rows for ``app`` approved, rejected or expired, with who
        decided, when and why; returns how many rows were marked."""
        decision = Outcome(outcome)
        if decision not in DECISIONS:
            raise DirectoryError(f"{outcome!r} is not a decision on held actions")
        stmt = (
            sa.update(ActionLog)
            .where(
                ActionLog.run_id == run_id,
                ActionLog.app == app,
                ActionLog.outcome == Outcome.HELD.value,
            )
            .values(
                outcome=decision.value,
                decided_by=decided_by,
                decided_at=decided_at,
                decision_note=note or None,
            )
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)
