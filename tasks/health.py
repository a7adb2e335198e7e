"""Failures across runs: when a failed account is tried again, and when an app is quarantined.

Pure functions of the stored state and ``now`` (no I/O, no clock), so tests move time by
passing it. Two memories, two scales:

* an **account** whose action failed is retried by the next run; if it fails again it
  waits 5 min, then 10, 20 ... capped at 24 h (``account_delay``). Accounts waiting for
  their next attempt are left alone and reported as ``waiting``.
* an **app** that fails ``quarantine_after`` runs in a row for the same app-level reason
  (credentials refused, the app answering 5xx, the app unreachable) is quarantined: its
  syncs are skipped until ``next_retry_at`` (1 h, then 2 h, 4 h ... capped at 24 h), when
  one run probes it. A successful run, or ``roster quarantine lift``, ends it. Failures
  that are about accounts, not the app (a 400 for one payload), never count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import pandas as pd

from connectors.errors import AuthError, ConnectorError, TLSError, TransientError
from directory.health import AppHealth


class FailureKind(StrEnum):
    """App-level reasons a run failed; each means every request would fail the same way."""

    AUTH = "auth"  # 401/403: the app refuses Roster's credentials
    SERVER_ERROR = "server_error"  # the app answers 5xx even after retries
    UNREACHABLE = "unreachable"  # connection refused, DNS, timeouts
    TLS = "tls"  # the app's certificate fails verification


REASON_TEXT: dict[str, str] = {
    FailureKind.AUTH: "authentication refused",
    FailureKind.SERVER_ERROR: "the app answers with server errors (5xx)",
    FailureKind.UNREACHABLE: "the app is unreachable",
    FailureKind.TLS: "the app's TLS certificate is not trusted",
}


class Gate(StrEnum):
    RUN = "run"  # healthy, or failing but not quarantined
    PROBE = "probe"  # quarantined, and its next retry time has come
    SKIP = "skip"  # quarantined until next_retry_at


@dataclass(frozen=True)
class HealthPolicy:
    quarantine_after: int = 3
    first_retry: timedelta = timedelta(hours=1)
    max_retry: timedelta = timedelta(hours=24)
    account_backoff: timedelta = timedelta(minutes=5)
    max_account_backoff: timedelta = timedelta(hours=24)


def classify_failure(exc: BaseException | None) -> FailureKind | None:
    """The app-level reason behind ``exc`` (or its cause), or None when the failure is not
    about the app as a whole (a bad payload, a config error)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, AuthError):
            return FailureKind.AUTH
        if isinstance(exc, TLSError):
            return FailureKind.TLS
        if isinstance(exc, TransientError):
            return FailureKind.UNREACHABLE if exc.status is None else FailureKind.SERVER_ERROR
        if isinstance(exc, ConnectorError):
            return None
        exc = exc.__cause__
    return None


def _doubling(base: timedelta, step: int, cap: timedelta) -> timedelta:
    """base, 2 base, 4 base ... for step 1, 2, 3 ..., capped (no overflow for huge steps)."""
    if step < 1:
        return timedelta(0)
    return min(base * 2 ** min(step - 1, 32), cap)


def account_delay(failures: int, policy: HealthPolicy = HealthPolicy()) -> timedelta:
    """How long after its ``failures``-th failure in a row an account waits: the first
    failure is retried by the very next run (most are passing hiccups); then 5 min, 10 min,
    20 min ... capped at 24 h."""
    return _doubling(policy.account_backoff, failures - 1, policy.max_account_backoff)


def quarantine_delay(failures: int, policy: HealthPolicy = HealthPolicy()) -> timedelta:
    """How long a quarantined app is left alone after its ``failures``-th failed run in a
    row: 1 h when it enters quarantine, then 2 h, 4 h ... capped at 24 h."""
    return _doubling(policy.first_retry, failures - policy.quarantine_after + 1, policy.max_retry)


def gate(health: AppHealth, now: datetime) -> Gate:
    if not health.quarantined:
        return Gate.RUN
    if health.next_retry_at is not None and now < health.next_retry_at:
        return Gate.SKIP
    return Gate.PROBE


def after_failure(
    health: AppHealth,
    kind: FailureKind | None,
    error: str,
    now: datetime,
    policy: HealthPolicy = HealthPolicy(),
) -> AppHealth:
    """The app's state after a failed run.

    Not quarantined: the same app-level reason extends the streak, another one starts a new
    streak, and a failure that is not app-level changes nothing. Quarantined: any failed
    probe keeps the quarantine and doubles the wait.
    """
    if health.quarantined:
        failures = health.failures + 1
        return replace(
            health,
            failures=failures,
            reason=str(kind) if kind else health.reason,
            last_error=error,
            next_retry_at=now + quarantine_delay(failures, policy),
        )
    if kind is None:
        return health
    same = health.reason == kind and health.failures > 0
    failures = health.failures + 1 if same else 1
    updated = AppHealth(
        app=health.app,
        failures=failures,
        reason=str(kind),
        last_error=error,
        failing_since=health.failing_since if same else now,
    )
    if failures >= policy.quarantine_after:
        updated = replace(
            updated,
            quarantined_since=now,
            next_retry_at=now + quarantine_delay(failures, policy),
        )
    return updated


