"""The pure plan on literal frames: every situation, exact outcomes, no Prefect, no network."""

from __future__ import annotations

import pandas as pd
import pytest

from directory.config import Action, DeprovisionMode, MissingPolicy
from tasks.plan import PlannedAction, PlanRules, Situation, attribute_hash, plan_changes

T = ("userName", "displayName", "active", "manager")
RULES = PlanRules(
    targets=T,
    match_on=("userName",),
    references=frozenset({"manager"}),
    case_insensitive=frozenset({"userName"}),
)


def desired(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "user_id": u,
                "user_name": n,
                "in_scope": s,
                "userName": n,
                "displayName": d,
                "active": True,
                "manager": m,
            }
            for u, n, s, d, m in rows
        ],
        columns=["user_id", "user_name", "in_scope", *T],
    ).astype(object)


def actual(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"remote_id": r, "userName": n, "displayName": d, "active": a, "manager": m}
            for r, n, d, a, m in rows
        ],
        columns=["remote_id", *T],
    ).astype(object)


def links(*rows: tuple, hashes: dict | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"user_id": u, "remote_id": r, "attr_hash": (hashes or {}).get(u), "status": s}
            for u, r, s in rows
        ],
        columns=["user_id", "remote_id", "attr_hash", "status"],
    )


def by_user(plan: pd.DataFrame) -> dict:
    return {
        (row.user_id or row.remote_id): (row.situation, row.action, row.changes)
        for row in plan.itertuples()
    }


def test_every_situation_in_one_plan() -> None:
    d = desired(
        ("u1", "ann", True, "Ann", None),  # missing -> create
        ("u2", "bob", True, "Bob", None),  # matched by userName (case differs) -> link
        ("u3", "cat", True, "Cat", None),  # linked, equal -> none
        ("u4", "dan", True, "Dan D", "u3"),  # linked, display name + manager drifted
        ("u5", "eve", False, "Eve", None),  # linked, out of scope, active -> deactivate
        ("u6", "fay", False, "Fay", None),  # linked, out of scope, inactive -> none
        ("u7", "gus", False, "Gus", None),  # unlinked, out of scope, account exists
        ("u8", "hal", True, "Hal", None),  # linked, account vanished -> recreate
        ("u9", "ivy", False, "Ivy", None),  # out of scope, nothing anywhere -> absent
    )
    a = actual(
        ("r2", "BOB", "Bob", True, None),
        ("r3", "cat", "Cat", True, None),
        ("r4", "dan", "Dan", True, None),
        ("r5", "eve", "Eve", True, None),
        ("r6", "fay", "Fay", False, None),
        ("r7", "gus", "Gus", True, None),
        ("r0", "zed", "Zed", True, None),  # orphan
    )
    links_ = links(
        ("u3", "r3", "active"),
        ("u4", "r4", "active"),
        ("u5", "r5", "active"),
        ("u6", "r6", "deactivated"),
        ("u8", "r8", "active"),
    )
    plan = by_user(plan_changes(d, a, links_, RULES))

    assert plan["u1"] == (
        Situation.MISSING,
        PlannedAction.CREATE,
        {"userName": [None, "ann"], "displayName": [None, "Ann"], "active": [None, True]},
    )
    assert plan["u2"] == (Situation.MATCHED, PlannedAction.LINK, None)
    assert plan["u3"] == (Situation.IN_SYNC, PlannedAction.NONE, None)
    assert plan["u4"] == (
        Situation.DRIFTED,
        PlannedAction.UPDATE,
        {"displayName": ["Dan", "Dan D"], "manager": [None, "u3"]},
    )
    assert plan["u5"] == (
        Situation.DEPROVISION,
        PlannedAction.DEACTIVATE,
        {"active": [True, False]},
    )
    assert plan["u6"] == (Situation.DEPROVISIONED, PlannedAction.NONE, None)
    assert plan["u7"][:2] == (Situation.UNMANAGED, PlannedAction.REPORT)
    assert plan["u8"][:2] == (Situation.GONE, PlannedAction.CREATE)
    assert plan["r0"][:2] == (Situation.ORPHAN, PlannedAction.REPORT)
    assert "u9" not in plan
    assert len(plan) == 9


