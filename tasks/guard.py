"""The safety hold: a plan that would take access from too many people is not applied.

A truncated directory export, an app that suddenly lists nobody, or a mapping mistake all
look like "everyone left". The guard turns such plans into held actions that are reported,
listed and applied only after someone approves: in the Prefect UI when the flow pauses
for a decision (``tasks.approval``), or with ``roster sync --approve-held``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from directory.config import Safety
from tasks.plan import DESTRUCTIVE, PlannedAction, Situation


@dataclass(frozen=True)
class ExtractCounts:
    directory_users: int
    app_accounts: int
    linked: int


def guard_plan(
    plan: pd.DataFrame, counts: ExtractCounts, safety: Safety
) -> tuple[pd.DataFrame, list[str]]:
    """Mark destructive (and mass re-create) rows ``held``; return the reasons, if any."""
    destructive = plan["action"].isin(list(DESTRUCTIVE))
    recreates = (plan["situation"] == Situation.GONE) & (plan["action"] == PlannedAction.CREATE)
    reasons: list[str] = []
    hold_destructive = hold_recreates = False
    if counts.linked and counts.directory_users == 0:
        reasons.append(f"the directory extract is empty while {counts.linked} accounts are linked")
        hold_destructive = True
    if counts.linked and counts.app_accounts == 0:
        reasons.append(f"the app listed no accounts while {counts.linked} are linked")
        hold_destructive = hold_recreates = True
    if _too_many(int(destructive.sum()), counts.linked, safety):
        reasons.append(
            f"{int(destructive.sum())} of {counts.linked} linked accounts would be deprovisioned"
            f" (limit {safety.max_deprovision_share:.0%}, minimum {safety.min_deprovision_count})"
        )
        hold_destructive = True
    if _too_many(int(recreates.sum()), counts.linked, safety):
        reasons.append(
            f"{int(recreates.sum())} linked accounts are missing from the app and would be"
            " created again"
        )
        hold_recreates = True
    held = (destructive & hold_destructive) | (recreates & hold_recreates)
    return mark_held(plan, held, reasons), reasons


def mark_held(plan: pd.DataFrame, held: pd.Series, reasons: list[str]) -> pd.DataFrame:
    """``plan`` with the ``held`` rows marked and noted with the reasons (a copy only
    when something is held). Account and group plans share it."""
    if not held.any():
        return plan
    plan = plan.copy()
    plan.loc[held, "held"] = True
    plan.loc[held, "note"] = "held by the safety threshold: " + "; ".join(reasons)
    return plan


def _too_many(count: int, linked: int, safety: Safety) -> bool:
    return count > safety.min_deprovision_count and count > safety.max_deprovision_share * linked


def held_only(plan: pd.DataFrame) -> pd.DataFrame:
    """The held rows, nothing else: what an approval applies."""
    return plan[plan["held"].astype(bool)]


def release_held(plan: pd.DataFrame, note: str | None = None) -> pd.DataFrame:
    """The plan with every hold lifted, as after an approval; ``note`` replaces the held
    rows' "held by the safety threshold" note."""
    held = plan["held"].astype(bool)
    plan = plan.assign(held=False)
    if note is not None and held.any():
        plan.loc[held, "note"] = note
    return plan
