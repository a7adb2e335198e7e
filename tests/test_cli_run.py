"""``roster sync``/``offboard``/``report`` as a user runs them: output, JSON, exit codes."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from tasks import session
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
    drift = document["apps"]["chat"]["drift"]  # rows, not the text of a Python object
    assert sorted(row["user"] for row in drift) == [f"user{i:04}" for i in range(6)]
    assert TOKEN not in result.stdout + result.stderr
    run = json.loads(roster(env, "report", "--json").stdout)["run"]  # the run's record
    assert run["summary"]["chat"]["drift"] == drift


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


NESTED = b"[" * 50_000 + b"]" * 50_000
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


class CurrentStderr(io.TextIOBase):
    """Whatever sys.stderr is when written to."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture
def prefect_logs_in_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's console log handler keeps the stderr it was made with (in this session:
    an earlier CliRunner's, closed since); as in a real ``roster`` process, point it at
    the stderr of the command being run, so the test sees what a terminal would."""
    from prefect.logging.handlers import PrefectConsoleHandler

    import flows.sync  # noqa: F401  (Prefect sets its logging up on import)

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            stream = CurrentStderr()
            monkeypatch.setattr(handler, "stream", stream)
            monkeypatch.setattr(handler.console, "file", stream)


@pytest.mark.usefixtures("prefect_logs_in_output")
@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        (httpx.Response(200, content=NESTED), "wiki: GET /Users: 200 body is not JSON"),
        (
            httpx.Response(400, json={"schemas": [SCIM_ERROR], "detail": "[/b] is [bold]bad"}),
            "wiki: GET /Users: 400 [/b] is [bold]bad",
        ),
    ],
)
def test_an_app_answering_nonsense_fails_alone_without_a_traceback(
    env: Installation, answer: httpx.Response, shown: str
) -> None:
    """JSON nested past the recursion limit used to escape as RecursionError, and an
    error text with "[/b]" in it crashed the summary (rich markup)."""
    env.import_people(people(3))
    session.TRANSPORTS["wiki"] = httpx.MockTransport(lambda request: answer)
    result = roster(env, "sync")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "Task run failed with exception" in result.stderr  # Prefect's log, one line
    assert shown in result.stdout
    assert len(env.accounts("chat")) == 3
