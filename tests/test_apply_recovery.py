"""Retries and crashes never duplicate an account, and a batch retry redoes only the rest."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from flows.sync import sync
from tasks import session
from tests.faults import FailCreates, LoseCreateAnswers
from tests.sync_env import Installation, people


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    return make_installation(["chat"], chat={"max_retries": 0})


def test_prefect_batch_retry_reruns_only_the_accounts_not_done(env: Installation) -> None:
    flaky = FailCreates(env.scim.app, {"user0003", "user0007"}, times=1)
    session.TRANSPORTS["chat"] = httpx.WSGITransport(app=flaky)  # type: ignore[arg-type]
    env.import_people(people(10, apps="chat"))

    result = sync(config_path=env.config_path)

    assert result["apps"]["chat"]["summary"]["created"] == 10
    assert result["apps"]["chat"]["summary"]["failed"] == 0
    assert max(flaky.reached.values()) == 1 and len(flaky.reached) == 10
    assert len(env.scim.users("chat")) == 10
    log = env.store.read_actions(result["run_id"])
    tries = log.groupby("user_name")["outcome"].apply(list).to_dict()
    assert tries["user0003"] == ["failed", "succeeded"]
    assert tries["user0001"] == ["succeeded"]


def test_accounts_failing_every_retry_are_reported_and_retried_next_run(
    env: Installation,
) -> None:
    flaky = FailCreates(env.scim.app, {"user0002"}, times=3)  # outlasts the batch's 2 retries
    session.TRANSPORTS["chat"] = httpx.WSGITransport(app=flaky)  # type: ignore[arg-type]
    env.import_people(people(4, apps="chat"))

    first = sync(config_path=env.config_path)
    assert first["apps"]["chat"]["summary"]["failed"] == 1
    assert first["apps"]["chat"]["summary"]["created"] == 3
    failed = [r for r in first["apps"]["chat"]["drift"] if r["status"] == "failed"]
    assert {r["user"] for r in failed} == {"user0002"}
    assert "503" in failed[0]["error"]

    second = sync(config_path=env.config_path)
    assert second["apps"]["chat"]["summary"]["created"] == 1
    assert len(env.scim.users("chat")) == 4


def test_a_create_whose_answer_was_lost_is_logged_adopted_and_linked(env: Installation) -> None:
    """The POST landed but its answer was lost: the batch retry's POST gets 409 and adopts
    the account. Found by the chaos suite: "adopted" was not an outcome the action log
    accepted, so recording the batch failed and none of its accounts were linked."""
    lost = LoseCreateAnswers(env.scim.app, {"user0001"})
    session.TRANSPORTS["chat"] = httpx.WSGITransport(app=lost)  # type: ignore[arg-type]
    env.import_people(people(3, apps="chat"))

    result = sync(config_path=env.config_path)

    summary = result["apps"]["chat"]["summary"]
    assert (summary["created"], summary["linked"], summary["failed"]) == (2, 1, 0)
    log = env.store.read_actions(result["run_id"])
    tries = log.groupby("user_name")["outcome"].apply(list).to_dict()
    assert tries == {
        "user0000": ["succeeded"],
        "user0001": ["failed", "adopted"],  # 503 (max_retries 0), then 409 on the retry
        "user0002": ["succeeded"],
    }
    accounts = {u["userName"]: u["id"] for u in env.scim.users("chat")}
    assert len(accounts) == 3
    links = env.store.read_links("chat")
    assert sorted(links["remote_id"]) == sorted(accounts.values())


def test_an_account_whose_create_answer_was_garbled_is_deprovisioned_when_its_user_leaves(
    env: Installation,
) -> None:
    """The POST landed, the answer was not JSON: the create failed and no link was written.
    If the person leaves before the next run, that account is still Roster's (its externalId
    is their directory id) and must be deactivated. Found by the chaos suite: it was
    reported "unmanaged" and left active, a leaver keeping access."""
    garbled = LoseCreateAnswers(env.scim.app, {"user0002"}, "200 OK", b"<html>proxy</html>")
    session.TRANSPORTS["chat"] = httpx.WSGITransport(app=garbled)  # type: ignore[arg-type]
    env.import_people(people(3, apps="chat"))
    first = sync(config_path=env.config_path)
    assert first["apps"]["chat"]["summary"]["failed"] == 1
    assert "user0002" not in set(
        env.store.read_users()
        .set_index("user_id")
        .loc[env.store.read_links("chat")["user_id"], "user_name"]
    )
    env.store.set_active("user0002", False)

    second = sync(config_path=env.config_path)

    assert second["apps"]["chat"]["summary"]["deactivated"] == 1
    assert second["apps"]["chat"]["summary"]["unmanaged"] == 0
    accounts = {u["userName"]: u for u in env.scim.users("chat")}
    assert len(accounts) == 3 and accounts["user0002"]["active"] is False
    links = env.store.read_links("chat").set_index("remote_id")
    assert links.loc[accounts["user0002"]["id"], "status"] == "deactivated"


def test_a_crash_before_links_were_written_is_repaired_by_adoption(env: Installation) -> None:
    env.import_people(people(12, apps="chat"))
    sync(config_path=env.config_path)
    # what a kill -9 between the requests and the link write leaves: accounts, no links
    env.store.delete_links("chat", env.store.read_links("chat")["user_id"])

    again = sync(config_path=env.config_path)

    assert again["apps"]["chat"]["summary"]["linked"] == 12
    assert again["apps"]["chat"]["summary"]["created"] == 0
    assert len(env.scim.users("chat")) == 12
    assert len(env.store.read_links("chat")) == 12


def test_a_409_on_create_adopts_the_existing_account(env: Installation) -> None:
    """The plan saw no account, but one appeared before the create (a concurrent run)."""
    from directory.config import load_config
    from tasks.apply import ApplyContext, Outcome, WorkItem, apply_account
    from tasks.plan import PlannedAction, PlanRules

    app = load_config(env.config_path).apps[0]
    with env.scim.client("chat") as client:
        client.post(
            "/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "late.arrival",
                "title": "Stale",
            },
        )
    connector = session.open_connector(app, dry_run=False)
    item = WorkItem(
        user_id="u1",
        user_name="late.arrival",
        remote_id=None,
        action=PlannedAction.CREATE,
        situation="missing",
        changes=None,
        attr_hash=None,
        desired={"userName": "late.arrival", "title": "Engineer", "active": True},
    )
    ctx = ApplyContext(app=app, connector=connector, rules=PlanRules.for_app(app))
    result = apply_account(item, ctx)
    assert result.outcome is Outcome.ADOPTED
    accounts = env.scim.users("chat")
    assert len(accounts) == 1 and accounts[0]["id"] == result.remote_id
    assert accounts[0]["title"] == "Engineer"
