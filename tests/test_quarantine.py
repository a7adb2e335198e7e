"""An app failing run after run for one app-level reason is quarantined, skipped with its
reason and next retry time, probed with backoff in hours, lifted by a command, and reset
by a run that succeeds. Other apps sync as usual throughout."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from cli.run import quarantine_app
from connectors.errors import AuthError, BadRequestError, TransientError
from directory.config import ConfigError
from directory.health import AppHealth
from flows.sync import sync
from tasks.apply import AppStopped
from tasks.health import (
    FailureKind,
    Gate,
    HealthPolicy,
    after_failure,
    after_success,
    classify_failure,
    gate,
    quarantine_delay,
)
from tests.health_support import T0, Clock
from tests.sync_env import Installation, people, person

H = timedelta(hours=1)


def stopped_by(cause: Exception) -> AppStopped:
    try:
        raise AppStopped("app wiki: refused") from cause
    except AppStopped as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (AuthError("GET /Users: 401", status=401), FailureKind.AUTH),
        (stopped_by(AuthError("POST /Users: 403", status=403)), FailureKind.AUTH),
        (TransientError("GET /Users: 503", status=503), FailureKind.SERVER_ERROR),
        (TransientError("GET /Users: ConnectError", status=None), FailureKind.UNREACHABLE),
        (BadRequestError("GET /Users: 400", status=400), None),
        (ConfigError("CHAT_TOKEN is not set"), None),
        (None, None),
    ],
)
def test_app_level_failures_are_classified(exc: Exception | None, kind: FailureKind) -> None:
    assert classify_failure(exc) == kind


def test_three_failures_for_one_reason_quarantine_then_retries_back_off_in_hours() -> None:
    health = AppHealth("wiki")
    for minute in range(3):
        health = after_failure(health, FailureKind.AUTH, "401", T0 + timedelta(minutes=minute))
    assert (health.failures, health.reason, health.failing_since) == (3, "auth", T0)
    assert health.quarantined_since == T0 + timedelta(minutes=2)
    assert health.next_retry_at == T0 + timedelta(minutes=2) + H
    probe = health.next_retry_at
    assert gate(health, probe - timedelta(seconds=1)) is Gate.SKIP
    assert gate(health, probe) is Gate.PROBE
    # a failed probe keeps the quarantine, whatever the reason, and doubles the wait
    health = after_failure(health, FailureKind.UNREACHABLE, "refused", probe)
    assert (health.failures, health.reason, health.next_retry_at) == (
        4,
        "unreachable",
        probe + 2 * H,
    )
    assert health.quarantined_since == T0 + timedelta(minutes=2)
    assert [quarantine_delay(n) for n in (3, 4, 5, 6, 7, 8, 30)] == [
        H,
        2 * H,
        4 * H,
        8 * H,
        16 * H,
        24 * H,
        24 * H,
    ]
    assert after_success(health) == AppHealth("wiki")


def test_a_new_reason_restarts_the_streak_and_account_level_failures_do_not_count() -> None:
    health = after_failure(AppHealth("wiki"), FailureKind.AUTH, "401", T0)
    health = after_failure(health, FailureKind.AUTH, "401", T0 + H)
    assert after_failure(health, None, "400 on listing", T0 + 2 * H) == health
    health = after_failure(health, FailureKind.SERVER_ERROR, "503", T0 + 3 * H)
    assert (health.failures, health.reason, health.failing_since) == (1, "server_error", T0 + 3 * H)
    assert not health.quarantined
    assert gate(health, T0) is Gate.RUN


def test_the_threshold_is_configurable() -> None:
    policy = HealthPolicy(quarantine_after=1)
    health = after_failure(AppHealth("wiki"), FailureKind.AUTH, "401", T0, policy)
    assert health.quarantined and health.next_retry_at == T0 + H


# -- end to end, against scim2-server ----------------------------------------------------


@pytest.fixture
def env(
    make_installation: Callable[..., Installation], monkeypatch: pytest.MonkeyPatch
) -> Installation:
    monkeypatch.setenv("WRONG_TOKEN", "not-the-token")
    env = make_installation(["chat", "wiki"], wiki={"token_env": "WRONG_TOKEN"})
    env.import_people(people(3))
    return env


def run(env: Installation) -> dict:
    return sync(config_path=env.config_path)["apps"]


def quarantine(env: Installation, *args: str) -> object:
    return CliRunner().invoke(quarantine_app, list(args), obj={"config_path": env.config_path})


def wiki_requests(env: Installation) -> int:
    return sum(n for (_, tenant), n in env.scim.requests.items() if tenant == "wiki")


def test_wrong_token_quarantines_wiki_while_chat_keeps_syncing_until_lifted(
    env: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    for expected in (1, 2):
        apps = run(env)
        assert apps["wiki"]["status"] == "failed" and "quarantine" not in apps["wiki"]
        assert env.store.read_app_health("wiki").failures == expected
        clock.advance(minutes=15)
    entered = run(env)["wiki"]  # the third failed run in a row
    assert entered["quarantine"]["reason"] == "auth"
    assert entered["quarantine"]["next_retry_at"] == (clock.now + H).isoformat()
    assert "not-the-token" not in json.dumps(entered)

    env.import_people([*people(3), person(7)])  # a newcomer for both apps
    clock.advance(minutes=15)
    before = wiki_requests(env)
    apps = run(env)
    assert apps["wiki"]["status"] == "quarantined"
    assert (
        apps["wiki"]["quarantine"]["next_retry_at"]
        == (clock.now + 45 * timedelta(minutes=1)).isoformat()
    )
    assert wiki_requests(env) == before  # skipped: not one request
    assert apps["chat"]["summary"]["created"] == 1 and "user0007" in env.accounts("chat")

    clock.advance(minutes=46)  # past the retry time: one run probes wiki, and fails
    probed = run(env)["wiki"]
    assert wiki_requests(env) > before
    assert probed["quarantine"]["next_retry_at"] == (clock.now + 2 * H).isoformat()

    listed = json.loads(quarantine(env, "list", "--json").stdout)
    assert [(h["app"], h["quarantined"], h["failures"]) for h in listed] == [("wiki", True, 4)]

    lifted = quarantine(env, "lift", "wiki")
    assert lifted.exit_code == 0 and "lifted the quarantine of wiki" in lifted.stdout
    assert env.store.read_app_health("wiki") == AppHealth("wiki")
    monkeypatch.setenv("WRONG_TOKEN", env.scim.token)  # someone fixed the token
    apps = run(env)
    assert apps["wiki"]["status"] == "ok" and "user0007" in env.accounts("wiki")
    assert quarantine(env, "list").stdout.strip() == "no app is failing or quarantined"


def test_a_successful_run_resets_the_count(
    env: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    Clock(monkeypatch)
    run(env)
    run(env)
    monkeypatch.setenv("WRONG_TOKEN", env.scim.token)
    assert run(env)["wiki"]["status"] == "ok"
    assert env.store.read_app_health("wiki") == AppHealth("wiki")
    monkeypatch.setenv("WRONG_TOKEN", "not-the-token")
    run(env)
    run(env)
    assert not env.store.read_app_health("wiki").quarantined  # two in a row, not three


def test_lifting_an_unknown_app_is_an_error(env: Installation) -> None:
    result = quarantine(env, "lift", "nope")
    assert result.exit_code == 2 and "no app named 'nope'" in result.stderr


def test_the_store_keeps_health_until_it_is_healthy_again(database_url: str) -> None:
    from directory.store import Store

    quarantined = AppHealth(
        "wiki",
        failures=3,
        reason="auth",
        last_error="401",
        failing_since=T0,
        quarantined_since=T0 + H,
        next_retry_at=T0 + 2 * H,
    )
    with Store(database_url) as store:
        assert store.read_app_health("wiki") == AppHealth("wiki")
        store.save_app_health(AppHealth("chat", failures=1, reason="unreachable"))
        store.save_app_health(quarantined)
        store.save_app_health(quarantined)  # an update, not a second row
        assert store.read_app_health("wiki") == quarantined
        assert [h.app for h in store.list_app_health()] == ["chat", "wiki"]
        assert store.lift_quarantine("wiki") == quarantined
        store.save_app_health(AppHealth("chat"))  # healthy: the row goes
        assert store.list_app_health() == []