def test_an_unlinked_account_holding_the_users_id_is_roster_s_own_and_deprovisioned() -> None:
    """RFC 7643 §3.1: externalId is the provisioning client's identifier. An out-of-scope
    user's unlinked account with their id there was created by Roster and its link lost
    (the create's answer never came back); anyone else's account stays unmanaged."""
    rules = PlanRules(
        targets=("userName", "externalId", "active"),
        match_on=("userName",),
        owner_keys=frozenset({"externalId"}),
    )
    d = pd.DataFrame(
        [
            {"user_id": u, "user_name": n, "in_scope": False, "userName": n, "externalId": u}
            for u, n in [("u1", "ann"), ("u2", "bob"), ("u3", "cy")]
        ]
    ).assign(active=True)
    a = pd.DataFrame(
        [
            {"remote_id": "r1", "userName": "ann", "externalId": "u1", "active": True},
            {"remote_id": "r2", "userName": "bob", "externalId": None, "active": True},
            {"remote_id": "r3", "userName": "cy", "externalId": "u3", "active": False},
        ]
    )
    plan = plan_changes(d, a, links(), rules).set_index("user_id")
    assert plan.loc["u1", ["situation", "action", "remote_id"]].tolist() == [
        Situation.DEPROVISION,
        PlannedAction.DEACTIVATE,
        "r1",
    ]
    assert plan.loc["u1", "changes"] == {"active": [True, False]}
    assert plan.loc["u2", ["situation", "action"]].tolist() == [
        Situation.UNMANAGED,
        PlannedAction.REPORT,
    ]
    assert plan.loc["u3", ["situation", "action"]].tolist() == [
        Situation.DEPROVISIONED,
        PlannedAction.NONE,
    ]
    assert PlanRules(targets=rules.targets).owner_keys == frozenset()  # off unless mapped


def test_matching_falls_through_attributes_in_order() -> None:
    rules = PlanRules(
        targets=("userName", "email"),
        match_on=("userName", "email"),
        case_insensitive=frozenset({"userName", "email"}),
    )
    d = pd.DataFrame(
        [
            {
                "user_id": "u1",
                "user_name": "ann",
                "in_scope": True,
                "userName": "ann",
                "email": "Ann@X.com",
            }
        ]
    )
    a = pd.DataFrame([{"remote_id": "r1", "userName": "ann.old", "email": "ann@x.com"}])
    plan = plan_changes(d, a, links(), rules)
    row = plan.iloc[0]
    assert (row.situation, row.action, row.match_attr, row.remote_id) == (
        Situation.MATCHED,
        PlannedAction.LINK,
        "email",
        "r1",
    )
    assert row.changes == {"userName": ["ann.old", "ann"]}


def test_one_account_claimed_by_two_users_is_disputed_on_both_sides() -> None:
    rules = PlanRules(
        targets=("userName", "email"), match_on=("email",), case_insensitive=frozenset({"email"})
    )
    d = pd.DataFrame(
        [
            {
                "user_id": "u1",
                "user_name": "a1",
                "in_scope": True,
                "userName": "a1",
                "email": "s@x",
            },
            {
                "user_id": "u2",
                "user_name": "a2",
                "in_scope": True,
                "userName": "a2",
                "email": "S@x",
            },
        ]
    )
    a = pd.DataFrame([{"remote_id": "r1", "userName": "shared", "email": "s@x"}])
    plan = by_user(plan_changes(d, a, links(), rules))
    assert {k: v[:2] for k, v in plan.items()} == {
        "u1": (Situation.DISPUTED, PlannedAction.REPORT),
        "u2": (Situation.DISPUTED, PlannedAction.REPORT),
        "r1": (Situation.DISPUTED, PlannedAction.REPORT),
    }


def test_linked_and_equal_is_nothing_and_origin_tells_app_drift_from_directory_change() -> None:
    d = desired(("u1", "ann", True, "Ann", None), ("u2", "bob", True, "Bob B", None))
    h = attribute_hash(d, T)
    a = actual(("r1", "ann", "Ann (edited in app)", True, None), ("r2", "bob", "Bob", True, None))
    plan = plan_changes(
        d,
        a,
        links(("u1", "r1", "active"), ("u2", "r2", "active"), hashes={"u1": h[0], "u2": "stale"}),
        RULES,
    )
    origin = dict(zip(plan["user_id"], plan["origin"], strict=True))
    assert origin == {"u1": "app", "u2": "directory"}


def test_reactivation_of_an_account_disabled_in_the_app() -> None:
    d = desired(("u1", "ann", True, "Ann", None))
    plan = plan_changes(
        d, actual(("r1", "ann", "Ann", False, None)), links(("u1", "r1", "deactivated")), RULES
    )
    assert by_user(plan)["u1"] == (
        Situation.DRIFTED,
        PlannedAction.UPDATE,
        {"active": [False, True]},
    )


