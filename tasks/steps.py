"""The per-app steps of a sync, as Prefect tasks: plan (with its guard) and apply."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from directory.config import AppConfig, Safety
from tasks.desired import build_desired
from tasks.extract import AppExtract, set_aside_unreadable
from tasks.guard import ExtractCounts, guard_plan
from tasks.plan import PlanRules, plan_changes


@dataclass(frozen=True)
class AppPlan:
    plan: pd.DataFrame
    desired: pd.DataFrame
    rules: PlanRules
    hold_reasons: list[str]
    #: users whose linked account the app returned malformed: left alone this run
    set_aside: list[str]


@task(name="plan", task_run_name="plan-{app.name}", cache_policy=NO_CACHE)
def plan_app(
    app: AppConfig,
    users: pd.DataFrame,
    assigned: set[str],
    extract: AppExtract,
    links: pd.DataFrame,
    safety: Safety,
    approve_held: bool = False,
) -> AppPlan:
    rules = PlanRules.for_app(app)
    links, set_aside = set_aside_unreadable(links, extract.unreadable)
    desired = build_desired(users, assigned, app.effective_mapping)
    aside = desired["user_id"].isin(list(set_aside))
    set_aside_names = sorted(desired.loc[aside, "user_name"])
    desired = desired[~aside]
    plan = plan_changes(desired, extract.accounts, links, rules)
    counts = ExtractCounts(
        directory_users=len(users), app_accounts=len(extract.accounts), linked=len(links)
    )
    plan, reasons = guard_plan(plan, counts, safety)
    if approve_held and reasons:
        plan = plan.assign(held=False)
        reasons = [f"approved: {reason}" for reason in reasons]
    return AppPlan(plan, desired, rules, reasons, set_aside_names)
