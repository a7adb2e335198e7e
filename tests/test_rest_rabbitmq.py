"""The REST connector on a real, widely used app: RabbitMQ's management HTTP API, with the
shipped examples/rest/rabbitmq.yaml. Everything is checked on the broker itself."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from connectors.build import build_connector
from connectors.errors import AuthError, ConflictError, NotFoundError
from connectors.rest import RestConnector
from directory.config import RestAppConfig, parse_config
from flows.sync import sync
from tests.rabbitmq import RabbitUsers
from tests.sync_env import Installation, people, person


def connect(rabbitmq: RabbitUsers, password: str | None = None) -> RestConnector:
    app = parse_config({"apps": [rabbitmq.entry()]}).apps[0]
    assert isinstance(app, RestAppConfig)
    connector = build_connector(app, SecretStr(password or rabbitmq.admin.password), dry_run=False)
    assert isinstance(connector, RestConnector)
    return connector


def can_sign_in(rabbitmq: RabbitUsers, name: str, password: str) -> bool:
    response = httpx.get(
        f"{rabbitmq.admin.url}/api/whoami", auth=(rabbitmq.prefix + name, password)
    )
    return response.status_code == 200


def test_listing_holds_only_roster_users_never_the_brokers_own(rabbitmq: RabbitUsers) -> None:
    rabbitmq.put("ann", ["management"])
    rabbitmq.put("ben", [])
    [page] = connect(rabbitmq).list_accounts()
    assert {a.id: a.attributes for a in page.accounts} == {
        f"{rabbitmq.prefix}ann": {"userName": "ann", "tags": "management", "active": True},
        f"{rabbitmq.prefix}ben": {"userName": "ben", "tags": "", "active": False},
    }
    assert {"guest", rabbitmq.admin.username} <= rabbitmq.all_names()
    assert page.errors == []


def test_create_update_strip_roles_and_delete(rabbitmq: RabbitUsers) -> None:
    connector = connect(rabbitmq)
    account = connector.create_account({"userName": "cat", "tags": "management", "active": True})
    assert account.id == f"{rabbitmq.prefix}cat"
    assert connector.last_attempts == 2  # the if_absent GET, then the PUT
    user = rabbitmq.users()["cat"]
    assert (user["tags"], user["password_hash"]) == (["management"], "")

    connector.update_account(account.id, {"tags": "management,monitoring"}, {})
    assert rabbitmq.users()["cat"]["tags"] == ["management", "monitoring"]

    connector.deactivate_account(account.id)
    assert rabbitmq.users()["cat"]["tags"] == []
    assert connector.get_account(account.id).attributes == {
        "userName": "cat",
        "tags": "",
        "active": False,
    }
    connector.delete_account(account.id)
    assert "cat" not in rabbitmq.users()
    with pytest.raises(NotFoundError):
        connector.delete_account(account.id)


def test_updates_keep_the_users_password(rabbitmq: RabbitUsers) -> None:
    """RabbitMQ's PUT replaces the user: without the hash, the password would be gone."""
    remote_id = rabbitmq.put("dan", ["management"], password="dans-password-1")
    connector = connect(rabbitmq)
    connector.update_account(remote_id, {"tags": "management,policymaker"}, {})
    assert can_sign_in(rabbitmq, "dan", "dans-password-1")
    connector.deactivate_account(remote_id)  # tags stripped: no more management access
    assert not can_sign_in(rabbitmq, "dan", "dans-password-1")
    connector.update_account(remote_id, {"active": True, "tags": "management"}, {})
    assert can_sign_in(rabbitmq, "dan", "dans-password-1")


def test_an_existing_user_is_a_conflict_then_found_and_never_overwritten(
    rabbitmq: RabbitUsers,
) -> None:
    remote_id = rabbitmq.put("eve", ["monitoring"], password="eves-password-1")
    connector = connect(rabbitmq)
    with pytest.raises(ConflictError, match="exists already"):
        connector.create_account({"userName": "eve", "tags": "management"})
    assert can_sign_in(rabbitmq, "eve", "eves-password-1")
    found = connector.find_account("userName", "eve")
    assert found is not None and found.id == remote_id
    assert found.attributes["tags"] == "monitoring"
    assert connector.find_account("userName", "nobody") is None