def test_references_compare_through_links_not_remote_ids() -> None:
    d = desired(("u1", "boss", True, "Boss", None), ("u2", "ann", True, "Ann", "u1"))
    a = actual(("r1", "boss", "Boss", True, None), ("r2", "ann", "Ann", True, "r1"))
    plan = plan_changes(d, a, links(("u1", "r1", "active"), ("u2", "r2", "active")), RULES)
    assert set(plan["action"]) == {PlannedAction.NONE}


def test_a_reference_to_a_linked_account_the_app_lost_is_not_drift() -> None:
    """The manager's account was deleted in the app (its re-create may be held): the
    reports still point at it, which is what the directory says, not a change to write."""
    d = desired(("u1", "boss", True, "Boss", None), ("u2", "ann", True, "Ann", "u1"))
    a = actual(("r2", "ann", "Ann", True, "r1"))
    plan = plan_changes(d, a, links(("u1", "r1", "active"), ("u2", "r2", "active")), RULES)
    outcome = {user: (situation, action) for user, (situation, action, _) in by_user(plan).items()}
    assert outcome == {
        "u1": (Situation.GONE, PlannedAction.CREATE),
        "u2": (Situation.IN_SYNC, PlannedAction.NONE),
    }


def test_linked_users_the_directory_no_longer_has_are_deprovisioned() -> None:
    """Deleted from the directory, or missing from a short extract: deprovisioned like a
    leaver (the guard then counts them), never silently forgotten."""
    d = desired(("u1", "boss", True, "Boss", None))
    a = actual(("r1", "boss", "Boss", True, None), ("r2", "ann", "Ann", True, None))
    plan = plan_changes(d, a, links(("u1", "r1", "active"), ("u2", "r2", "active")), RULES)
    assert by_user(plan)["u2"][:2] == (Situation.DEPROVISION, PlannedAction.DEACTIVATE)
    assert plan.loc[plan["user_id"] == "u2", "remote_id"].tolist() == ["r2"]


@pytest.mark.parametrize(
    ("mode", "remote_active", "expected"),
    [
        (DeprovisionMode.DEACTIVATE, True, PlannedAction.DEACTIVATE),
        (DeprovisionMode.DEACTIVATE, False, PlannedAction.NONE),
        (DeprovisionMode.DELETE, True, PlannedAction.DELETE),
        (DeprovisionMode.DELETE, False, PlannedAction.DELETE),
    ],
)
def test_deprovision_mode(mode: DeprovisionMode, remote_active: bool, expected: str) -> None:
    rules = PlanRules(
        targets=T, match_on=("userName",), deprovision=mode, actions=frozenset(Action)
    )
    plan = plan_changes(
        desired(("u1", "ann", False, "Ann", None)),
        actual(("r1", "ann", "Ann", remote_active, None)),
        links(("u1", "r1", "active")),
        rules,
    )
    assert plan.iloc[0].action == expected


def test_gone_account_is_reported_when_policy_says_report_and_unlinked_when_out_of_scope() -> None:
    rules = PlanRules(targets=T, match_on=("userName",), on_missing=MissingPolicy.REPORT)
    d = desired(("u1", "ann", True, "Ann", None), ("u2", "bob", False, "Bob", None))
    plan = by_user(
        plan_changes(d, actual(), links(("u1", "r1", "active"), ("u2", "r2", "active")), rules)
    )
    assert plan["u1"][:2] == (Situation.GONE, PlannedAction.REPORT)
    assert plan["u2"][:2] == (Situation.GONE, PlannedAction.UNLINK)


def test_gone_account_that_reappears_under_a_new_id_is_relinked() -> None:
    d = desired(("u1", "ann", True, "Ann", None))
    plan = plan_changes(
        d, actual(("r9", "ann", "Ann", True, None)), links(("u1", "r1", "active")), RULES
    )
    assert (plan.iloc[0].situation, plan.iloc[0].remote_id) == (Situation.MATCHED, "r9")


def test_disabled_actions_become_reports_with_a_note() -> None:
    rules = PlanRules(targets=T, match_on=("userName",), actions=frozenset({Action.UPDATE}))
    d = desired(("u1", "ann", True, "Ann", None), ("u2", "bob", False, "Bob", None))
    plan = plan_changes(
        d, actual(("r2", "bob", "Bob", True, None)), links(("u2", "r2", "active")), rules
    )
    rows = {r.user_id: r for r in plan.itertuples()}
    assert rows["u1"].action == PlannedAction.REPORT
    assert rows["u1"].note == "create is not enabled for this app"
    assert rows["u2"].action == PlannedAction.REPORT
    assert rows["u2"].note == "deactivate is not enabled for this app"


def test_empty_inputs_give_an_empty_plan() -> None:
    plan = plan_changes(desired(), actual(), links(), RULES)
    assert plan.empty
    assert "situation" in plan.columns
