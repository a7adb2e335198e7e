"""``roster directory ...`` through CliRunner, on a throwaway root app that sets
``ctx.obj = {"config_path": ...}`` the way cli/main.py does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.directory import directory_app

SAMPLE = Path(__file__).resolve().parents[1] / "directory" / "sample" / "people.csv"

root = typer.Typer()


@root.callback()
def _root(ctx: typer.Context, config: str | None = typer.Option(None, "--config")) -> None:
    ctx.obj = {"config_path": config}


root.add_typer(directory_app, name="directory")


@pytest.fixture
def roster(database_url: str, tmp_path: Path, monkeypatch):
    """Run ``roster --config <tmp config> directory ...``; returns the click Result."""
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    config = tmp_path / "roster.yaml"
    config.write_text(
        f"database_url: '{database_url}'\n"
        "apps:\n"
        "  - {name: chat, connector: scim, base_url: 'https://chat.example.com/scim/v2',"
        " token_env: CHAT_TOKEN}\n"
    )
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(root, ["--config", str(config), "directory", *args])

    return invoke


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def _users(roster, *options: str) -> dict[str, dict]:
    return {
        user["user_name"]: user for user in json.loads(_ok(roster("users", "--json", *options)))
    }


def test_import_prints_a_summary(roster) -> None:
    dry = _ok(roster("import", str(SAMPLE), "--dry-run"))
    assert "Dry run of people.csv: nothing was written." in dry
    assert _users(roster) == {}
    out = _ok(roster("import", str(SAMPLE)))
    assert "Imported people.csv." in out
    assert "│ created     │ 199" in out
    assert "│ unchanged   │ 199" in _ok(roster("import", str(SAMPLE)))


def test_full_import_refused_then_forced(roster, tmp_path: Path) -> None:
    _ok(roster("import", str(SAMPLE)))
    few = tmp_path / "few.csv"
    few.write_text("user_name,email\nnina.ito,nina.ito@example.com\n")
    held = roster("import", str(few), "--full")
    assert held.exit_code == 2
    assert "refusing to deactivate 192 of 193 active users" in held.stderr
    forced = _ok(roster("import", str(few), "--full", "--force"))
    assert "Deactivated: " in forced
    assert list(_users(roster, "--active")) == ["nina.ito"]


def test_bad_csv_is_one_clear_error(roster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_name,email\nada,not-an-email\n")
    result = roster("import", str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert (
        result.stderr == f"error: {bad}: line 2: invalid email 'not-an-email'; nothing imported\n"
    )
    assert "Traceback" not in result.output


def test_several_bad_rows_are_listed_under_the_error(roster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_name,email,active\nada,ada@example.com,maybe\n,b@example.com,\n")
    result = roster("import", str(bad))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {bad}: 2 problems, nothing imported",
        "  line 2: bad active value 'maybe' (use true/false, yes/no or 1/0)",
        "  line 3: missing user_name",
    ]


def test_users_filters_and_json(roster) -> None:
    _ok(roster("import", str(SAMPLE)))
    everyone = _users(roster)
    assert len(everyone) == 199
    assert everyone["nina.ito"]["apps"] == ["chat", "crm", "wiki"]
    assert everyone["nina.ito"]["groups"] == ["leadership", "managers"]
    assert len(_users(roster, "--inactive")) == 6
    crm = _users(roster, "--app", "crm", "--active")
    assert {user["department"] for user in crm.values()} == {
        "Executive",
        "Product",
        "Sales",
        "Support",
    }
    table = _ok(roster("users", "--app", "wiki"))
    assert "nina.ito" in table and "90 users" in table


def test_show_assign_and_unassign(roster) -> None:
    _ok(roster("import", str(SAMPLE)))
    assert "Assigned crm to erik.mensah." in _ok(roster("assign", "ERIK.MENSAH", "crm"))
    assert "erik.mensah already had crm." in _ok(roster("assign", "erik.mensah", "crm"))
    shown = json.loads(_ok(roster("show", "erik.mensah@example.com", "--json")))
    assert shown["direct_apps"] == ["chat", "crm", "wiki"]
    assert shown["manager"] == "nina.ito"
    assert shown["linked_apps"] == []
    text = _ok(roster("show", "erik.mensah"))
    assert "Erik Mensah" in text and "engineering, leadership, managers" in text
    assert "Unassigned crm from erik.mensah." in _ok(roster("unassign", "erik.mensah", "crm"))
    assert "had no direct crm assignment" in _ok(roster("unassign", "erik.mensah", "crm"))


def test_assigning_an_unconfigured_app_warns(roster) -> None:
    _ok(roster("import", str(SAMPLE)))
    result = roster("assign", "nina.ito", "hr")
    assert result.exit_code == 0
    assert "warning: no app named 'hr' in the configuration (apps: chat)" in result.stderr


def test_deactivate_and_reactivate(roster) -> None:
    _ok(roster("import", str(SAMPLE)))
    assert "Deactivated nina.ito." in _ok(roster("deactivate", "Nina.Ito"))
    assert _users(roster)["nina.ito"]["active"] is False
    assert "Reactivated nina.ito." in _ok(roster("reactivate", "nina.ito"))
    assert _users(roster)["nina.ito"]["active"] is True


def test_group_commands(roster) -> None:
    _ok(roster("import", str(SAMPLE)))
    assert "Assigned chat to group Sales." in _ok(roster("group-assign", "Sales", "chat"))
    groups = {g["name"]: g for g in json.loads(_ok(roster("groups", "--json")))}
    assert groups["sales"] == {
        "name": "sales",
        "members": 41,
        "effective_members": 41,
        "member_groups": [],
        "apps": ["chat"],
    }
    assert "on-call" in _ok(roster("groups"))
    assert "Unassigned chat from group sales." in _ok(roster("group-unassign", "sales", "chat"))
    assert "sales had no chat." in _ok(roster("group-unassign", "sales", "chat"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nobody"), "error: no user with user_name, email or id 'nobody'\n"),
        (("group-assign", "nope", "chat"), "error: no group named 'nope'\n"),
        (("assign", "nina.ito", "bad app"), "error: invalid app name 'bad app'"),
    ],
)
def test_errors_exit_2_without_traceback(roster, args, message) -> None:
    _ok(roster("import", str(SAMPLE)))
    result = roster(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "roster.yaml"
    config.write_text("apps: 3\n")
    result = CliRunner().invoke(root, ["--config", str(config), "directory", "groups"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {config}: invalid configuration")
    assert "Traceback" not in result.output
