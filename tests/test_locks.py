"""One writer per app: the lock in the directory database, on SQLite and PostgreSQL, and
what a sync does when another run holds it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from directory.errors import AppLockedError
from directory.store import Store
from flows.sync import sync
from tasks.locks import app_lock, holder_is_dead, lock_holder
from tests.sync_env import Installation, people

REPO = Path(__file__).resolve().parents[1]
TTL = timedelta(minutes=5)
ELSEWHERE = "other-host:4242:run 0123"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as store:
        yield store


def test_a_free_lock_is_taken_and_a_held_one_names_its_holder(store: Store) -> None:
    assert store.try_lock_app("chat", "a", TTL).held_by("a")
    second = store.try_lock_app("chat", "b", TTL)
    assert not second.held_by("b") and second.holder == "a"
    assert second.expires_at > second.acquired_at
    assert store.try_lock_app("wiki", "b", TTL).held_by("b")  # locks are per app


def test_an_expired_lock_is_taken_over_and_its_old_holder_cannot_renew(store: Store) -> None:
    store.try_lock_app("chat", "dead", timedelta(seconds=-1))
    assert store.try_lock_app("chat", "b", TTL).held_by("b")
    assert not store.renew_app_lock("chat", "dead", TTL)
    store.release_app_lock("chat", "dead")  # not the holder: changes nothing
    assert store.try_lock_app("chat", "c", TTL).holder == "b"
    assert store.renew_app_lock("chat", "b", TTL)
    store.release_app_lock("chat", "b")
    assert store.try_lock_app("chat", "c", TTL).held_by("c")


def test_of_many_racing_for_a_lock_exactly_one_wins(database_url: str) -> None:
    """Separate connections hammering at once: the database, not Python, decides."""
    winners: list[str] = []
    start = threading.Barrier(8)

    def contend(name: str) -> None:
        with Store(database_url) as mine:
            start.wait()
            if mine.try_lock_app("chat", name, TTL).held_by(name):
                winners.append(name)

    with Store(database_url):  # migrate once, before the race
        pass
    threads = [threading.Thread(target=contend, args=(f"run{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_app_lock_waits_for_the_holder_then_takes_the_lock(store: Store) -> None:
    store.try_lock_app("chat", ELSEWHERE, TTL)
    threading.Timer(1.5, store.release_app_lock, args=("chat", ELSEWHERE)).start()
    began = time.monotonic()
    with app_lock(store, "chat", "me", wait=30) as state:
        assert state.held_by("me")
        assert time.monotonic() - began >= 1
    assert store.try_lock_app("chat", "next", TTL).held_by("next")  # released on exit


def test_app_lock_gives_up_with_a_message_naming_the_holder(store: Store) -> None:
    store.try_lock_app("chat", ELSEWHERE, TTL)
    with pytest.raises(AppLockedError) as caught, app_lock(store, "chat", "me", wait=0):
        pytest.fail("the lock was held elsewhere")
    message = str(caught.value)
    assert "app chat is being synced by another run" in message
    assert ELSEWHERE in message and "--wait-for-lock" in message


def test_a_long_run_keeps_its_lock_by_renewing_it(store: Store) -> None:
    ttl = timedelta(seconds=1.5)
    with app_lock(store, "chat", "me", ttl=ttl):
        time.sleep(3)  # twice the TTL: only renewals keep it ours
        assert store.try_lock_app("chat", "other", ttl).holder == "me"


def test_a_lock_whose_process_died_on_this_machine_is_taken_over_at_once(store: Store) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    holder = f"{socket.gethostname()}:{dead.stdout.strip()}:run 77"
    assert holder_is_dead(holder)
    assert not holder_is_dead(lock_holder("me")) and not holder_is_dead(ELSEWHERE)
    store.try_lock_app("chat", holder, TTL)
    with app_lock(store, "chat", "me", wait=0) as state:
        assert state.held_by("me")


# -- two syncs of one app ------------------------------------------------------------------


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    env = make_installation(["chat", "wiki"])
    env.import_people(people(20))
    return env


def test_a_sync_of_a_locked_app_says_who_holds_it_and_writes_nothing(env: Installation) -> None:
    env.store.try_lock_app("chat", ELSEWHERE, TTL)
    result = sync(config_path=env.config_path)
    chat = result["apps"]["chat"]
    assert chat["status"] == "locked" and ELSEWHERE in chat["error"]
    assert env.scim.writes("chat") == 0 and env.accounts("chat") == {}
    assert len(env.accounts("wiki")) == 20  # other apps go on
    assert env.store.read_app_health("chat").healthy  # a lock is no failure of the app
    env.store.release_app_lock("chat", ELSEWHERE)
    assert sync(config_path=env.config_path)["apps"]["chat"]["summary"]["created"] == 20


def test_a_sync_waits_for_the_lock_when_asked(env: Installation) -> None:
    env.store.try_lock_app("chat", ELSEWHERE, TTL)
    threading.Timer(2, env.store.release_app_lock, args=("chat", ELSEWHERE)).start()
    result = sync(config_path=env.config_path, app="chat", lock_wait=60)
    assert result["apps"]["chat"]["summary"]["created"] == 20
    assert env.store.try_lock_app("chat", "after", TTL).held_by("after")  # released


def test_a_sync_does_not_undo_an_offboarding_made_while_it_ran(env: Installation) -> None:
    """Deactivated after the run started: the sync's stale "active" plan is not written."""
    sync(config_path=env.config_path, app="chat")
    run_id = env.store.start_run("sync")
    env.store.set_active("user0003", False)
    from tasks.apply import WorkItem
    from tasks.batches import _skip_offboarded
    from tasks.plan import PlannedAction

    names = ["user0002", "user0003"]
    items = [
        WorkItem(user_id=env.store.find_user(name)["user_id"], user_name=name, remote_id=None,
                 action=PlannedAction.UPDATE, situation="drifted", changes={}, desired={},
                 attr_hash=None)
        for name in names
    ]  # fmt: skip
    kept = _skip_offboarded(env.store, run_id, "chat", items)
    assert [item.user_name for item in kept] == ["user0002"]
    log = env.store.read_actions(run_id, app="chat")
    assert log[["user_name", "outcome"]].values.tolist() == [["user0003", "skipped"]]


@pytest.mark.service
def test_two_roster_syncs_at_once_never_create_an_account_twice(tmp_path: Path) -> None:
    """Two real ``roster sync`` processes started together on one SQLite directory: one
    holds the lock, the other waits for it, and every person has exactly one account."""
    from tests.scim_apps import TOKEN, standalone_scim
    from tests.service_support import make_site, prefect_server

    with standalone_scim(["chat"]) as scim_root, prefect_server(tmp_path / "server") as server:
        site = make_site(tmp_path / "site", server, scim_root, ["chat"], 300, synced=False)
        command = [sys.executable, "-m", "cli.main", "sync", "--wait-for-lock", "600", "--json"]
        procs = [
            subprocess.Popen(command, env=site.env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]  # fmt: skip
        outputs = [proc.communicate(timeout=600) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], outputs
        created = sorted(
            json.loads(out)["apps"]["chat"]["summary"]["created"] for out, _ in outputs
        )
        assert created == [0, 300]  # the second waited, then found everything done
        listing = httpx.get(
            f"{scim_root}/chat/v2/Users",
            params={"count": 1000},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()
        names = [u["userName"] for u in listing["Resources"]]
        assert len(names) == 300 and len(set(names)) == 300