def after_success(health: AppHealth) -> AppHealth:
    return AppHealth(health.app)


def describe(health: AppHealth) -> str:
    """One line for a person: why, since when, and when it is tried again."""
    reason = REASON_TEXT.get(health.reason, health.reason) if health.reason else "?"
    if not health.quarantined:
        return f"{health.failures} failed run(s) in a row: {reason}"
    since = _when(health.quarantined_since)
    return (
        f"quarantined since {since} after {health.failures} failed runs ({reason});"
        f" next retry at {_when(health.next_retry_at)}"
    )


def _when(value: datetime | None) -> str:
    return "?" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


# -- accounts -------------------------------------------------------------------------


def waiting_accounts(retries: pd.DataFrame, now: datetime) -> dict[str, datetime]:
    """user_id -> next attempt time, for accounts whose backoff has not passed yet."""
    if retries.empty:
        return {}
    due = pd.to_datetime(retries["next_attempt_at"], utc=True)
    later = due > pd.Timestamp(now)
    return {
        str(user_id): when.to_pydatetime()
        for user_id, when in zip(retries.loc[later, "user_id"], due[later], strict=True)
    }


@dataclass(frozen=True)
class RetryUpdate:
    """What to write to ``account_retries`` after a run."""

    failed: list[dict[str, Any]] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    def next_attempts(self) -> dict[str, datetime]:
        return {str(row["user_id"]): row["next_attempt_at"] for row in self.failed}


#: outcomes that say the account was not tried to the end this run; its state stays
_UNTOUCHED = frozenset({"waiting", "held", "pending"})


def update_retries(
    outcomes: pd.DataFrame,
    retries: pd.DataFrame,
    now: datetime,
    policy: HealthPolicy = HealthPolicy(),
    *,
    complete: bool = True,
) -> RetryUpdate:
    """From a run's plan with outcomes (``user_id, user_name, action, outcome, error``) and
    the stored retry state: the accounts that failed (count + 1, next attempt), and the
    stored accounts that no longer fail (succeeded, or nothing left to do). A run that
    stopped part way (``complete`` False) clears nothing: the accounts it never reached
    did not succeed."""
    previous: Mapping[str, int] = (
        dict(zip(retries["user_id"], retries["failures"], strict=True)) if len(retries) else {}
    )
    rows = outcomes.dropna(subset=["user_id"])
    failed_rows = rows[rows["outcome"] == "failed"].drop_duplicates("user_id", keep="last")
    failed = []
    for row in failed_rows.itertuples(index=False):
        failures = int(previous.get(row.user_id, 0)) + 1
        failed.append(
            {
                "user_id": row.user_id,
                "user_name": row.user_name,
                "action": str(row.action),
                "failures": failures,
                "last_error": row.error,
                "last_failed_at": now,
                "next_attempt_at": now + account_delay(failures, policy),
            }
        )
    keep = set(failed_rows["user_id"]) | set(rows.loc[rows["outcome"].isin(_UNTOUCHED), "user_id"])
    cleared = sorted(set(previous) - keep) if complete else []
    return RetryUpdate(failed, cleared)


def mark_waiting(plan: pd.DataFrame, waiting: Mapping[str, datetime]) -> pd.DataFrame:
    """The plan (with outcomes) where accounts left alone for their backoff say so: outcome
    ``waiting``, and the next attempt time in place of an error."""
    if not waiting:
        return plan
    rows = plan["user_id"].isin(list(waiting)) & plan["outcome"].isna()
    plan = plan.copy()
    plan.loc[rows, "outcome"] = "waiting"
    plan.loc[rows, "error"] = [
        f"failed before; next attempt at {_when(waiting[user_id])}"
        for user_id in plan.loc[rows, "user_id"]
    ]
    return plan


def with_next_attempts(
    rows: list[dict[str, Any]], plan: pd.DataFrame, next_attempts: Mapping[str, datetime]
) -> list[dict[str, Any]]:
    """Report rows (keyed by user name) with each account's next attempt time, if any."""
    names = dict(zip(plan["user_id"], plan["user_name"], strict=True))
    by_name = {names.get(user_id): when for user_id, when in next_attempts.items()}
    return [
        {**row, "next_attempt": _iso(by_name.get(row["user"]))}
        if row["status"] in ("failed", "waiting")
        else {**row, "next_attempt": None}
        for row in rows
    ]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
