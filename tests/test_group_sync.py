"""Groups and entitlements through the sync flow, against the in-process scim2-server:
groups created, renamed and deleted, members added and removed in chunks, roles from
group membership, membership drift reported, and a second run that writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from directory.models import Group
from flows.sync import sync
from tests.sync_env import Installation, people

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def run(env: Installation, **kwargs: Any) -> dict:
    return sync(config_path=env.config_path, app="chat", **kwargs)["apps"]["chat"]


def app_groups(env: Installation) -> dict[str, set[str]]:
    """The server's groups: displayName -> members' userNames."""
    names = {u["id"]: u["userName"] for u in env.scim.users("chat")}
    with env.scim.client("chat") as client:
        body = client.get("/Groups", params={"count": 1000}).json()
    return {
        g["displayName"]: {names.get(m["value"], m["value"]) for m in g.get("members", [])}
        for g in body.get("Resources", [])
    }


def group_patches(env: Installation) -> int:
    return env.scim.requests[("PATCH", "chat")]


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    installation = make_installation(
        ["chat"],
        chat={
            "push_groups": {"select": ["Engineering", "Ops"], "members_per_request": 2},
            "mapping": {"roles.value": {"groups": {"Engineering": "developer", "Ops": "oncall"}}},
        },
    )
    installation.import_people(people(6, apps="chat"))
    for i in range(5):
        installation.store.add_to_group(f"user{i:04d}", "Engineering")
    installation.store.add_to_group("user0004", "Ops")
    installation.store.add_to_group("user0005", "Ops")
    return installation


def test_groups_and_roles_converge_and_a_second_run_writes_nothing(env: Installation) -> None:
    result = run(env)

    assert result["status"] == "ok"
    engineering = {f"user{i:04d}" for i in range(5)}
    assert app_groups(env) == {"Engineering": engineering, "Ops": {"user0004", "user0005"}}
    summary = result["summary"]
    assert summary["groups_created"] == 2
    assert summary["members_added"] == 7
    roles = {
        u["userName"]: {r["value"] for r in u.get("roles", [])} for u in env.scim.users("chat")
    }
    assert roles["user0004"] == {"developer", "oncall"}
    assert roles["user0005"] == {"oncall"}
    assert roles["user0000"] == {"developer"}

    writes = env.scim.writes("chat")
    again = run(env)
    assert env.scim.writes("chat") == writes
    assert again["summary"]["members_added"] == again["summary"]["groups_created"] == 0
    assert not [r for r in again["drift"] if r["situation"] == "group"]


def test_members_change_in_chunks_under_the_apps_limit(env: Installation) -> None:
    run(env)
    before = group_patches(env)
    env.store.remove_from_group("user0000", "Engineering")
    env.store.remove_from_group("user0001", "Engineering")
    env.store.remove_from_group("user0002", "Engineering")
    env.store.add_to_group("user0005", "Engineering")

    result = run(env)

    assert app_groups(env)["Engineering"] == {"user0003", "user0004", "user0005"}
    assert result["summary"]["members_removed"] == 3
    assert result["summary"]["members_added"] == 1
    # 1 add request, 2 removal requests (3 members, 2 per request), and the roles of the
    # four people whose groups changed
    assert group_patches(env) - before == 3 + 4
    row = next(r for r in result["drift"] if r["action"] == "group-members")
    assert row["old"] == "-user0000, -user0001, -user0002"
    assert row["new"] == "+user0005"
    roles = {u["userName"]: u.get("roles") for u in env.scim.users("chat")}
    assert roles["user0000"] is None  # no group gives a role any more: removed


def test_rename_delete_and_membership_drift_made_in_the_app(env: Installation) -> None:
    run(env)
    with env.store.engine.begin() as conn:
        conn.execute(sa.update(Group).where(Group.name == "Ops").values(name="Operations"))
    env.app_settings["chat"]["push_groups"]["select"] = ["Engineering", "Operations"]
    env.write_config()
    stranger = _add_in_app(env, "Engineering", "user0005")

    result = run(env)

    groups = app_groups(env)
    assert set(groups) == {"Engineering", "Operations"}
    assert groups["Engineering"] == {f"user{i:04d}" for i in range(5)}
    assert stranger not in groups["Engineering"]
    assert result["summary"]["groups_renamed"] == 1
    assert result["summary"]["members_removed"] == 1
    rename = next(r for r in result["drift"] if r["action"] == "group-rename")
    assert (rename["old"], rename["new"]) == ("Ops", "Operations")

    env.app_settings["chat"]["push_groups"]["select"] = ["Engineering"]
    env.write_config()
    result = run(env)
    assert set(app_groups(env)) == {"Engineering"}
    assert result["summary"]["groups_deleted"] == 1
    assert env.store.read_group_links("chat")["display_name"].tolist() == ["Engineering"]


def test_report_policy_shows_extra_members_and_writes_nothing(env: Installation) -> None:
    env.app_settings["chat"]["push_groups"]["members"] = "report"
    env.write_config()
    run(env)
    _add_in_app(env, "Ops", "user0000")
    writes = env.scim.writes("chat")

    result = run(env)

    assert env.scim.writes("chat") == writes
    assert "user0000" in app_groups(env)["Ops"]
    reported = [r for r in result["drift"] if r["action"] == "report" and r["situation"] == "group"]
    assert [(r["user"], r["old"]) for r in reported] == [("group Ops", "-user0000")]


def test_an_existing_app_group_of_the_same_name_is_adopted(env: Installation) -> None:
    with env.scim.client("chat") as client:
        schema = "urn:ietf:params:scim:schemas:core:2.0:Group"
        client.post("/Groups", json={"schemas": [schema], "displayName": "engineering"})

    result = run(env)

    assert result["summary"]["groups_linked"] == 1
    assert result["summary"]["groups_created"] == 1  # Ops
    groups = app_groups(env)
    assert set(groups) == {"Engineering", "Ops"}  # adopted (any case), then named as ours
    assert len(groups["Engineering"]) == 5
    writes = env.scim.writes("chat")
    run(env)
    assert env.scim.writes("chat") == writes


def test_a_dry_run_plans_groups_and_writes_nothing(env: Installation) -> None:
    result = sync(config_path=env.config_path, app="chat", dry_run=True)["apps"]["chat"]

    assert env.scim.writes("chat") == 0
    assert result["summary"]["groups_created"] == 2
    assert app_groups(env) == {}


def _add_in_app(env: Installation, group: str, user: str) -> str:
    ids = {u["userName"]: u["id"] for u in env.scim.users("chat")}
    with env.scim.client("chat") as client:
        found = client.get("/Groups", params={"filter": f'displayName eq "{group}"'}).json()
        group_id = found["Resources"][0]["id"]
        body = {
            "schemas": [PATCH],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[user]}]}],
        }
        assert client.patch(f"/Groups/{group_id}", json=body).status_code in (200, 204)
    return user


def test_roles_are_a_set_in_the_report(env: Installation) -> None:
    result = run(env)
    assert result["status"] == "ok"
    env.store.add_to_group("user0000", "Ops")
    result = run(env)
    change = next(
        r for r in result["drift"] if r["user"] == "user0000" and r["attribute"] == "roles.value"
    )
    assert json.loads(change["old"]) == ["developer"]
    assert json.loads(change["new"]) == ["developer", "oncall"]


def test_nested_members_are_flattened_into_the_app_group_and_give_roles(env: Installation) -> None:
    env.store.add_to_group("user0005", "Platform")
    env.store.add_group_to_group("Platform", "Engineering")

    run(env)

    assert "user0005" in app_groups(env)["Engineering"]
    assert "Platform" not in app_groups(env)  # not selected: only its people reach the app
    roles = {
        u["userName"]: {r["value"] for r in u.get("roles", [])} for u in env.scim.users("chat")
    }
    assert roles["user0005"] == {"developer", "oncall"}

    env.store.remove_group_from_group("Platform", "Engineering")
    run(env)
    assert "user0005" not in app_groups(env)["Engineering"]
