"""provision-user: one person, every assigned app, each step reported; checked on the servers."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import typer
from prefect.artifacts import Artifact
from typer.testing import CliRunner

from cli.provision import provision_command
from flows.provision import provision_user
from flows.sync import sync
from tests.sync_env import Installation, person

APPS = ["chat", "wiki", "crm"]
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    """user0001: wiki directly, chat through the group engineering, crm not at all; chat
    already holds an account called USER0001 with a stale title."""
    env = make_installation(APPS)
    env.import_people([person(0, apps="chat;wiki"), person(1, apps="wiki", manager="user0000")])
    env.store.add_to_group("user0001", "engineering")
    env.store.assign_group_app("engineering", "chat")
    with env.scim.client("chat") as client:
        client.post("/Users", json={"schemas": [CORE], "userName": "USER0001", "title": "Old"})
    return env


def steps(report: dict) -> dict[str, tuple[str, str]]:
    return {s["step"]: (s["result"], s["detail"]) for s in report["steps"]}


def test_one_user_is_provisioned_in_each_assigned_app_with_every_step_reported(
    env: Installation,
) -> None:
    result = provision_user(user="user0001@example.com", config_path=env.config_path)

    assert result["user"] == "user0001" and set(result["apps"]) == {"chat", "wiki"}
    chat, wiki = steps(result["apps"]["chat"]), steps(result["apps"]["wiki"])
    assert chat["in scope?"] == ("yes", "active; assigned via group engineering")
    assert wiki["in scope?"] == ("yes", "active; assigned directly")
    existing = env.accounts("chat")["USER0001"]["id"]
    assert chat["matched account"] == ("userName", f"userName = user0001 → account {existing}")
    assert chat["planned action"][0] == "link"
    assert "title: Old → Engineer" in chat["planned action"][1]
    assert chat["result"] == ("succeeded", f"account {existing}")
    assert wiki["matched account"][0] == "none"
    assert wiki["planned action"][0] == "create"
    assert "userName = user0001" in wiki["planned action"][1]
    assert wiki["result"][0] == "succeeded"
    # on the servers: the chat account adopted and updated, one wiki account, no duplicate
    assert [u["userName"] for u in env.scim.users("chat")] == ["USER0001"]
    assert env.accounts("chat")["USER0001"]["title"] == "Engineer"
    assert list(env.accounts("wiki")) == ["user0001"]
    assert env.scim.writes("crm") == 0 and env.scim.writes("wiki") == 1  # one POST
    # the action log and the links, as a sync writes them
    actions = env.store.read_actions(result["run_id"])
    assert sorted(zip(actions["app"], actions["action"], actions["outcome"], strict=True)) == [
        ("chat", "link", "succeeded"),
        ("wiki", "create", "succeeded"),
    ]
    links = env.store.read_links("chat")
    assert links.set_index("user_id").loc[result_user_id(env), "remote_id"] == existing
    # the step report is a Prefect table artifact keyed per user
    artifact = Artifact.get("provision-user0001")
    assert artifact is not None and artifact.type == "table"
    table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert {"app": "chat", "step": "planned action", "result": "link"}.items() <= next(
        row for row in table if row["app"] == "chat" and row["step"] == "planned action"
    ).items()


def result_user_id(env: Installation) -> str:
    return str(env.store.find_user("user0001")["user_id"])


def test_an_app_out_of_scope_is_reported_as_such_and_nothing_is_written(
    env: Installation,
) -> None:
    result = provision_user(user="user0001", app="crm", config_path=env.config_path)
    crm = steps(result["apps"]["crm"])
    assert crm["in scope?"] == ("no", "not assigned this app")
    assert crm["matched account"][0] == "none"
    assert crm["planned action"] == ("none", "out_of_scope")
    assert crm["result"] == ("nothing to do", "")
    assert env.scim.writes() == 1  # the fixture's own account in chat
    assert env.store.read_actions(result["run_id"]).empty


def test_an_inactive_user_with_an_unlinked_account_is_reported_not_touched(
    env: Installation,
) -> None:
    env.store.set_active("user0001", False)
    result = provision_user(user="user0001", app="chat", config_path=env.config_path)
    chat = steps(result["apps"]["chat"])
    assert chat["in scope?"][0] == "no"
    assert chat["in scope?"][1].startswith("inactive in the directory")
    assert chat["planned action"][0] == "report"
    assert chat["planned action"][1].startswith("unmanaged")
    assert chat["result"][0] == "reported"
    assert env.scim.writes() == 1


def test_an_app_the_user_lost_is_deprovisioned_as_a_sync_would(env: Installation) -> None:
    provision_user(user="user0001", config_path=env.config_path)
    env.store.unassign_app("user0001", "wiki")
    result = provision_user(user="user0001", config_path=env.config_path)
    assert set(result["apps"]) == {"chat", "wiki"}  # wiki: still linked
    wiki = steps(result["apps"]["wiki"])
    assert wiki["in scope?"] == ("no", "not assigned this app")
    assert wiki["matched account"][0] == "link"
    assert wiki["planned action"] == ("deactivate", "deprovision; active: True → False")
    assert wiki["result"][0] == "succeeded"
    assert env.accounts("wiki")["user0001"]["active"] is False
    assert env.accounts("chat")["USER0001"]["active"] is True


def test_a_second_run_and_a_sync_afterwards_make_zero_writes(env: Installation) -> None:
    """The manager reference too: provisioning user0000, then user0001, leaves nothing
    for a second provisioning or for a sync of the same apps to write."""
    provision_user(user="user0000", config_path=env.config_path)
    first = provision_user(user="user0001", config_path=env.config_path)
    boss = env.accounts("wiki")["user0000"]["id"]
    assert env.accounts("wiki")["user0001"][ENTERPRISE]["manager"]["value"] == boss
    assert first["apps"]["wiki"]["notes"] == []
    writes = env.scim.writes()

    again = provision_user(user="user0001", config_path=env.config_path)
    assert env.scim.writes() == writes
    for app in ("chat", "wiki"):
        assert steps(again["apps"][app])["matched account"][0] == "link"
        assert again["apps"][app]["situation"] == "in_sync"
        assert again["apps"][app]["outcome"] == "nothing to do"

    after = sync(config_path=env.config_path, app="wiki")
    assert after["apps"]["wiki"]["summary"]["unchanged"] == 2
    assert env.scim.writes() == writes


def test_dry_run_plans_the_same_steps_and_writes_nothing(env: Installation) -> None:
    dry = provision_user(user="user0001", dry_run=True, config_path=env.config_path)
    assert env.scim.writes() == 1
    assert env.store.read_links("chat").empty and env.store.read_links("wiki").empty
    real = provision_user(user="user0001", config_path=env.config_path)
    for app in ("chat", "wiki"):
        assert dry["apps"][app]["outcome"] == "planned (dry run)"
        for key in ("in_scope", "matched_by", "situation", "action", "changes"):
            assert dry["apps"][app][key] == real["apps"][app][key]


def test_the_command_prints_a_table_per_app_and_json(env: Installation) -> None:
    cli = typer.Typer()
    cli.command()(provision_command)

    @cli.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = {"config_path": env.config_path}

    table = CliRunner().invoke(cli, ["provision-command", "user0001", "--dry-run"])
    assert table.exit_code == 0, table.output
    assert "matched account" in table.stdout and "chat" in table.stdout
    assert "dry run" in table.stdout
    as_json = CliRunner().invoke(cli, ["provision-command", "user0001", "--app", "wiki", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["apps"]["wiki"]["outcome"] == "succeeded"
