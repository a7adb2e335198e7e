"""Broken inputs that look like "everyone left" or "everyone is new" are held, reported and
never applied: checked end to end against a real scim2-server, counting on the server.

- the directory extract is empty (a wiped or wrong database);
- the directory is truncated (half an HR export imported with ``--full --force``);
- the app suddenly lists nobody (a tenant reset);
- the app lists far fewer accounts than Roster has links for (restored from an old backup).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

import flows.sync
from directory.models import User
from flows.sync import sync
from tests.sync_env import Installation, people

TEAM = 40


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    """40 people with linked, active accounts in chat."""
    env = make_installation(["chat"])
    env.import_people(people(TEAM, apps="chat"))
    first = sync(config_path=env.config_path)
    assert first["apps"]["chat"]["summary"]["created"] == TEAM
    return env


def run(env: Installation) -> dict:
    result: dict = sync(config_path=env.config_path)["apps"]["chat"]
    return result


def test_an_empty_directory_extract_deprovisions_nobody(
    env: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extract comes back empty (a reader bug, a replica still loading) while the
    links say 40 people have accounts."""
    real = flows.sync.extract_directory
    monkeypatch.setattr(flows.sync, "extract_directory", lambda store: real(store).iloc[0:0])
    writes = env.scim.writes("chat")
    chat = run(env)
    assert chat["status"] == "held" and chat["summary"]["held"] == TEAM
    assert any("directory extract is empty" in note for note in chat["notes"])
    assert env.scim.writes("chat") == writes
    assert all(u["active"] for u in env.scim.users("chat"))


def test_a_wiped_directory_deprovisions_nobody(env: Installation) -> None:
    """Every user deleted from the database (the links stay): their accounts would be
    deprovisioned like leavers', and the guard holds that."""
    with env.store.engine.begin() as conn:
        conn.execute(sa.delete(User))
    writes = env.scim.writes("chat")
    chat = run(env)
    assert chat["status"] == "held" and chat["summary"]["held"] == TEAM
    assert chat["summary"]["deactivated"] == 0
    assert env.scim.writes("chat") == writes
    assert all(u["active"] for u in env.scim.users("chat"))


def test_a_truncated_directory_deprovisions_nobody(env: Installation) -> None:
    """The import's own hold refuses a truncated full import; forced through anyway, the
    sync holds the deactivations it would cause."""
    env.import_people(people(TEAM // 2, apps="chat"), full=True)  # force=True in the helper
    writes = env.scim.writes("chat")
    chat = run(env)
    assert chat["status"] == "held" and chat["summary"]["held"] == TEAM // 2
    assert chat["summary"]["deactivated"] == 0
    assert any("would be deprovisioned" in note for note in chat["notes"])
    assert env.scim.writes("chat") == writes
    assert all(u["active"] for u in env.scim.users("chat"))


def test_an_app_listing_nobody_recreates_nobody(env: Installation) -> None:
    wipe(env, keep=0)
    writes = env.scim.writes("chat")
    chat = run(env)
    assert chat["status"] == "held" and chat["summary"]["created"] == 0
    assert chat["summary"]["held"] == TEAM
    assert any("listed no accounts" in note for note in chat["notes"])
    assert env.scim.writes("chat") == writes and env.accounts("chat") == {}


def test_an_app_listing_far_fewer_than_linked_recreates_nobody(env: Installation) -> None:
    wipe(env, keep=5)
    writes = env.scim.writes("chat")
    chat = run(env)
    assert chat["status"] == "held" and chat["summary"]["created"] == 0
    assert chat["summary"]["held"] == TEAM - 5
    assert any("missing from the app and would be created again" in n for n in chat["notes"])
    assert env.scim.writes("chat") == writes and len(env.accounts("chat")) == 5


def wipe(env: Installation, keep: int) -> None:
    """Delete all but ``keep`` accounts in the app, behind Roster's back."""
    with env.scim.client("chat") as client:
        for account in env.scim.users("chat")[keep:]:
            client.delete(f"/Users/{account['id']}").raise_for_status()
    assert len(env.scim.users("chat")) == keep
