from __future__ import annotations

import pandas as pd

from directory.config import Safety
from tasks.guard import ExtractCounts, guard_plan, held_only, release_held
from tasks.plan import PlannedAction, Situation


def plan_of(deactivate: int, keep: int, gone: int = 0) -> pd.DataFrame:
    rows = (
        [(Situation.DEPROVISION, PlannedAction.DEACTIVATE)] * deactivate
        + [(Situation.IN_SYNC, PlannedAction.NONE)] * keep
        + [(Situation.GONE, PlannedAction.CREATE)] * gone
    )
    return pd.DataFrame(
        [
            {"user_id": f"u{i}", "situation": s, "action": a, "note": None, "held": False}
            for i, (s, a) in enumerate(rows)
        ]
    )


SAFETY = Safety(max_deprovision_share=0.2, min_deprovision_count=5)


def test_small_deprovisions_pass() -> None:
    plan, reasons = guard_plan(plan_of(5, 95), ExtractCounts(100, 100, 100), SAFETY)
    assert reasons == []
    assert not plan["held"].any()


def test_mass_deprovision_is_held_and_explained() -> None:
    plan, reasons = guard_plan(plan_of(30, 70), ExtractCounts(100, 100, 100), SAFETY)
    assert int(plan["held"].sum()) == 30
    assert reasons == ["30 of 100 linked accounts would be deprovisioned (limit 20%, minimum 5)"]
    assert plan.loc[plan["held"], "action"].eq(PlannedAction.DEACTIVATE).all()


def test_share_alone_does_not_hold_below_the_minimum_count() -> None:
    plan, _ = guard_plan(plan_of(4, 6), ExtractCounts(10, 10, 10), SAFETY)
    assert not plan["held"].any()


def test_empty_directory_extract_holds_everything_destructive() -> None:
    plan, reasons = guard_plan(plan_of(3, 0), ExtractCounts(0, 3, 3), SAFETY)
    assert plan["held"].all()
    assert reasons[0] == "the directory extract is empty while 3 accounts are linked"


def test_app_listing_nobody_holds_mass_recreate() -> None:
    plan, reasons = guard_plan(plan_of(0, 0, gone=50), ExtractCounts(50, 0, 50), SAFETY)
    assert plan["held"].all()
    assert "the app listed no accounts while 50 are linked" in reasons


def test_held_only_and_release_held_for_an_approval() -> None:
    plan, _ = guard_plan(plan_of(30, 70), ExtractCounts(100, 100, 100), SAFETY)
    held = held_only(plan)
    assert len(held) == 30 and held["held"].all()
    released = release_held(plan, note="held, then approved by ann")
    assert not released["held"].any()
    assert set(released.loc[held.index, "note"]) == {"held, then approved by ann"}
    assert released.loc[~plan["held"], "note"].isna().all()  # rows never held keep theirs
    assert plan["held"].sum() == 30  # the original plan is not changed


def test_an_approved_sync_plan_is_not_held_again() -> None:
    plan, reasons = guard_plan(plan_of(30, 70), ExtractCounts(100, 100, 100), SAFETY)
    assert reasons and held_only(release_held(plan)).empty
