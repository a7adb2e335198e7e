"""Remediation policy in the pure plan, on literal frames: enforce is written, report only
shown, ignore not compared; status drift; and a second plan over the result writes nothing."""

from __future__ import annotations

import pandas as pd

from directory.config import parse_config
from directory.scoping import Remediation
from tasks.plan import PlannedAction, PlanRules, Situation, attribute_hash, plan_changes

T = ("userName", "displayName", "title", "active")
RULES = PlanRules(
    targets=T,
    match_on=("userName",),
    reported=frozenset({"title"}),
    ignored=frozenset({"displayName"}),
)
REPORT_STATUS = PlanRules(targets=T, match_on=("userName",), status=Remediation.REPORT)


def desired(*rows: tuple[str, bool, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "user_id": u,
                "user_name": u,
                "in_scope": s,
                "userName": u,
                "displayName": d,
                "title": t,
                "active": True,
            }
            for u, s, d, t in rows
        ]
    ).astype(object)


def actual(*rows: tuple[str, str, str, bool]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"remote_id": f"r-{u}", "userName": u, "displayName": d, "title": t, "active": a}
            for u, d, t, a in rows
        ]
    ).astype(object)


def links(*rows: tuple[str, str], hashes: dict[str, str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"user_id": u, "remote_id": f"r-{u}", "attr_hash": (hashes or {}).get(u), "status": s}
            for u, s in rows
        ],
        columns=["user_id", "remote_id", "attr_hash", "status"],
    )


def rows(plan: pd.DataFrame) -> dict[str, tuple]:
    return {
        r.user_id: (r.situation, r.action, r.changes, r.reported, r.origin)
        for r in plan.itertuples()
    }


def test_report_is_shown_not_written_and_ignore_is_not_compared() -> None:
    d = desired(
        ("ann", True, "Ann", "Engineer"),  # title differs (report) -> report only
        ("bob", True, "Bob", "Engineer"),  # displayName differs (ignore) -> in sync
        ("cy", True, "Cy", "Engineer"),  # title (report) and active (enforce) differ
    )
    a = actual(
        ("ann", "Ann", "Boss", True),
        ("bob", "Robert", "Engineer", True),
        ("cy", "Cy", "Boss", False),
    )
    plan = plan_changes(d, a, links(("ann", "active"), ("bob", "active"), ("cy", "active")), RULES)
    assert rows(plan) == {
        "ann": (
            Situation.DRIFTED,
            PlannedAction.REPORT,
            None,
            {"title": ["Boss", "Engineer"]},
            "directory",  # no hash on the link: not known to be Roster's last write
        ),
        "bob": (Situation.IN_SYNC, PlannedAction.NONE, None, None, None),
        "cy": (
            Situation.DRIFTED,
            PlannedAction.UPDATE,
            {"active": [False, True]},
            {"title": ["Boss", "Engineer"]},
            "directory",
        ),
    }
    # only the write's hash goes to the link: over the compared targets, ignore left out
    assert RULES.compared == ("userName", "title", "active")
    assert RULES.enforced == ("userName", "active")
    assert plan.set_index("user_id")["attr_hash"].notna().to_dict() == {
        "ann": False,
        "bob": False,
        "cy": True,
    }


def test_after_the_write_the_reported_drift_stays_reported_without_flip_flopping() -> None:
    d = desired(("cy", True, "Cy", "Engineer"))
    first = plan_changes(d, actual(("cy", "Cy", "Boss", False)), links(("cy", "active")), RULES)
    written = first["attr_hash"].iloc[0]
    assert written == attribute_hash(d, RULES.compared).iloc[0]
    # the app now holds what was written (active), not the reported title
    after = actual(("cy", "Cy", "Boss", True))
    for _ in range(2):
        again = plan_changes(d, after, links(("cy", "active"), hashes={"cy": written}), RULES)
        assert rows(again) == {
            "cy": (
                Situation.DRIFTED,
                PlannedAction.REPORT,
                None,
                {"title": ["Boss", "Engineer"]},
                "app",  # the directory is as last written: someone changed the app
            )
        }
        assert again["attr_hash"].isna().all()  # the link is left as it is


def test_an_account_re_enabled_by_hand_is_deactivated_again_and_shown_as_app_drift() -> None:
    d = desired(("ann", False, "Ann", "Engineer"), ("bob", False, "Bob", "Engineer"))
    a = actual(("ann", "Ann", "Engineer", True), ("bob", "Bob", "Engineer", True))
    # ann's account was deactivated by Roster and enabled again; bob just left
    lk = links(("ann", "deactivated"), ("bob", "active"))
    enforce = plan_changes(d, a, lk, RULES).set_index("user_id")
    assert enforce.loc["ann", ["situation", "action", "origin", "note"]].tolist() == [
        Situation.DEPROVISION,
        PlannedAction.DEACTIVATE,
        "app",
        "re-enabled in the app while out of scope",
    ]
    assert enforce.loc["ann", "changes"] == {"active": [True, False]}
    report = plan_changes(d, a, lk, REPORT_STATUS).set_index("user_id")
    assert report.loc["ann", ["situation", "action", "changes", "origin"]].tolist() == [
        Situation.DRIFTED,
        PlannedAction.REPORT,
        None,
        "app",
    ]
    assert report.loc["ann", "reported"] == {"active": [True, False]}
    # a leaver is a directory change, not drift: deactivated under either policy
    for plan in (enforce, report):
        assert plan.loc["bob", ["situation", "action"]].tolist() == [
            Situation.DEPROVISION,
            PlannedAction.DEACTIVATE,
        ]
        assert plan.loc["bob", "origin"] is None


def test_rules_for_an_app_take_its_remediation() -> None:
    config = parse_config(
        {
            "apps": [
                {
                    "name": "chat",
                    "connector": "scim",
                    "base_url": "http://127.0.0.1:1/scim/v2",
                    "token_env": "T",
                    "remediation": {
                        "default": "report",
                        "attributes": {"userName": "enforce", "displayName": "ignore"},
                        "status": "report",
                    },
                }
            ]
        }
    )
    rules = PlanRules.for_app(config.app("chat"))
    assert "userName" not in rules.reported and "title" in rules.reported
    assert rules.ignored == frozenset({"displayName"})
    assert rules.status is Remediation.REPORT
    assert rules.enforced == ("userName",)
