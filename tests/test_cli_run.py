"""``roster sync``/``offboard``/``report`` as a user runs them: output, JSON, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.scim_apps import TOKEN
from tests.sync_env import Installation, people

APPS = ["chat", "wiki"]


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    return make_installation(APPS)


def roster(env: Installation, *args: str) -> object:
    return CliRunner().invoke(app, ["--config", env.config_path, *args])


def test_sync_json_is_exactly_one_document_on_stdout(env: Installation) -> None:
    env.import_people(people(6))
    result = roster(env, "sync", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["apps"]["chat"]["summary"]["created"] == 6
    assert TOKEN not in result.stdout + result.stderr


def test_sync_prints_a_summary_table_and_dry_run_says_so(env: Installation) -> None:
    env.import_people(people(4))
    result = roster(env, "sync", "--dry-run", "--app", "wiki")
    assert result.exit_code == 0, result.stderr
    assert "dry run, nothing was written" in result.stdout
    assert "created" in result.stdout and "wiki" in result.stdout
    assert env.scim.writes() == 0


def test_offboard_then_report_shows_the_actions(env: Installation) -> None:
    env.import_people(people(4))
    roster(env, "sync")
    result = roster(env, "offboard", "user0002", "--json")
    assert result.exit_code == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert {a["active_in_app"] for a in outcome["apps"].values()} == {False}
    report = roster(env, "report", "--json")
    actions = json.loads(report.stdout)["actions"]
    assert {(a["app"], a["action"], a["outcome"]) for a in actions} == {
        ("chat", "deactivate", "succeeded"),
        ("wiki", "deactivate", "succeeded"),
    }


def test_report_failed_lists_accounts_still_failing(env: Installation) -> None:
    env.import_people(people(3))
    with env.scim.client("chat") as client:  # a second account claims user0001's email
        client.post(
            "/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "USER0001",
            },
        )
    env.app_settings = {"chat": {"match_on": ['emails[type eq "work"].value']}}
    env.write_config()
    result = roster(env, "sync", "--app", "chat")
    # the account exists under that userName but matching only looks at email: the create
    # gets a 409, and adoption by email finds nothing, so the account fails, loudly
    assert result.exit_code == 0
    failed = json.loads(roster(env, "report", "--failed", "--json").stdout)["actions"]
    assert [(a["user_name"], a["action"]) for a in failed] == [("user0001", "create")]
    assert "409" in failed[0]["error"]


def test_bad_config_is_one_clear_line_and_exit_2(env: Installation, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apps:\n  - name: x\n    connector: ftp\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(bad), "sync"])
    assert result.exit_code == 2
    assert f"{bad}: invalid configuration" in result.stderr
    assert "apps[0].connector" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
