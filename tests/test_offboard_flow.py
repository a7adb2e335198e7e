"""Offboarding: one person, every linked app, at once, verified on the servers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flows.offboard import offboard
from flows.sync import sync
from tests.sync_env import Installation, people

APPS = ["chat", "wiki", "crm"]


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    return make_installation(APPS)


def test_offboarding_deactivates_the_person_in_every_app_and_nobody_else(
    env: Installation,
) -> None:
    env.import_people(people(8, apps="chat;wiki;crm"))
    sync(config_path=env.config_path)
    writes = env.scim.writes()

    result = offboard(user="user0003@example.com", config_path=env.config_path)

    assert result["user"] == "user0003"
    assert set(result["apps"]) == set(APPS)
    for app in APPS:
        assert result["apps"][app]["outcome"] == "succeeded"
        assert result["apps"][app]["active_in_app"] is False
        accounts = env.accounts(app)
        assert accounts["user0003"]["active"] is False
        assert sum(a["active"] for a in accounts.values()) == 7
    assert env.scim.writes() - writes == 3  # one PATCH per app, nothing else
    assert env.store.find_user("user0003")["active"] is False
    # the next sync agrees: nothing left to do
    after = sync(config_path=env.config_path)
    assert all(a["summary"]["deactivated"] == 0 for a in after["apps"].values())
    assert env.scim.writes() - writes == 3


def test_offboarding_with_delete_mode_removes_the_account(env: Installation) -> None:
    env.app_settings = {
        "crm": {"deprovision": "delete", "actions": ["create", "update", "deactivate", "delete"]}
    }
    env.write_config()
    env.import_people(people(4, apps="chat;crm"))
    sync(config_path=env.config_path)
    result = offboard(user="user0002", config_path=env.config_path)
    assert result["apps"]["crm"]["action"] == "delete"
    assert "user0002" not in env.accounts("crm")
    assert env.accounts("chat")["user0002"]["active"] is False


def test_offboarding_dry_run_writes_nothing(env: Installation) -> None:
    env.import_people(people(3, apps="chat"))
    sync(config_path=env.config_path)
    writes = env.scim.writes()
    result = offboard(user="user0001", dry_run=True, config_path=env.config_path)
    assert result["apps"]["chat"]["outcome"] == "planned"
    assert env.scim.writes() == writes
    assert env.store.find_user("user0001")["active"] is True
