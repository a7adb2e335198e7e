"""Scoping and remediation through the sync flow, against the in-process scim2-server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.sync import sync
from tests.sync_env import Installation, people

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SETTINGS: dict[str, Any] = {
    "scoping": [{"all": [{"attribute": "department", "op": "not_equals", "value": "Sales"}]}],
    "remediation": {"attributes": {"title": "report", "displayName": "ignore"}},
}


def run(env: Installation) -> dict:
    return sync(config_path=env.config_path, app="chat")["apps"]["chat"]


def change_in_app(env: Installation, user: str, **values: object) -> None:
    account = env.accounts("chat")[user]
    operations = [{"op": "replace", "path": k, "value": v} for k, v in values.items()]
    with env.scim.client("chat") as client:
        response = client.patch(
            f"/Users/{account['id']}", json={"schemas": [PATCH], "Operations": operations}
        )
        assert response.status_code in (200, 204)


def drift_of(result: dict, user: str) -> set[tuple]:
    return {
        (r["action"], r["attribute"], r["old"], r["new"], r["origin"])
        for r in result["drift"]
        if r["user"] == user
    }


def test_scoping_deprovisions_and_remediation_reports_ignores_and_enforces(
    make_installation: Callable[..., Installation],
) -> None:
    env = make_installation(["chat"], chat=dict(SETTINGS))
    team = people(6, apps="chat")
    env.import_people(team)
    assert run(env)["summary"]["created"] == 6

    team[5]["department"] = "Sales"  # falls out of the app's scope
    env.import_people(team)
    left = run(env)
    assert left["summary"]["deactivated"] == 1
    assert env.accounts("chat")["user0005"]["active"] is False

    change_in_app(env, "user0001", title="Hacked", displayName="Nick")
    change_in_app(env, "user0005", active=True)  # re-enabled by hand
    third = run(env)
    assert drift_of(third, "user0001") == {("report", "title", "Hacked", "Engineer", "app")}
    assert third["summary"]["reported"] == 1
    assert drift_of(third, "user0005") == {("deactivate", "active", "True", "False", "app")}
    accounts = env.accounts("chat")
    assert (accounts["user0001"]["title"], accounts["user0001"]["displayName"]) == (
        "Hacked",
        "Nick",
    )
    assert accounts["user0005"]["active"] is False

    writes = env.scim.writes()
    fourth = run(env)
    assert env.scim.writes() == writes
    assert drift_of(fourth, "user0001") == {("report", "title", "Hacked", "Engineer", "app")}
    assert drift_of(fourth, "user0005") == set()
    assert fourth["summary"]["reported"] == 1


def test_status_report_only_reports_an_account_re_enabled_by_hand(
    make_installation: Callable[..., Installation],
) -> None:
    settings = {**SETTINGS, "remediation": {"status": "report"}}
    env = make_installation(["chat"], chat=settings)
    team = people(4, apps="chat")
    env.import_people(team)
    run(env)
    team[3]["department"] = "Sales"
    env.import_people(team)
    assert run(env)["summary"]["deactivated"] == 1  # leaving scope is not drift: enforced

    change_in_app(env, "user0003", active=True)
    writes = env.scim.writes()
    for _ in range(2):
        result = run(env)
        assert drift_of(result, "user0003") == {("report", "active", "True", "False", "app")}
        assert env.scim.writes() == writes
    assert env.accounts("chat")["user0003"]["active"] is True
