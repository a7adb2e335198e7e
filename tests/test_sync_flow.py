"""The sync flow end to end, against real scim2-server apps, checked on the server."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from flows.sync import sync, sync_one_app
from tasks import session
from tasks.report import jsonable
from tests.faults import CorruptListedUser
from tests.scim_apps import TOKEN
from tests.sync_env import Installation, people, person

APPS = ["chat", "wiki"]
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    return make_installation(APPS)


def run(env: Installation, **kwargs: object) -> dict:
    return sync(config_path=env.config_path, **kwargs)


def test_initial_sync_creates_every_assigned_account_with_attributes_and_manager(
    env: Installation,
) -> None:
    env.import_people([*people(30), person(99, apps="chat")])
    result = run(env)
    assert result["apps"]["chat"]["summary"]["created"] == 31
    assert result["apps"]["wiki"]["summary"]["created"] == 30
    chat = env.accounts("chat")
    assert len(chat) == 31 and len(env.accounts("wiki")) == 30
    boss_id = chat["user0000"]["id"]
    one = chat["user0001"]
    assert one["name"] == {"givenName": "Given1", "familyName": "Family1"}
    assert one["emails"][0]["value"] == "user0001@example.com"
    assert one[ENTERPRISE]["employeeNumber"] == "E00001"
    assert one[ENTERPRISE]["manager"]["value"] == boss_id
    assert one["active"] is True


def test_second_sync_makes_zero_writes_on_the_server(env: Installation) -> None:
    env.import_people(people(40))
    run(env)
    writes = env.scim.writes()
    second = run(env)
    assert env.scim.writes() == writes
    assert second["apps"]["chat"]["summary"]["unchanged"] == 40
    assert second["apps"]["chat"]["summary"]["created"] == 0


def test_existing_accounts_are_adopted_not_duplicated(env: Installation) -> None:
    env.import_people(people(10))
    with env.scim.client("chat") as client:
        for i in (1, 2):  # exist already, one with a stale title and upper-case userName
            client.post(
                "/Users",
                json={
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": f"USER000{i}",
                    "title": "Old title",
                },
            )
    result = run(env)
    chat = env.scim.users("chat")
    assert len(chat) == 10
    assert len({u["userName"].lower() for u in chat}) == 10
    assert result["apps"]["chat"]["summary"]["linked"] == 2
    assert result["apps"]["chat"]["summary"]["created"] == 8
    adopted = {u["userName"].lower(): u for u in chat}["user0001"]
    assert adopted["title"] == "Engineer"


def test_drift_in_the_app_is_detected_and_repaired(env: Installation) -> None:
    env.import_people(people(5))
    run(env)
    target = env.accounts("chat")["user0003"]
    with env.scim.client("chat") as client:
        client.patch(
            f"/Users/{target['id']}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {"op": "replace", "path": "title", "value": "Hacked"},
                    {"op": "replace", "path": "active", "value": False},
                ],
            },
        )
    result = run(env)
    drift = [r for r in result["apps"]["chat"]["drift"] if r["user"] == "user0003"]
    assert {(r["attribute"], r["old"], r["new"]) for r in drift} == {
        ("title", "Hacked", "Engineer"),
        ("active", "False", "True"),
    }
    assert {r["origin"] for r in drift} == {"app"}
    assert result["apps"]["chat"]["summary"]["updated"] == 1
    repaired = env.accounts("chat")["user0003"]
    assert (repaired["title"], repaired["active"]) == ("Engineer", True)


def test_dry_run_makes_zero_writes_and_reports_the_same_plan(env: Installation) -> None:
    env.import_people(people(12))
    dry = run(env, dry_run=True)
    assert env.scim.writes() == 0
    assert env.scim.users("chat") == []
    real = run(env)
    for app in APPS:
        assert dry["apps"][app]["summary"] == real["apps"][app]["summary"]


def test_leavers_are_deactivated_and_unassigned_users_too(env: Installation) -> None:
    team = people(20)
    env.import_people(team)
    run(env)
    team[5]["active"] = "false"
    team[6]["apps"] = "wiki"
    env.import_people(team)
    result = run(env)
    assert result["apps"]["chat"]["summary"]["deactivated"] == 2
    assert result["apps"]["wiki"]["summary"]["deactivated"] == 1
    chat = env.accounts("chat")
    assert chat["user0005"]["active"] is False and chat["user0006"]["active"] is False
    assert env.accounts("wiki")["user0006"]["active"] is True
    assert len(chat) == 20  # deactivated, not deleted


def test_safety_hold_keeps_mass_deactivation_until_approved(env: Installation) -> None:
    team = people(40)
    env.import_people(team)
    run(env)
    for p in team[1:21]:
        p["active"] = "false"
    env.import_people(team)
    held = run(env, app="chat")
    summary = held["apps"]["chat"]["summary"]
    assert (summary["held"], summary["deactivated"], held["apps"]["chat"]["status"]) == (
        20,
        0,
        "held",
    )
    assert all(u["active"] for u in env.scim.users("chat"))
    approved = run(env, app="chat", approve_held=True)
    assert approved["apps"]["chat"]["summary"]["deactivated"] == 20
    assert sum(not u["active"] for u in env.scim.users("chat")) == 20


def test_paging_over_many_pages(env: Installation) -> None:
    env.app_settings = {"chat": {"page_size": 7}}
    env.write_config()
    env.import_people(people(60, apps="chat"))
    run(env, app="chat")
    second = run(env, app="chat")
    assert second["apps"]["chat"]["summary"]["unchanged"] == 60
    assert second["apps"]["chat"]["summary"]["orphans"] == 0


def test_a_failing_app_does_not_block_the_others(env: Installation) -> None:
    env.import_people(people(5))
    env.app_settings = {"wiki": {"token_env": "WRONG_TOKEN"}}
    env.write_config()
    import os

    os.environ["WRONG_TOKEN"] = "not-the-token"
    try:
        result = run(env)
    finally:
        del os.environ["WRONG_TOKEN"]
    assert result["apps"]["wiki"]["status"] == "failed"
    assert "not-the-token" not in result["apps"]["wiki"]["error"]
    assert result["apps"]["chat"]["summary"]["created"] == 5


def test_report_artifacts_are_keyed_per_app_and_hold_the_drift(env: Installation) -> None:
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    env.import_people(people(3))
    run(env, app="wiki")
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["drift-wiki"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=5,
        )
        summaries = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["drift-wiki-summary"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=5,
        )
    assert found and found[0].type == "table"
    rows = json.loads(found[0].data) if isinstance(found[0].data, str) else found[0].data
    assert {(r["user"], r["action"], r["status"]) for r in rows} >= {
        ("user0001", "create", "succeeded")
    }
    summary = summaries[0].data.splitlines()
    assert summary[2].startswith("| created | updated | deactivated |")
    assert summary[4].startswith("| 3 | 0 | 0 |")


def test_the_token_appears_in_no_log_record_and_no_result(
    env: Installation, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    env.import_people(people(3))
    with caplog.at_level(logging.DEBUG):
        result = run(env)
        env.app_settings = {"chat": {"token_env": "BAD_TOKEN"}}
        env.write_config()
        import os

        os.environ["BAD_TOKEN"] = "wrong-" + TOKEN
        try:
            failed = run(env, app="chat")
        finally:
            del os.environ["BAD_TOKEN"]
    assert failed["apps"]["chat"]["status"] == "failed"
    texts = [
        caplog.text,
        json.dumps(result, default=jsonable),
        json.dumps(failed, default=jsonable),
    ]
    actions = env.store.read_actions()
    texts.append(actions.to_json(date_format="iso"))
    assert not [t for t in texts if TOKEN in t]


def test_a_malformed_account_fails_alone_and_is_never_recreated(env: Installation) -> None:
    env.import_people(people(6, apps="chat"))
    run(env, app="chat")
    broken = env.accounts("chat")["user0004"]
    with env.scim.client("chat") as client:  # scim2-server accepts it; scim2-models does not
        client.patch(
            f"/Users/{broken['id']}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {"op": "replace", "path": 'emails[type eq "work"].value', "value": "x@y"},
                    {"op": "replace", "path": "title", "value": "Changed"},
                ],
            },
        )
    writes = env.scim.writes()
    result = run(env, app="chat")
    chat = result["apps"]["chat"]
    assert chat["summary"]["failed"] == 1
    assert chat["summary"]["unchanged"] == 5
    assert chat["summary"]["created"] == 0
    assert [r["user"] for r in chat["drift"] if r["status"] == "failed"] == ["user0004"]
    assert any(broken["id"] in note for note in chat["notes"])
    assert env.scim.writes() == writes
    assert len(env.scim.users("chat")) == 6


@pytest.mark.parametrize(("policy", "recreated"), [("recreate", True), ("report", False)])
def test_an_account_deleted_in_the_app_is_recreated_or_reported_by_policy(
    env: Installation, policy: str, recreated: bool
) -> None:
    env.app_settings = {"chat": {"on_missing": policy}}
    env.write_config()
    env.import_people(people(3, apps="chat"))
    run(env, app="chat")
    gone = env.accounts("chat")["user0002"]
    with env.scim.client("chat") as client:
        assert client.delete(f"/Users/{gone['id']}").status_code == 204
    result = run(env, app="chat")
    rows = [r for r in result["apps"]["chat"]["drift"] if r["user"] == "user0002"]
    assert rows and rows[0]["situation"] == "gone"
    assert ("user0002" in env.accounts("chat")) is recreated
    assert result["apps"]["chat"]["summary"]["created"] == int(recreated)


def test_a_directory_change_updates_only_the_changed_attribute(env: Installation) -> None:
    team = people(4, apps="chat")
    env.import_people(team)
    run(env)
    team[2]["title"] = "Staff Engineer"
    env.import_people(team)
    before = env.scim.requests.copy()
    result = run(env, app="chat")
    drift = [r for r in result["apps"]["chat"]["drift"] if r["user"] == "user0002"]
    assert [(r["attribute"], r["old"], r["new"], r["origin"]) for r in drift] == [
        ("title", "Engineer", "Staff Engineer", "directory")
    ]
    sent = env.scim.requests - before
    assert sent[("PATCH", "chat")] == 1 and sent[("POST", "chat")] == 0
    assert env.accounts("chat")["user0002"]["title"] == "Staff Engineer"


def test_the_sync_app_flow_touches_only_its_app(env: Installation) -> None:
    env.import_people(people(5))
    result = sync_one_app(app="wiki", config_path=env.config_path)
    assert list(result["apps"]) == ["wiki"]
    assert len(env.accounts("wiki")) == 5 and env.accounts("chat") == {}


USER_NAME = (
    'Unique(Lower(Join(".", NormalizeDiacritics([given_name]),'
    " NormalizeDiacritics([family_name]))))"
)


def test_expressions_unique_user_names_and_create_only_attributes(
    make_installation: Callable[..., Installation],
) -> None:
    mapping = {
        "userName": {"expression": USER_NAME, "apply": "create_only"},
        "title": {"field": "title", "apply": "create_only"},
        "displayName": {"expression": 'Join(" ", [given_name], Upper([family_name]))'},
    }
    env = make_installation(["chat"], chat={"mapping": mapping})
    team = people(3, apps="chat")
    team[1].update(given_name="Zoë", family_name="Núñez")
    team[2].update(given_name="Zoe", family_name="Nunez")  # the same first choice
    env.import_people(team)
    with env.scim.client("chat") as client:  # someone else's account has it already
        client.post("/Users", json={"schemas": [SCIM_USER], "userName": "zoe.nunez"})
    first = run(env)
    assert first["apps"]["chat"]["summary"]["created"] == 3
    chat = env.accounts("chat")
    assert set(chat) == {"given0.family0", "zoe.nunez", "zoe.nunez2", "zoe.nunez3"}
    names = {chat[n]["displayName"] for n in ("zoe.nunez2", "zoe.nunez3")}
    assert names == {"Zoë NÚÑEZ", "Zoe NUNEZ"}
    zoe = next(n for n in ("zoe.nunez2", "zoe.nunez3") if chat[n]["displayName"] == "Zoë NÚÑEZ")

    writes = env.scim.writes()
    assert run(env)["apps"]["chat"]["summary"]["unchanged"] == 3
    assert env.scim.writes() == writes

    team[1].update(family_name="Lee", title="Staff Engineer")
    env.import_people(team)
    changed = run(env)
    drift = [r for r in changed["apps"]["chat"]["drift"] if r["user"] == "user0001"]
    assert sorted((r["attribute"], r["new"]) for r in drift) == [
        ("displayName", "Zoë LEE"),
        ("name.familyName", "Lee"),
    ]
    account = env.accounts("chat")[zoe]  # userName and title are create-only: kept
    assert (account["displayName"], account["title"]) == ("Zoë LEE", "Engineer")
    writes = env.scim.writes()
    run(env)
    assert env.scim.writes() == writes


def _bad_emails(resource: dict) -> dict:
    return {**resource, "emails": "not a list"}


def _no_id(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "id"}


def _not_an_object(resource: dict) -> str:
    return f"user {resource['userName']}"


@pytest.mark.parametrize("corrupt", [_bad_emails, _no_id, _not_an_object])
def test_one_account_malformed_in_every_listing_fails_alone(
    env: Installation, corrupt: Callable[[dict], object]
) -> None:
    """A proxy (or a bug) garbles one account in the app's list answers: that account is
    reported and left alone, every other account syncs, nobody is deprovisioned or
    re-created for it."""
    team = people(8, apps="chat")
    env.import_people(team)
    run(env, app="chat")
    for member in team:
        member["title"] = "Staff Engineer"
    team[6]["active"] = "false"
    env.import_people(team)
    garbler = CorruptListedUser(env.scim.app, "user0003", corrupt)
    session.TRANSPORTS["chat"] = httpx.WSGITransport(app=garbler)  # type: ignore[arg-type]
    before = env.scim.requests.copy()

    chat = run(env, app="chat")["apps"]["chat"]

    assert garbler.corrupted >= 1
    assert [(r["user"], r["status"]) for r in chat["drift"] if r["status"] == "failed"] == [
        ("user0003", "failed")
    ]
    assert (chat["summary"]["updated"], chat["summary"]["deactivated"]) == (6, 1)
    assert chat["summary"]["created"] == 0
    sent = env.scim.requests - before
    assert sent[("POST", "chat")] == 0 and sent[("DELETE", "chat")] == 0
    accounts = env.accounts("chat")
    assert len(accounts) == 8
    assert {name for name, a in accounts.items() if not a["active"]} == {"user0006"}
    stale = {name for name, a in accounts.items() if a["title"] != "Staff Engineer"}
    assert stale == {"user0003", "user0006"}  # left alone; deactivated, not updated


def test_a_mapping_that_fails_for_one_person_leaves_them_alone_and_says_why(
    make_installation: Callable[..., Installation],
) -> None:
    """An expression with no default that cannot be evaluated for someone: their account is
    neither written with a null nor taken for a leaver's; the others sync."""
    mapping = {"title": {"expression": 'FormatDate([title], "%Y-%m-%d", "%d.%m.%Y")'}}
    env = make_installation(["chat"], chat={"mapping": mapping})
    team = people(3, apps="chat", title="2024-01-15")
    env.import_people(team)
    assert run(env)["apps"]["chat"]["summary"]["created"] == 3
    assert {u["title"] for u in env.accounts("chat").values()} == {"15.01.2024"}

    team[2]["title"] = "soon"  # no longer a date
    team.append(person(3, apps="chat", title="later"))  # a joiner whose mapping fails
    env.import_people(team)
    writes = env.scim.writes()
    chat = run(env)["apps"]["chat"]
    assert chat["summary"]["failed"] == 2 and chat["summary"]["deactivated"] == 0
    failed = {r["user"]: r["error"] for r in chat["drift"] if r["situation"] == "unmapped"}
    assert set(failed) == {"user0002", "user0003"}
    assert "mapping title" in failed["user0002"]
    assert env.scim.writes() == writes  # nothing written for anyone
    account = env.accounts("chat")["user0002"]
    assert (account["title"], account["active"]) == ("15.01.2024", True)
    assert "user0003" not in env.accounts("chat")
