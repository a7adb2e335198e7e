"""A failed account is retried by the next run, then backs off across runs; the report and
``roster report --failed`` show the attempts, the last error and the next attempt time."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app as roster_cli
from flows.sync import sync
from tasks import session
from tasks.health import account_delay, mark_waiting, update_retries, waiting_accounts
from tests.health_support import T0, Clock, RejectCreates
from tests.sync_env import Installation, people

MIN = timedelta(minutes=1)


def test_account_delay_is_next_run_then_doubling_from_five_minutes_capped_at_a_day() -> None:
    delays = [account_delay(n) for n in (1, 2, 3, 4, 5, 10, 11, 60)]
    assert delays == [
        timedelta(0),
        5 * MIN,
        10 * MIN,
        20 * MIN,
        40 * MIN,
        timedelta(hours=21, minutes=20),  # 5 min x 2^8
        timedelta(hours=24),
        timedelta(hours=24),
    ]


def test_waiting_accounts_are_those_whose_next_attempt_is_still_ahead() -> None:
    retries = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "next_attempt_at": [T0 - MIN, T0, T0 + MIN],
        }
    )
    assert waiting_accounts(retries, T0) == {"c": T0 + MIN}
    assert waiting_accounts(retries.iloc[0:0], T0) == {}


def outcomes(*rows: tuple[str, str | None, str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"user_id": u, "user_name": f"name-{u}", "action": "create", "outcome": o, "error": e}
            for u, o, e in rows
        ]
    )


def test_update_retries_counts_failures_and_forgets_accounts_that_stopped_failing() -> None:
    stored = pd.DataFrame({"user_id": ["a", "b", "w", "h"], "failures": [2, 1, 3, 1]})
    update = update_retries(
        outcomes(
            ("a", "failed", "400 bad"),  # failed again: third time
            ("b", "succeeded", None),  # recovered: forgotten
            ("n", "failed", "503"),  # first failure
            ("w", "waiting", None),  # not tried this run: kept as is
            ("h", "held", None),  # not tried this run: kept as is
            ("x", None, None),  # nothing to do and nothing stored
        ),
        stored,
        T0,
    )
    assert update.failed == [
        {
            "user_id": "a",
            "user_name": "name-a",
            "action": "create",
            "failures": 3,
            "last_error": "400 bad",
            "last_failed_at": T0,
            "next_attempt_at": T0 + 10 * MIN,
        },
        {
            "user_id": "n",
            "user_name": "name-n",
            "action": "create",
            "failures": 1,
            "last_error": "503",
            "last_failed_at": T0,
            "next_attempt_at": T0,
        },
    ]
    assert update.cleared == ["b"]
    assert update.next_attempts() == {"a": T0 + 10 * MIN, "n": T0}
    stopped = update_retries(outcomes(("b", None, None)), stored, T0, complete=False)
    assert stopped.cleared == []  # an app that stopped part way never reached b


def test_mark_waiting_sets_outcome_and_says_when() -> None:
    plan = outcomes(("a", None, None), ("b", "succeeded", None))
    marked = mark_waiting(plan, {"a": T0 + 5 * MIN, "b": T0})
    assert marked["outcome"].tolist() == ["waiting", "succeeded"]
    assert marked.loc[0, "error"] == "failed before; next attempt at 2026-12-01 09:05 UTC"


# -- end to end, against scim2-server ----------------------------------------------------


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    return make_installation(["chat"], chat={"max_retries": 0})


def row_of(result: dict, user: str) -> dict:
    """The user's report rows (one per attribute of a create) agree on status and times."""
    rows = [r for r in result["apps"]["chat"]["drift"] if r["user"] == user]
    assert rows and len({(r["status"], r["next_attempt"], r["error"]) for r in rows}) == 1
    return rows[0]


def test_a_failing_account_is_retried_next_run_then_waits_out_its_backoff(
    env: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    fault = RejectCreates(env.scim.app, {"user0002"})
    session.TRANSPORTS["chat"] = httpx.WSGITransport(app=fault)  # type: ignore[arg-type]
    env.import_people(people(4, apps="chat"))

    first = sync(config_path=env.config_path)
    failed = row_of(first, "user0002")
    assert (failed["status"], failed["next_attempt"]) == ("failed", T0.isoformat())
    assert "400" in failed["error"] and failed["attempts"] == 1

    clock.advance(minutes=1)
    second = sync(config_path=env.config_path)  # retried at once: the first retry is free
    assert fault.posts["user0002"] == 2
    assert row_of(second, "user0002")["next_attempt"] == (T0 + 6 * MIN).isoformat()

    report = CliRunner().invoke(
        roster_cli, ["--config", env.config_path, "report", "--failed", "--json"]
    )
    (still,) = json.loads(report.stdout)["actions"]
    assert (still["user_name"], still["failures"]) == ("user0002", 2)
    assert pd.Timestamp(still["next_attempt_at"]) == T0 + 6 * MIN
    assert "400" in still["error"]

    clock.advance(minutes=4)  # T0 + 5 min: still backing off
    third = sync(config_path=env.config_path)
    assert fault.posts["user0002"] == 2  # not even tried
    waiting = row_of(third, "user0002")
    assert (waiting["status"], waiting["next_attempt"]) == ("waiting", (T0 + 6 * MIN).isoformat())
    assert third["apps"]["chat"]["summary"]["waiting"] == 1
    assert third["apps"]["chat"]["summary"]["failed"] == 0
    assert any("wait for their next attempt" in n for n in third["apps"]["chat"]["notes"])

    fault.names.clear()  # whatever was wrong is fixed
    clock.advance(minutes=2)  # T0 + 7 min: due
    fourth = sync(config_path=env.config_path)
    assert fault.posts["user0002"] == 3
    assert row_of(fourth, "user0002")["status"] == "succeeded"
    assert "user0002" in env.accounts("chat")
    assert env.store.read_account_retries("chat").empty


def test_an_account_that_no_longer_needs_a_write_is_forgotten(
    env: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    Clock(monkeypatch)
    fault = RejectCreates(env.scim.app, {"user0001"})
    session.TRANSPORTS["chat"] = httpx.WSGITransport(app=fault)  # type: ignore[arg-type]
    team = people(3, apps="chat")
    env.import_people(team)
    sync(config_path=env.config_path)
    assert env.store.read_account_retries("chat")["user_name"].tolist() == ["user0001"]

    team[1]["apps"] = ""  # unassigned: nothing left to retry
    env.import_people(team)
    sync(config_path=env.config_path)
    assert env.store.read_account_retries("chat").empty


def test_the_store_upserts_and_clears_retry_state(database_url: str) -> None:
    from directory.store import Store

    def row(user_id: str, failures: int) -> dict:
        return {
            "user_id": user_id,
            "user_name": f"name-{user_id}",
            "action": "create",
            "failures": failures,
            "last_error": "400",
            "last_failed_at": T0,
            "next_attempt_at": T0 + failures * MIN,
        }

    with Store(database_url) as store:
        store.save_account_retries("chat", [row("a", 1), row("b", 2)])
        store.save_account_retries("chat", [row("a", 3)])
        store.save_account_retries("wiki", [row("a", 1)])
        chat = store.read_account_retries("chat")
        assert chat[["user_id", "failures"]].values.tolist() == [["b", 2], ["a", 3]]
        assert chat["next_attempt_at"].tolist() == [T0 + 2 * MIN, T0 + 3 * MIN]
        store.clear_account_retries("chat", ["a"])
        assert store.read_account_retries()[["app", "user_id"]].values.tolist() == [
            ["wiki", "a"],
            ["chat", "b"],
        ]
