"""``roster explain USER APP`` against the in-process scim2-server: every answer, and not
one write to the app or the directory (no action-log row, no run) in any of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from cli.explain import explain_command
from directory.models import ActionLog, Link, Run
from directory.store import Store
from tasks import session
from tests.scim_apps import TOKEN, InProcessScim
from tests.sync_env import Installation, person, route_to

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
APPS = ["chat", "wiki"]


def _post(scim: InProcessScim, app: str, body: dict[str, Any]) -> str:
    with scim.client(app) as client:
        response = client.post("/Users", json={"schemas": [CORE], **body})
        response.raise_for_status()
        return str(response.json()["id"])


@pytest.fixture
def env(
    tmp_path: Path, scim: InProcessScim, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Installation]:
    """No Prefect: explain never needs it.

    - user0000: wiki directly, no account anywhere;
    - user0001: chat through the group engineering, no account;
    - user0002: wiki, linked; the account's title was changed in the app;
    - user0003: wiki, linked, deactivated in the directory;
    - user0004: chat, an unlinked account with another userName but their work email.
    """
    monkeypatch.setenv("ROSTER_TEST_TOKEN", TOKEN)
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    store = Store(f"sqlite:///{tmp_path / 'roster.db'}")
    env = Installation(tmp_path, scim, APPS, store, {"wiki": {"deprovision": "deactivate"}})
    env.write_config()
    route_to(scim, APPS)
    env.import_people(
        [
            person(0, apps="wiki"),
            person(1, apps=""),
            person(2, apps="wiki"),
            person(3, apps="wiki", active=False),
            person(4, apps="chat"),
        ]
    )
    store.add_to_group("user0001", "engineering")
    store.assign_group_app("engineering", "chat")
    for i, title in ((2, "Old title"), (3, "Engineer")):
        user_id = store.find_user(f"user{i:04d}")["user_id"]
        remote = _post(scim, "wiki", _account(i, user_id, title))
        store.upsert_links("wiki", [{"user_id": user_id, "remote_id": remote, "status": "active"}])
    legacy = {"userName": "legacy4", "emails": [{"type": "work", "value": "user0004@example.com"}]}
    _post(scim, "chat", legacy)
    yield env
    session.TRANSPORTS.clear()
    store.dispose()


def _account(i: int, user_id: str, title: str) -> dict[str, Any]:
    """The account a sync would have written for person(i), but for its title."""
    p = person(i)
    return {
        "schemas": [CORE, ENTERPRISE],
        "userName": p["user_name"],
        "externalId": user_id,
        ENTERPRISE: {"department": p["department"], "employeeNumber": p["employee_number"]},
        "name": {"givenName": p["given_name"], "familyName": p["family_name"]},
        "displayName": p["display_name"],
        "emails": [{"type": "work", "value": p["email"]}],
        "title": title,
        "active": True,
    }


def _counts(env: Installation) -> tuple[int, ...]:
    with env.store.engine.connect() as conn:
        tables = (ActionLog, Run, Link)
        rows = tuple(conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0 for t in tables)
    return (env.scim.writes(), *rows)


def roster(env: Installation, *args: str) -> Any:
    """Run ``explain`` and check nothing was written: not to the server, not to the store."""
    cli = typer.Typer()
    cli.command()(explain_command)

    @cli.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = {"config_path": env.config_path}

    before = _counts(env)
    result = CliRunner().invoke(cli, ["explain-command", *args])
    assert _counts(env) == before, "explain wrote something"
    return result


def explain(env: Installation, user: str, app: str) -> dict[str, Any]:
    result = roster(env, user, app, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def mapping(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["target"]: row for row in report["mapping"]}


def test_an_assigned_user_without_an_account_would_be_created(env: Installation) -> None:
    report = explain(env, "user0000", "wiki")
    assert report["scope"] == {
        "in_scope": True,
        "reason": "active; assigned directly",
        "clause": None,
    }
    assert report["assignment"] == {
        "direct": True,
        "groups": [],
        "chains": [],
        "path": "directly",
    }
    assert report["match"]["by"] is None and report["match"]["remote_id"] is None
    assert (report["plan"]["situation"], report["plan"]["action"]) == ("missing", "create")
    assert report["plan"]["changes"]["userName"] == [None, "user0000"]
    rows = mapping(report)
    assert rows["userName"] | {"notes": []} == {
        "target": "userName",
        "kind": "field",
        "source": "user_name",
        "desired": "user0000",
        "current": None,
        "differs": None,
        "notes": [],
    }
    assert rows["title"]["desired"] == "Engineer"
    assert "create: enabled (actions: create, deactivate, update)" in report["policy"]


def test_a_user_assigned_through_a_group_shows_the_group(env: Installation) -> None:
    report = explain(env, "user0001@example.com", "chat")
    assert report["assignment"] == {
        "direct": False,
        "groups": ["engineering"],
        "chains": [["engineering"]],
        "path": "via group engineering",
    }
    assert report["scope"]["reason"] == "active; assigned via group engineering"
    assert report["plan"]["action"] == "create"
    table = roster(env, "user0001", "chat")
    assert table.exit_code == 0, table.output
    assert "via group engineering" in table.stdout and "create" in table.stdout


def test_a_linked_user_with_drift_in_the_app_would_be_updated(env: Installation) -> None:
    report = explain(env, "user0002", "wiki")
    remote = env.accounts("wiki")["user0002"]["id"]
    assert report["match"] == {
        "by": "link",
        "detail": f"linked account {remote}",
        "remote_id": remote,
        "disputed": False,
    }
    assert (report["plan"]["situation"], report["plan"]["action"]) == ("drifted", "update")
    assert report["plan"]["changes"] == {"title": ["Old title", "Engineer"]}
    rows = mapping(report)
    assert (rows["title"]["current"], rows["title"]["desired"], rows["title"]["differs"]) == (
        "Old title",
        "Engineer",
        True,
    )
    assert rows["userName"]["differs"] is False
    assert "update: enabled (actions: create, deactivate, update)" in report["policy"]
    table = roster(env, "user0002", "wiki")
    assert "Old title → Engineer" in table.stdout


def test_a_deactivated_user_would_be_deactivated_and_the_policy_says_why(
    env: Installation,
) -> None:
    report = explain(env, "user0003", "wiki")
    assert report["scope"] == {
        "in_scope": False,
        "reason": "inactive in the directory (assigned directly)",
        "clause": None,
    }
    assert (report["plan"]["situation"], report["plan"]["action"]) == ("deprovision", "deactivate")
    assert report["policy"][0] == "deprovision: deactivate (app setting)"
    safety = next(line for line in report["policy"] if line.startswith("safety:"))
    assert "11 or more of the app's 2 linked accounts" in safety
    assert "depends on the whole run" in safety
    assert mapping(report)["active"]["differs"] is True


def test_a_user_matched_by_email_to_an_unlinked_account_would_be_linked(
    env: Installation,
) -> None:
    report = explain(env, "user0004", "chat")
    remote = env.accounts("chat")["legacy4"]["id"]
    email = 'emails[type eq "work"].value'
    assert report["match"]["by"] == email
    assert report["match"]["detail"] == f"{email} = user0004@example.com → account {remote}"
    assert (report["plan"]["situation"], report["plan"]["action"]) == ("matched", "link")
    assert report["plan"]["changes"]["userName"] == ["legacy4", "user0004"]
    assert any(line.startswith("match_on: userName, emails") for line in report["policy"])
    table = roster(env, "user0004", "chat")
    assert f"by {email}" in table.stdout


@pytest.mark.parametrize(
    ("user", "app", "message"),
    [("nobody", "wiki", "no user with user_name"), ("user0000", "mail", "no app named 'mail'")],
)
def test_an_unknown_user_or_app_is_one_red_line_and_exit_2(
    env: Installation, user: str, app: str, message: str
) -> None:
    result = roster(env, user, app)
    assert result.exit_code == 2
    assert message in result.output
