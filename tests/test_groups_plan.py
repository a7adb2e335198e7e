"""The group plan and its guard, pure: frames in, a plan out, no Prefect and no network."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from connectors.base import AppGroup
from directory.config import GroupPush, GroupsSource, Safety, ScimAppConfig
from directory.multivalue import decode_set, encode_set
from tasks.groups import GroupAction, GroupInputs, guard_groups, plan_groups

GROUPS = pd.DataFrame({"group_id": [1, 2, 3], "name": ["Engineering", "Ops", "Sales"]})
MEMBERS = pd.DataFrame({"group_id": [1, 1, 2, 3], "user_id": ["u1", "u2", "u2", "u3"]})
ACCOUNTS = {"u1": "r1", "u2": "r2", "u3": "r3"}
NO_LINKS = pd.DataFrame({"group_id": [], "remote_id": [], "display_name": []})


def inputs(**overrides: object) -> GroupInputs:
    values: dict = {"groups": GROUPS, "members": MEMBERS, "assigning": {1, 2}, "accounts": ACCOUNTS}
    values.update(overrides)
    return GroupInputs(**values)


def links(*rows: tuple[int, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["group_id", "remote_id", "display_name"])


def by_name(plan: pd.DataFrame) -> dict[str, dict]:
    return {row["display_name"]: row for row in plan.to_dict("records")}


def test_assigned_groups_are_created_with_their_members_who_have_accounts() -> None:
    plan, notes = plan_groups(inputs(accounts={"u1": "r1"}), GroupPush(), [], NO_LINKS)

    rows = by_name(plan)
    assert set(rows) == {"Engineering", "Ops"}  # Sales assigns no app
    assert rows["Engineering"]["action"] == GroupAction.CREATE
    assert rows["Engineering"]["add"] == ("r1",)  # u2 has no account in the app
    assert rows["Ops"]["add"] == ()
    assert notes == []


def test_in_sync_groups_plan_nothing() -> None:
    app = [
        AppGroup("g1", "Engineering", frozenset({"r1", "r2"})),
        AppGroup("g2", "Ops", frozenset({"r2"})),
    ]
    plan, _ = plan_groups(
        inputs(), GroupPush(), app, links((1, "g1", "Engineering"), (2, "g2", "Ops"))
    )

    assert set(plan["action"]) == {GroupAction.NONE}
    assert all(row["add"] == () and row["remove"] == () for row in plan.to_dict("records"))


def test_renames_members_and_removals() -> None:
    app = [
        AppGroup("g1", "Eng", frozenset({"r1", "stranger"})),
        AppGroup("g3", "Sales", frozenset()),
    ]
    push = GroupPush(select=["engineering"], rename={"Engineering": "Engineers"})
    plan, _ = plan_groups(inputs(), push, app, links((1, "g1", "Eng"), (3, "g3", "Sales")))

    rows = by_name(plan)
    assert rows["Engineers"]["action"] == GroupAction.RENAME
    assert rows["Engineers"]["old_name"] == "Eng"
    assert rows["Engineers"]["add"] == ("r2",)
    assert rows["Engineers"]["remove"] == ("stranger",)
    assert rows["Sales"]["action"] == GroupAction.DELETE


def test_keep_unlinks_and_a_vanished_group_is_forgotten() -> None:
    push = GroupPush(select=["Ops"], on_removed="keep")
    app = [AppGroup("g1", "Engineering", frozenset()), AppGroup("g2", "Ops", frozenset({"r2"}))]
    plan, _ = plan_groups(
        inputs(), push, app, links((1, "g1", "Engineering"), (3, "gone", "Sales"))
    )

    actions = dict(zip(plan["group_id"], plan["action"], strict=True))
    assert actions == {2: GroupAction.LINK, 1: GroupAction.UNLINK, 3: GroupAction.UNLINK}


def test_two_app_groups_with_the_name_are_a_conflict_not_a_guess() -> None:
    app = [AppGroup("a", "ops", frozenset()), AppGroup("b", "OPS", frozenset())]
    plan, _ = plan_groups(inputs(), GroupPush(select=["Ops"]), app, NO_LINKS)

    assert plan["action"].tolist() == [GroupAction.CONFLICT]
    assert "2 app groups" in plan["note"].iloc[0]


def test_report_policy_shows_extras_without_removing_them() -> None:
    app = [AppGroup("g2", "Ops", frozenset({"r2", "r9"}))]
    plan, _ = plan_groups(
        inputs(), GroupPush(select=["Ops"], members="report"), app, links((2, "g2", "Ops"))
    )

    row = plan.iloc[0]
    assert row["remove"] == () and row["reported"] == ("r9",)


def test_unknown_names_in_select_are_noted() -> None:
    _, notes = plan_groups(inputs(), GroupPush(select=["Ops", "Nope"]), [], NO_LINKS)
    assert notes == ["push_groups.select names 'Nope', which is not a directory group"]


def test_guard_holds_deletes_when_the_directory_lists_no_groups() -> None:
    empty = inputs(groups=GROUPS.iloc[0:0], members=MEMBERS.iloc[0:0], assigning=set())
    app = [AppGroup("g1", "Engineering", frozenset({"r1"}))]
    plan, _ = plan_groups(empty, GroupPush(), app, links((1, "g1", "Engineering")))
    assert plan["action"].tolist() == [GroupAction.DELETE]

    guarded, reasons = guard_groups(plan, directory_groups=0, safety=Safety())

    assert guarded["held"].tolist() == [True]
    assert "lists no groups" in reasons[0]


def test_guard_holds_member_removals_while_account_changes_are_held() -> None:
    app = [AppGroup("g1", "Engineering", frozenset({"r1", "r2", "r3"}))]
    plan, _ = plan_groups(
        inputs(), GroupPush(select=["Engineering"]), app, links((1, "g1", "Engineering"))
    )

    guarded, reasons = guard_groups(
        plan, directory_groups=3, safety=Safety(), account_hold=["the directory extract is empty"]
    )

    assert guarded["held"].tolist() == [True]
    assert reasons == ["member removals wait while the app's account changes are held"]
    unguarded, none = guard_groups(plan, directory_groups=3, safety=Safety())
    assert not unguarded["held"].any() and none == []


def test_sets_are_canonical_text() -> None:
    assert encode_set(["b", "a", "b", ""]) == '["a", "b"]'
    assert encode_set([]) is None
    assert decode_set('["a", "b"]') == ["a", "b"]
    assert decode_set("solo") == ["solo"]
    assert decode_set(None) == []


def test_groups_source_values_and_errors() -> None:
    source = GroupsSource(groups={"Engineering": "developer", "ops": "oncall"})
    assert sorted(source.values_for(["engineering", "Ops", "Sales"])) == ["developer", "oncall"]
    assert GroupsSource(groups="all").values_for(["A", "B"]) == ["A", "B"]
    with pytest.raises(ValidationError, match="at least one"):
        GroupsSource(groups={})


def test_push_groups_only_where_the_kind_keeps_groups() -> None:
    base = {"name": "chat", "base_url": "https://chat.example.com/scim/v2", "token_env": "T"}
    assert ScimAppConfig(connector="scim", push_groups={}, **base).push_groups == GroupPush()
    from directory.config import parse_config  # the error names the key

    ldap = {
        "name": "dir",
        "connector": "ldap",
        "url": "ldap://127.0.0.1:389",
        "bind_dn": "cn=admin,dc=example,dc=com",
        "base_dn": "ou=people,dc=example,dc=com",
        "token_env": "T",
        "push_groups": {"select": ["Ops"]},
    }
    with pytest.raises(Exception, match="push_groups: the ldap connector cannot keep groups"):
        parse_config({"apps": [ldap]}, "roster.yaml")
