"""The REST connector's operations against the toy app on a real socket: the shapes the
real apps here lack (a status field, suspend endpoints, a lock, templates, faults)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.errors import (
    ConflictError,
    DryRunError,
    InvalidResponseError,
    NotFoundError,
    TransientError,
)
from connectors.http import build_client
from connectors.rest import RestConnector
from directory.config import RestAppConfig, parse_config
from tests.rest_server import SECRET, ToyRestApp, toy_entry
from tests.socket_server import serve_wsgi

ALICE = {"userName": "alice", "email": "alice@corp.example", "displayName": "Alice A"}


@pytest.fixture
def toy() -> Iterator[tuple[ToyRestApp, str]]:
    app = ToyRestApp(style="none")
    with serve_wsgi(app) as (url, _):
        yield app, url
    assert app.unexpected == []


def connect(
    url: str, *, dry_run: bool = False, sleeps: list[float] | None = None, **entry: Any
) -> RestConnector:
    app = parse_config({"apps": [toy_entry(url, style="none", **entry)]}).apps[0]
    assert isinstance(app, RestAppConfig)
    client = build_client(url, SECRET, timeout=5, verify_tls=True, concurrency=2)
    record = sleeps.append if sleeps is not None else (lambda _: None)
    return RestConnector(client, app, dry_run=dry_run, sleep=record)


def requests(**changes: Any) -> dict[str, Any]:
    base = toy_entry("http://x")["requests"]
    return {**base, **changes}


def test_create_writes_mapped_attributes_at_their_paths(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    account = connect(url).create_account({**ALICE, "active": True})
    user = app.users[account.id]
    assert (user["login"], user["profile"]) == (
        "alice",
        {"email": ALICE["email"], "name": "Alice A"},
    )
    assert user["status"] == "ACTIVE"


def test_a_body_template_fills_placeholders_and_keeps_constants(
    toy: tuple[ToyRestApp, str],
) -> None:
    app, url = toy
    template = {
        "login": "{userName}",
        "profile": {"email": "{email}", "name": "Dr {displayName}"},
        "roles": ["staff", "roster"],
        "source": "roster",
    }
    create = {"method": "POST", "path": "/users", "body": template, "ok": [201]}
    account = connect(url, requests=requests(create=create)).create_account(ALICE)
    user = app.users[account.id]
    assert user["profile"] == {"email": ALICE["email"], "name": "Dr Alice A"}
    assert (user["roles"], user["source"]) == (["staff", "roster"], "roster")


def test_a_conflict_on_create_then_find_picks_the_exact_match(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    existing = app.seed("alice")
    app.seed("alice2")  # the app's search is a substring match: Roster compares itself
    connector = connect(url)
    with pytest.raises(ConflictError):
        connector.create_account(ALICE)
    found = connector.find_account("userName", "ALICE")
    assert found is not None and found.id == existing
    assert app.requests[-1] == ("GET", "/users", {"login": "ALICE"})
    assert connector.find_account("userName", "nobody") is None


def test_two_accounts_matching_one_value_are_disputed(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.seed("bob")
    app.seed("Bob")
    with pytest.raises(ConflictError, match="2 accounts"):
        connect(url).find_account("userName", "bob")


def test_update_then_deactivate_and_reactivate_through_the_status_field(
    toy: tuple[ToyRestApp, str],
) -> None:
    app, url = toy
    remote_id = app.seed("carol")
    connector = connect(url)
    connector.update_account(remote_id, {"displayName": "Carol C"}, {})
    assert app.users[remote_id]["profile"]["name"] == "Carol C"
    connector.deactivate_account(remote_id)
    assert app.users[remote_id]["status"] == "SUSPENDED"
    assert connector.get_account(remote_id).attributes["active"] is False
    connector.update_account(remote_id, {"active": True}, {"active": True})
    assert app.users[remote_id]["status"] == "ACTIVE"
    assert [m for m, _, _ in app.requests] == ["PATCH", "PATCH", "GET", "PATCH"]


def test_dedicated_deactivate_and_reactivate_endpoints(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    remote_id = app.seed("dave")
    suspend = {"method": "POST", "path": "/users/{id}/suspend", "ok": [204]}
    unsuspend = {"method": "POST", "path": "/users/{id}/unsuspend", "ok": [204]}
    connector = connect(url, requests=requests(deactivate=suspend, reactivate=unsuspend))
    connector.deactivate_account(remote_id)
    assert app.users[remote_id]["status"] == "SUSPENDED"
    connector.update_account(remote_id, {"active": True, "displayName": "D"}, {"active": True})
    assert app.users[remote_id]["status"] == "ACTIVE"
    assert app.users[remote_id]["profile"]["name"] == "D"
    sent = [(m, p) for m, p, _ in app.requests]
    assert sent == [
        ("POST", f"/users/{remote_id}/suspend"),
        ("POST", f"/users/{remote_id}/unsuspend"),
        ("PATCH", f"/users/{remote_id}"),
    ]


def test_lock_strategy_writes_and_reads_the_lock_status(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    remote_id = app.seed("erin")
    lock = {"strategy": "lock", "path": "status", "value": "LOCKED", "unlocked": "ACTIVE"}
    connector = connect(url, active=None, deprovision_strategy=lock)
    connector.deactivate_account(remote_id)
    assert app.users[remote_id]["status"] == "LOCKED"
    [page] = connector.list_accounts()
    assert page.accounts[0].attributes["active"] is False
    connector.update_account(remote_id, {"active": True}, {"active": True})
    assert app.users[remote_id]["status"] == "ACTIVE"


def test_dry_run_refuses_every_write_before_it_is_sent(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    remote_id = app.seed("frank")
    connector = connect(url, dry_run=True)
    assert len(next(iter(connector.list_accounts())).accounts) == 1
    for call in (
        lambda: connector.create_account(ALICE),
        lambda: connector.update_account(remote_id, {"displayName": "X"}, {}),
        lambda: connector.deactivate_account(remote_id),
        lambda: connector.delete_account(remote_id),
    ):
        with pytest.raises(DryRunError, match="refused, app toy is in dry-run mode"):
            call()
    assert app.writes() == 0


def test_429_is_retried_after_retry_after_and_counted(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    remote_id = app.seed("gina")
    sleeps: list[float] = []
    connector = connect(url, sleeps=sleeps)
    app.faults += [(429, "2"), (503, None)]
    connector.update_account(remote_id, {"displayName": "G"}, {})
    assert app.users[remote_id]["profile"]["name"] == "G"
    assert sleeps[0] == 2.0 and len(sleeps) == 2
    assert connector.last_attempts == 3 and connector.last_operation.retries == 2
    app.faults += [(503, None)] * 10
    with pytest.raises(TransientError):
        connector.get_account(remote_id)
    assert connector.last_attempts == 5  # max_retries 4


def test_an_unexpected_success_status_and_a_missing_account(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    remote_id = app.seed("hank")
    update = {"method": "PATCH", "path": "/users/{id}", "body": "mapped", "ok": [204]}
    connector = connect(url, requests=requests(update=update))
    with pytest.raises(InvalidResponseError, match="unexpected status 200 \\(expected 204\\)"):
        connector.update_account(remote_id, {"displayName": "H"}, {})
    connector.delete_account(remote_id)
    with pytest.raises(NotFoundError):
        connector.delete_account(remote_id)
    with pytest.raises(NotFoundError):
        connector.get_account(remote_id)


def test_ids_are_quoted_into_paths(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    with pytest.raises(NotFoundError):
        connect(url).get_account("../admin?x=1")
    assert app.requests[-1][1] == "/users/../admin?x=1"  # decoded by the server: one segment
    assert app.requests[-1][2] == {}