def test_the_brokers_own_users_cannot_be_found(rabbitmq: RabbitUsers) -> None:
    connector = connect(rabbitmq)
    assert connector.find_account("userName", "guest") is None
    assert connector.find_account("userName", rabbitmq.admin.username) is None


def test_a_wrong_password_is_an_auth_error_without_the_password(rabbitmq: RabbitUsers) -> None:
    with pytest.raises(AuthError) as refused:
        list(connect(rabbitmq, password="wrong-password-1").list_accounts())
    assert refused.value.status == 401
    assert "wrong-password-1" not in str(refused.value)
    assert str(refused.value) == "GET /api/users: 401 not_authorized: Login failed"


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture
def env(
    make_installation: Callable[..., Installation],
    rabbitmq: RabbitUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> Installation:
    monkeypatch.setenv("ROSTER_RABBITMQ_SECRET", rabbitmq.admin.password)
    installation = make_installation([])
    installation.extra_apps.append(rabbitmq.entry())
    installation.write_config()
    return installation


def summary(result: dict) -> dict[str, int]:
    return result["apps"]["rabbitmq"]["summary"]


def test_sync_creates_deprovisions_and_then_makes_no_writes(
    env: Installation, rabbitmq: RabbitUsers
) -> None:
    team = people(4, apps="rabbitmq")
    stray = rabbitmq.put("stray", ["management"])  # an account nobody in the directory owns
    env.import_people(team)
    first = summary(sync(config_path=env.config_path))
    assert (first["created"], first["orphans"], first["failed"]) == (4, 1, 0)
    users = rabbitmq.users()
    assert sorted(users) == ["stray", "user0000", "user0001", "user0002", "user0003"]
    assert all(users[f"user000{i}"]["tags"] == ["management"] for i in range(4))

    before = rabbitmq.users()
    second = summary(sync(config_path=env.config_path))
    assert rabbitmq.users() == before
    assert second["unchanged"] == 4
    assert second["created"] == second["updated"] == second["deactivated"] == 0

    team[2]["active"] = "false"  # a leaver
    env.import_people(team)
    third = summary(sync(config_path=env.config_path))
    assert third["deactivated"] == 1
    assert rabbitmq.users()["user0002"]["tags"] == []

    before = rabbitmq.users()
    fourth = summary(sync(config_path=env.config_path))
    assert rabbitmq.users() == before  # the stripped user reads as deprovisioned
    assert (fourth["unchanged"], fourth["deactivated"], fourth["updated"]) == (4, 0, 0)
    assert rabbitmq.users()["stray"]["tags"] == ["management"]  # reported, never touched
    assert stray in rabbitmq.all_names() and "guest" in rabbitmq.all_names()


def test_sync_adopts_an_existing_user_and_a_returning_leaver_gets_roles_back(
    env: Installation, rabbitmq: RabbitUsers
) -> None:
    rabbitmq.put("user0001", ["monitoring"], password="kept-password-1")
    team = [person(0, apps="rabbitmq"), person(1, apps="rabbitmq")]
    env.import_people(team)
    first = summary(sync(config_path=env.config_path))
    assert (first["created"], first["linked"]) == (1, 1)
    assert rabbitmq.users()["user0001"]["tags"] == ["management"]
    assert can_sign_in(rabbitmq, "user0001", "kept-password-1")

    team[1]["active"] = "false"
    env.import_people(team)
    sync(config_path=env.config_path)
    assert rabbitmq.users()["user0001"]["tags"] == []
    team[1]["active"] = "true"
    env.import_people(team)
    back = summary(sync(config_path=env.config_path))
    assert back["updated"] == 1
    assert rabbitmq.users()["user0001"]["tags"] == ["management"]
    assert can_sign_in(rabbitmq, "user0001", "kept-password-1")
