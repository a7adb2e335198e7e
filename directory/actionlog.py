"""The action log: one row per run, one row per account action of a run.

An action is written as an intent (``pending``) before its request is sent and updated with
its outcome afterwards, so a crash mid-run leaves a trace of what may have reached an app.
Both writes are batched: ``log_actions`` is one INSERT ... RETURNING per batch, with the new
ids handed back in row order on SQLite and PostgreSQL alike (see ``ActionLog._sentinel``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from directory.errors import DirectoryError, RunNotFoundError
from directory.models import ActionLog, Run, new_id, utcnow
from directory.queries import aware, batched, plain, read_frame


class Outcome(StrEnum):
    PENDING = "pending"
    HELD = "held"
    SKIPPED = "skipped"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    #: a create answered 409 (often our own earlier attempt, whose answer was lost): the
    #: existing account was found and linked instead (``tasks.apply``)
    ADOPTED = "adopted"
    REPORTED = "reported"
    #: what became of a held action once someone decided (or nobody did in time)
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


ACTION_COLUMNS = [
    "id",
    "run_id",
    "app",
    "user_id",
    "user_name",
    "remote_id",
    "action",
    "situation",
    "changes",
    "attempts",
    "outcome",
    "error",
    "created_at",
    "updated_at",
    "decided_by",
    "decided_at",
    "decision_note",
]
RUN_COLUMNS = ["run_id", "kind", "started_at", "finished_at", "dry_run", "flow_run_id", "summary"]


def _outcome(value: Any) -> str:
    """Reject unknown outcomes loudly: a typo would otherwise hide an action from reports."""
    try:
        return Outcome(value).value
    except ValueError:
        known = ", ".join(o.value for o in Outcome)
        raise DirectoryError(f"unknown outcome {value!r} (known: {known})") from None


def _action_row(run_id: str, app: str, row: Mapping) -> dict[str, Any]:
    # every row carries every key: an executemany compiles its INSERT from the first row
    return {
        "run_id": run_id,
        "app": app,
        "user_id": plain(row.get("user_id")),
        "user_name": plain(row.get("user_name")),
        "remote_id": plain(row.get("remote_id")),
        "action": str(row["action"]),
        "situation": str(row["situation"]),
        "changes": row.get("changes"),
        "outcome": _outcome(row["outcome"]),
        "attempts": plain(row.get("attempts")) or 0,
        "error": plain(row.get("error")),
    }


def _outcome_row(row: Mapping) -> dict[str, Any]:
    return {
        "b_id": int(row["id"]),
        "b_outcome": _outcome(row["outcome"]),
        "b_attempts": plain(row.get("attempts")),
        "b_error": plain(row.get("error")),
        "b_remote_id": plain(row.get("remote_id")),
    }


_RECORD_OUTCOME = (
    sa.update(ActionLog)
    .where(ActionLog.id == sa.bindparam("b_id"))
    .values(
        outcome=sa.bindparam("b_outcome"),
        # attempts and remote_id only move forward: None leaves what is there
        attempts=sa.func.coalesce(sa.bindparam("b_attempts", type_=sa.Integer), ActionLog.attempts),
        error=sa.bindparam("b_error"),
        remote_id=sa.func.coalesce(
            sa.bindparam("b_remote_id", type_=sa.String), ActionLog.remote_id
        ),
    )
)


def _check_ids_exist(conn: Connection, ids: list[int]) -> None:
    found = set(conn.scalars(sa.select(ActionLog.id).where(ActionLog.id.in_(ids))))
    missing = sorted(set(ids) - found)
    if missing:
        raise DirectoryError(f"no logged action with id {', '.join(map(str, missing[:10]))}")


class ActionLogMixin:
    """Runs and actions; mixed into ``Store``, which provides ``engine``."""

    engine: Engine

    def start_run(self, kind: str, *, dry_run: bool = False, flow_run_id: str | None = None) -> str:
        run_id = new_id()
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(Run).values(
                    id=run_id, kind=kind, dry_run=dry_run, flow_run_id=flow_run_id
                )
            )
        return run_id

    def finish_run(self, run_id: str, summary: dict) -> None:
        stmt = sa.update(Run).where(Run.id == run_id).values(finished_at=utcnow(), summary=summary)
        with self.engine.begin() as conn:
            if conn.execute(stmt).rowcount != 1:
                raise RunNotFoundError(f"no run with id {run_id!r}")

    def log_actions(self, run_id: str, app: str, rows: Sequence[Mapping]) -> list[int]:
        """Insert actions in batches; returns their new ids in the order of ``rows``."""
        values = [_action_row(run_id, app, row) for row in rows]
        stmt = sa.insert(ActionLog).returning(ActionLog.id, sort_by_parameter_order=True)
        ids: list[int] = []
        with self.engine.begin() as conn:
            for batch in batched(values):
                ids.extend(conn.scalars(stmt, batch))
        return ids

    def record_outcomes(self, rows: Sequence[Mapping]) -> None:
        """Update logged actions by id in bulk: outcome and error as given; attempts and
        remote_id when given. An unknown id is an error and nothing is updated."""
        values = [_outcome_row(row) for row in rows]
        with self.engine.begin() as conn:
            for batch in batched(values):
                _check_ids_exist(conn, [row["b_id"] for row in batch])
                conn.execute(_RECORD_OUTCOME, batch)

    def succeeded_user_ids(
        self, run_id: str, app: str, action: str, among: Iterable[str] | None = None
    ) -> set[str]:
        """Users whose ``action`` this run already carried out (succeeded, or adopted the
        account it would have created), so a retried batch skips them. ``among``: only
        these users (a batch's), so each batch's check costs its own size, not the run's."""
        stmt = sa.select(ActionLog.user_id).where(
            ActionLog.run_id == run_id,
            ActionLog.app == app,
            ActionLog.action == action,
            ActionLog.outcome.in_([Outcome.SUCCEEDED.value, Outcome.ADOPTED.value]),
            ActionLog.user_id.is_not(None),
        )
        found: set[str] = set()
        with self.engine.connect() as conn:
            if among is None:
                return {user_id for user_id in conn.scalars(stmt) if user_id is not None}
            for chunk in batched(dict.fromkeys(among)):
                found.update(conn.scalars(stmt.where(ActionLog.user_id.in_(chunk))))
        return found

    def read_actions(
        self,
        run_id: str | None = None,
        *,
        app: str | None = None,
        outcome: str | None = None,
    ) -> pd.DataFrame:
        """Logged actions in the order they were written, optionally filtered."""
        stmt = sa.select(*(getattr(ActionLog, c) for c in ACTION_COLUMNS)).order_by(ActionLog.id)
        if run_id is not None:
            stmt = stmt.where(ActionLog.run_id == run_id)
        if app is not None:
            stmt = stmt.where(ActionLog.app == app)
        if outcome is not None:
            stmt = stmt.where(ActionLog.outcome == _outcome(outcome))
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, ACTION_COLUMNS)

    def latest_run(self, kind: str | None = None) -> dict[str, Any] | None:
        """The most recently started run (of ``kind``), as a dict, or None."""
        stmt = (
            sa.select(Run.id.label("run_id"), *(getattr(Run, c) for c in RUN_COLUMNS[1:]))
            .order_by(Run.started_at.desc())
            .limit(1)
        )
        if kind is not None:
            stmt = stmt.where(Run.kind == kind)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            return None
        run = dict(row)
        run["started_at"] = aware(run["started_at"])
        run["finished_at"] = aware(run["finished_at"])
        return run
