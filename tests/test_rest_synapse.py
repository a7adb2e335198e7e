"""The REST connector on a second real app with what RabbitMQ lacks: cursor pagination
and real deactivation. Synapse's Admin API, with the shipped examples/rest/synapse.yaml,
everything checked on the homeserver."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import SecretStr

from connectors.build import build_connector
from connectors.errors import AuthError, ConflictError
from connectors.rest import RestConnector
from directory.config import RestAppConfig, parse_config
from flows.sync import sync
from tests.synapse import MatrixUsers
from tests.sync_env import Installation, people


def connect(matrix: MatrixUsers, token: str | None = None, page_size: int = 2) -> RestConnector:
    entry = matrix.entry() | {"page_size": page_size}
    app = parse_config({"apps": [entry]}).apps[0]
    assert isinstance(app, RestAppConfig)
    connector = build_connector(app, SecretStr(token or matrix.server.admin_token), dry_run=False)
    assert isinstance(connector, RestConnector)
    return connector


def test_listing_follows_the_cursor_over_pages_deactivated_users_included(
    matrix: MatrixUsers,
) -> None:
    for i in range(5):
        matrix.put(f"p{i}", displayname=f"P {i}")
    matrix.put("gone")
    matrix.put("gone", deactivated=True)  # Synapse deactivates existing users only
    connector = connect(matrix)
    pages = list(connector.list_accounts())
    accounts = {a.attributes["userName"]: a for page in pages for a in page.accounts}
    assert sorted(accounts) == ["gone", "p0", "p1", "p2", "p3", "p4"]
    assert len(pages) >= 4  # the administrator and other tests' users share the pages
    assert accounts["p3"].attributes == {
        "userName": "p3",
        "displayName": "P 3",
        "active": True,
    }
    assert accounts["gone"].attributes["active"] is False
    assert connector.last_attempts == len(pages)


def test_create_update_deactivate_reactivate(matrix: MatrixUsers) -> None:
    connector = connect(matrix)
    account = connector.create_account(
        {"userName": "alice", "displayName": "Alice", "active": True}
    )
    assert account.id == matrix.user_id("alice")
    user = matrix.users()["alice"]
    assert (user["displayname"], user["deactivated"]) == ("Alice", False)

    connector.update_account(account.id, {"displayName": "Alice A"}, {})
    assert matrix.users()["alice"]["displayname"] == "Alice A"

    connector.deactivate_account(account.id)
    assert matrix.users()["alice"]["deactivated"] is True
    assert connector.get_account(account.id).attributes["active"] is False

    connector.update_account(account.id, {"active": True}, {"active": True})
    assert matrix.users()["alice"]["deactivated"] is False


def test_an_existing_user_is_a_conflict_then_found(matrix: MatrixUsers) -> None:
    remote_id = matrix.put("bob", displayname="Bob")
    connector = connect(matrix)
    with pytest.raises(ConflictError, match="exists already"):
        connector.create_account({"userName": "bob", "displayName": "B"})
    assert matrix.users()["bob"]["displayname"] == "Bob"  # the upsert was never sent
    found = connector.find_account("userName", "bob")
    assert found is not None and found.id == remote_id
    assert connector.find_account("userName", "nobody") is None
    # the administrator is outside this test's prefix: never found, never touched
    assert connector.find_account("userName", "rosteradmin") is None


def test_a_wrong_token_is_an_auth_error(matrix: MatrixUsers) -> None:
    with pytest.raises(AuthError) as refused:
        list(connect(matrix, token="syt_not_a_real_token_0").list_accounts())
    assert "syt_not_a_real_token_0" not in str(refused.value)
    assert "M_UNKNOWN_TOKEN" in str(refused.value)


@pytest.fixture
def env(
    make_installation: Callable[..., Installation],
    matrix: MatrixUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> Installation:
    monkeypatch.setenv("ROSTER_SYNAPSE_SECRET", matrix.server.admin_token)
    installation = make_installation([])
    # directory user names are the localparts after this test's prefix
    installation.extra_apps.append(matrix.entry() | {"page_size": 2})
    installation.write_config()
    return installation


def test_sync_creates_deactivates_and_then_makes_no_writes(
    env: Installation, matrix: MatrixUsers
) -> None:
    team = people(5, apps="matrix")
    env.import_people(team)
    first = sync(config_path=env.config_path)["apps"]["matrix"]["summary"]
    assert (first["created"], first["failed"]) == (5, 0)
    assert sorted(matrix.users()) == [f"user000{i}" for i in range(5)]
    before = matrix.users()
    second = sync(config_path=env.config_path)["apps"]["matrix"]["summary"]
    assert second["unchanged"] == 5
    assert second["created"] == second["updated"] == second["deactivated"] == 0
    assert matrix.users() == before

    team[3]["active"] = "false"
    env.import_people(team)
    third = sync(config_path=env.config_path)["apps"]["matrix"]["summary"]
    assert third["deactivated"] == 1
    assert matrix.users()["user0003"]["deactivated"] is True
    fourth = sync(config_path=env.config_path)["apps"]["matrix"]["summary"]
    assert (fourth["deactivated"], fourth["updated"], fourth["unchanged"]) == (0, 0, 5)
