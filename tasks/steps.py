"""The per-app steps of a sync: plan (with its guard) as a Prefect task, and what a sync
writes down about an app besides its actions: held rows, failing accounts' next attempts,
and the app's health (with the quarantine report)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from directory.config import AppConfig, Safety
from directory.health import AppHealth
from directory.store import Store
from tasks.desired import build_desired, taken_values, unique_targets
from tasks.extract import AppExtract, set_aside_unreadable
from tasks.guard import ExtractCounts, guard_plan, held_only, release_held
from tasks.health import (
    HealthPolicy,
    after_failure,
    after_success,
    classify_failure,
    describe,
    update_retries,
)
from tasks.plan import WRITES, PlanRules, plan_changes


@dataclass(frozen=True)
class AppPlan:
    plan: pd.DataFrame
    desired: pd.DataFrame
    rules: PlanRules
    hold_reasons: list[str]
    #: users whose linked account the app returned malformed: left alone this run
    set_aside: list[str]
    #: user_id -> next attempt, for accounts with a write to do that are still backing
    #: off after failures (``tasks.health``): left alone this run
    waiting: dict[str, datetime] = field(default_factory=dict)
    #: user_name -> why their mapping failed (an expression with no default): left alone
    unmapped: dict[str, str] = field(default_factory=dict)


@task(name="plan", task_run_name="plan-{app.name}", cache_policy=NO_CACHE)
def plan_app(
    app: AppConfig,
    users: pd.DataFrame,
    assigned: set[str],
    extract: AppExtract,
    links: pd.DataFrame,
    safety: Safety,
    approve_held: bool = False,
    waiting: Mapping[str, datetime] | None = None,
    groups_of: Mapping[str, Iterable[str]] | None = None,
    only: frozenset[str] | None = None,
    counts: ExtractCounts | None = None,
) -> AppPlan:
    """``only``: an incremental run's users (``tasks.incremental``): ``users`` then holds
    them plus what their mapping needs, ``extract`` and ``links`` only theirs, and the
    plan judges nobody else (no orphans from a partial read). ``counts``: the whole
    directory and app for the guard, where the frames are a subset."""
    rules = PlanRules.for_app(app)
    links, set_aside = set_aside_unreadable(links, extract)
    mapping = app.effective_mapping
    taken = taken_values(extract.accounts, links, unique_targets(mapping), rules.owner_keys)
    failures: dict[str, str] = {}
    desired = build_desired(users, assigned, mapping, taken, app.scoping, failures, groups_of)
    if only is not None:
        desired = desired[desired["user_id"].isin(list(only))].reset_index(drop=True)
    aside = desired["user_id"].isin(list(set_aside))
    set_aside_names = sorted(desired.loc[aside, "user_name"])
    desired = desired[~aside]
    desired, links, accounts, unmapped = leave_out_unmapped(desired, links, extract, failures)
    plan = plan_changes(desired, accounts, links, rules)
    if only is not None:  # accounts found by search that nobody here matched: not judged
        plan = plan[plan["user_id"].notna()].reset_index(drop=True)
    counts = counts or ExtractCounts(
        directory_users=len(users), app_accounts=len(extract.accounts), linked=len(links)
    )
    plan, reasons = guard_plan(plan, counts, safety)
    if approve_held and reasons:
        plan = release_held(plan)
        reasons = [f"approved: {reason}" for reason in reasons]
    return AppPlan(
        plan,
        desired,
        rules,
        reasons,
        set_aside_names,
        still_waiting(plan, waiting or {}),
        unmapped,
    )


def leave_out_unmapped(
    desired: pd.DataFrame, links: pd.DataFrame, extract: AppExtract, failures: Mapping[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """People whose mapping failed (an expression with no default) are left out of this
    run entirely, with their linked account: neither written with a null nor, missing from
    the plan, taken for a leaver. Returns user_name -> why, for the report."""
    if not failures:
        return desired, links, extract.accounts, {}
    out = desired["user_id"].isin(list(failures))
    names = dict(zip(desired.loc[out, "user_id"], desired.loc[out, "user_name"], strict=True))
    theirs = links["user_id"].isin(list(failures))
    accounts = extract.accounts[
        ~extract.accounts["remote_id"].isin(list(links.loc[theirs, "remote_id"]))
    ]
    why = {str(names[user]): reason for user, reason in failures.items() if user in names}
    return desired[~out], links[~theirs], accounts, why


def still_waiting(plan: pd.DataFrame, waiting: Mapping[str, datetime]) -> dict[str, datetime]:
    """The waiting accounts that have a write to do; the others have nothing to retry."""
    if not waiting:
        return {}
    rows = plan[plan["action"].isin(list(WRITES)) & plan["user_id"].isin(list(waiting))]
    return {user_id: waiting[user_id] for user_id in rows["user_id"]}


def log_held(store: Store, run_id: str, app: str, plan: pd.DataFrame) -> None:
    """Held rows go to the action log too, so a decision can be written onto them."""
    held = held_only(plan)
    if held.empty:
        return
    store.log_actions(
        run_id,
        app,
        [
            {
                "user_id": r.user_id,
                "user_name": r.user_name,
                "remote_id": r.remote_id,
                "action": str(r.action),
                "situation": str(r.situation),
                "changes": r.changes,
                "outcome": "held",
                "error": r.note,
            }
            for r in held.itertuples(index=False)
        ],
    )


def record_retries(
    store: Store,
    app: str,
    plan: pd.DataFrame,
    retries: pd.DataFrame | None,
    now: datetime,
    *,
    complete: bool = True,
) -> dict[str, datetime]:
    """Failed accounts back off; accounts that no longer fail are forgotten. Computed from
    the state read before this run, so reporting twice (after an approval) counts once.
    ``complete`` is False when the app stopped part way. Returns user_id -> next attempt
    for the accounts that failed."""
    outcomes = plan.assign(outcome=plan["outcome"].where(~plan["held"].astype(bool), "held"))
    stored = retries if retries is not None else pd.DataFrame()
    update = update_retries(outcomes, stored, now, complete=complete)
    if update.failed:
        store.save_account_retries(app, update.failed)
    if update.cleared:
        store.clear_account_retries(app, update.cleared)
    return update.next_attempts()


def record_health(
    store: Store,
    health: AppHealth,
    failure: BaseException | None,
    result: dict[str, Any],
    now: datetime,
    policy: HealthPolicy,
) -> AppHealth:
    """Write the app's health after a run and say so in its ``result``."""
    if failure is None:
        updated = after_success(health)
    else:
        updated = after_failure(health, classify_failure(failure), str(failure), now, policy)
    if updated != health:
        store.save_app_health(updated)
    notes = result.setdefault("notes", [])
    if updated.quarantined:
        result.update(quarantine_report(updated, skipped=False))
        notes.append(describe(updated))
    elif updated.failures:
        notes.append(describe(updated))
    elif health.quarantined:
        notes.append("quarantine ended: the app answered again")
    return updated


def quarantine_report(health: AppHealth, *, skipped: bool) -> dict[str, Any]:
    """A quarantined app in the run's result, the flow's log and a markdown artifact
    (``quarantine-<app>``): why, since when, and when it is tried again."""
    text = describe(health)
    get_run_logger().warning("app %s: %s", health.app, text)
    create_markdown_artifact(
        markdown=f"# {health.app} is quarantined\n\n{text}\n\nLast error: {health.last_error}"
        f"\n\nLift it with `roster quarantine lift {health.app}`.",
        key="quarantine-" + "".join(ch if ch.isalnum() else "-" for ch in health.app.lower()),
        description=f"Quarantine of {health.app}",
    )
    info: dict[str, Any] = {
        "quarantine": {
            "reason": health.reason,
            "since": _iso(health.quarantined_since),
            "next_retry_at": _iso(health.next_retry_at),
            "failures": health.failures,
            "last_error": health.last_error,
        }
    }
    if skipped:
        info.update(status="quarantined", error=text, notes=[text])
    return info


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
