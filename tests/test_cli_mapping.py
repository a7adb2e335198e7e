"""``roster mapping preview USER APP`` through CliRunner: values from the directory only."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from cli.directory import directory_app
from cli.mapping import mapping_app

root = typer.Typer()


@root.callback()
def _root(ctx: typer.Context, config: str | None = typer.Option(None, "--config")) -> None:
    ctx.obj = {"config_path": config}


root.add_typer(directory_app, name="directory")
root.add_typer(mapping_app, name="mapping")

CONFIG = """
database_url: 'sqlite:///DB'
apps:
  - name: chat
    connector: scim
    base_url: https://chat.example.com/scim/v2
    token_env: CHAT_TOKEN
    mapping:
      userName:
        expression: 'Unique(Lower(Join(".", NormalizeDiacritics([given_name]), [family_name])))'
        apply: create_only
      title: {field: title, default: Staff}
      nickName: {expression: 'Left([department], 3)', default: n/a}
      preferredLanguage: {constant: en}
"""
PEOPLE = (
    "user_name,email,given_name,family_name,display_name,department,title,apps\n"
    "zoe,zoe@example.com,Zoë,Núñez,Zoë Núñez,,,chat\n"
)


def test_preview_shows_each_target_its_source_value_and_notes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    config = tmp_path / "roster.yaml"
    config.write_text(CONFIG.replace("DB", str(tmp_path / "roster.db")), encoding="utf-8")
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    runner = CliRunner()

    def roster(*args: str):
        result = runner.invoke(root, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    roster("directory", "import", str(tmp_path / "people.csv"))
    rows = {
        r["target"]: r for r in json.loads(roster("mapping", "preview", "zoe", "chat", "--json"))
    }
    assert rows["userName"]["kind"] == "expression"
    assert rows["userName"]["value"] == "zoe.núñez"
    assert rows["userName"]["notes"] == [
        "unique: not checked against the app's accounts",
        "create-only: written on create, never updated",
    ]
    assert (rows["title"]["value"], rows["title"]["notes"]) == ("Staff", ["default used"])
    assert (rows["nickName"]["value"], rows["nickName"]["notes"]) == ("n/a", ["default used"])
    assert (rows["preferredLanguage"]["kind"], rows["preferredLanguage"]["value"]) == (
        "constant",
        "en",
    )
    assert rows["externalId"]["kind"] == "field" and rows["externalId"]["source"] == "user_id"

    table = roster("mapping", "preview", "zoe", "chat")
    assert "userName" in table and "zoe.núñez" in table and "create-only" in table


def test_preview_of_an_unknown_app_is_one_red_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    config = tmp_path / "roster.yaml"
    config.write_text(CONFIG.replace("DB", str(tmp_path / "roster.db")), encoding="utf-8")
    result = CliRunner().invoke(root, ["--config", str(config), "mapping", "preview", "x", "mail"])
    assert result.exit_code == 2
    assert "no app named 'mail'" in result.output
