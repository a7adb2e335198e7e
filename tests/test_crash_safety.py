"""Crash safety: ``roster sync`` killed with SIGKILL in the middle of apply, ten times, then
synced again. Nothing may be duplicated or lost, and every account the killed run made
must be adopted by the next run, never created twice.

Each trial changes the directory, plans it (a dry run, to know how many writes apply will
send), starts ``roster sync`` as a subprocess in Prefect's local mode, and kills its
process group (Roster and the temporary Prefect server it started: what a dying machine or
an OOM-killed container does) from the fault proxy at a random write, after the app has
done it and before Roster gets the answer: the worst moment. Every other trial, some
people whose accounts the killed run made leave before the next run, so adoption has to
find accounts Roster never got to link (``tasks.plan``'s ``owner_keys``). The next sync
runs in-process and the census reads the server directly. ``ROSTER_CHAOS_REPORT=path.json``
writes the figures (section ``crash_safety``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.faultproxy import WRITES, FaultProxy
from directory.config import load_config
from flows.sync import sync
from tasks import session
from tests.chaos_support import Directory, server_users, take_census, total, write_report
from tests.scim_apps import TOKEN, standalone_scim
from tests.service_support import BIN, prefect_env, tail
from tests.sync_env import Installation

pytestmark = pytest.mark.chaos

APPS = ["a", "b"]
PEOPLE = 300
TRIALS = 10
SEED = int(os.environ.get("ROSTER_CHAOS_SEED", "20260"))
CHURN = {"joiners": 40, "leavers": 10, "changes": 40, "reassign": 6, "rehires": 3}


class Killer:
    """The proxy's ``on_upstream`` hook: SIGKILL the process group at the ``target``-th
    write that reached the app, before its answer goes back. While armed it also records
    every write the app did (method, path, when it answered), those that were still in
    flight at the kill included."""

    def __init__(self) -> None:
        self.pgid: int | None = None
        self.target = 0
        self.armed = False
        self.writes: list[tuple[str, str, float]] = []
        self.killed = threading.Event()
        self.lock = threading.Lock()

    def arm(self, pgid: int, target: int) -> None:
        with self.lock:
            self.pgid, self.target, self.armed, self.writes = pgid, target, True, []
            self.killed.clear()

    def disarm(self) -> None:
        with self.lock:
            self.armed = False

    def settle(self, quiet: float = 1.0, timeout: float = 15.0) -> None:
        """Wait until no write has reached the app for ``quiet`` seconds: the proxy still
        forwards the writes that were in flight at the kill (several, with apps synced
        side by side), and a loaded machine answers them late."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            with self.lock:
                count = len(self.writes)
            if count == seen:
                return
            seen = count
            time.sleep(quiet)

    def __call__(self, method: str, path: str) -> None:
        if method not in WRITES:
            return
        with self.lock:
            if not self.armed:
                return
            self.writes.append((method, path, time.time()))
            if self.pgid is None or len(self.writes) != self.target:
                return
            os.killpg(self.pgid, signal.SIGKILL)
            self.pgid = None
            self.killed.set()


@dataclass
class Site:
    env: Installation
    proxy: FaultProxy
    killer: Killer
    upstream: str
    cli_env: dict[str, str]
    logs: Path
    trials: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def site(make_installation: Callable[..., Installation], tmp_path: Path) -> Iterator[Site]:
    killer = Killer()
    with standalone_scim(APPS) as upstream, FaultProxy(upstream, on_upstream=killer) as proxy:
        env = make_installation(
            APPS, **{app: {"base_url": f"{proxy.url}/{app}/v2"} for app in APPS}
        )
        for app in APPS:  # make_installation routes apps in-process: use the sockets
            session.TRANSPORTS.pop(app, None)
        cli_env = prefect_env(
            tmp_path / "prefect",  # one PREFECT_HOME for every trial: migrated once
            ROSTER_HOME=str(tmp_path),
            ROSTER_CONFIG=env.config_path,
            ROSTER_TEST_TOKEN=TOKEN,
        )
        cli_env.pop("ROSTER_DATABASE_URL", None)
        (tmp_path / "prefect").mkdir()
        yield Site(env, proxy, killer, upstream, cli_env, tmp_path)


@pytest.mark.timeout(1200)
def test_kill_9_during_apply_then_sync_again_loses_and_duplicates_nothing(site: Site) -> None:
    rng = random.Random(SEED)
    directory = Directory.initial(PEOPLE, SEED)
    started = time.monotonic()
    for trial in range(1, TRIALS + 1):
        if trial > 1:
            directory.evolve(**CHURN)
        site.env.import_people(directory.rows())
        site.trials.append(run_trial(site, directory, trial, leave=trial % 2 == 0, rng=rng))
    seconds = time.monotonic() - started

    write_report(
        "crash_safety",
        {"people": len(directory.people), "trials": site.trials, "seconds": round(seconds, 1)},
    )
    assert len(site.trials) == TRIALS
    # a kill mid-batch always leaves that batch's intents pending: they were written first
    assert all(t["pending_at_kill"] >= 1 for t in site.trials), site.trials
    assert sum(t["made_by_killed_run"] for t in site.trials) > TRIALS
    assert sum(t["left_before_rerun"] for t in site.trials) > 0


def run_trial(
    site: Site, directory: Directory, trial: int, *, leave: bool, rng: random.Random
) -> dict[str, Any]:
    """One kill and one recovery, checked on the server; returns the trial's figures."""
    # Each create, update and deactivation is at least one write; the first app's creates
    # go first. Trials that make people leave kill among those, so some are unconfirmed.
    planned = {
        a: r["summary"]
        for a, r in sync(config_path=site.env.config_path, dry_run=True)["apps"].items()
    }
    writes = sum(s[k] for s in planned.values() for k in ("created", "updated", "deactivated"))
    target = rng.randint(1, planned[APPS[0]]["created"] if leave else writes)
    before = {app: {u["id"] for u in server_users(site.upstream, app)} for app in APPS}

    killed_run = kill_sync_at(site, target, trial)

    made = {
        app: [u for u in server_users(site.upstream, app) if u["id"] not in before[app]]
        for app in APPS
    }
    actions = site.env.store.read_actions(killed_run)
    check_intents_came_first(actions, made, site.killer.writes)
    pending = actions[actions["outcome"] == "pending"]
    left = leave_before_rerun(site, directory, made, pending, rng) if leave else []

    recovery = sync(config_path=site.env.config_path)

    assert {a: r["status"] for a, r in recovery["apps"].items()} == dict.fromkeys(APPS, "ok")
    check_adopted(site, made, recovery["run_id"])
    config = load_config(site.env.config_path)
    censuses = {
        app.name: take_census(site.env.store, app, server_users(site.upstream, app.name))
        for app in config.apps
    }
    broken = total(censuses)
    assert broken == dict.fromkeys(broken, 0), {a: vars(c) for a, c in censuses.items()}
    return {
        "trial": trial,
        "planned_writes": writes,
        "killed_at_write": target,
        "made_by_killed_run": sum(len(m) for m in made.values()),
        "pending_at_kill": len(pending),
        "left_before_rerun": len(left),
        "recovery": {a: r["summary"] for a, r in recovery["apps"].items()},
    }


def kill_sync_at(site: Site, target: int, trial: int) -> str:
    """``roster sync`` in its own process group, SIGKILLed at the ``target``-th write;
    returns the killed run's id (the latest sync run in the store)."""
    log = site.logs / f"sync-{trial}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "roster"), "sync"],
            env=site.cli_env,
            cwd=site.logs,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    site.killer.arm(proc.pid, target)
    try:
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        site.killer.settle()  # writes already in flight land (or not) before recording stops
        site.killer.disarm()
    assert site.killer.killed.is_set(), f"exited {code} before write {target}:\n{tail(log)}"
    assert code == -signal.SIGKILL
    wait_for_group_gone(proc.pid)
    assert TOKEN not in log.read_text(errors="replace")
    run = site.env.store.latest_run("sync")
    assert run is not None and run["finished_at"] is None  # it really died mid-run
    return str(run["run_id"])


def wait_for_group_gone(pgid: int, timeout: float = 10) -> None:
    """The temporary Prefect server was in the group: it must be gone too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process group {pgid} outlived SIGKILL")


def check_intents_came_first(
    actions: pd.DataFrame, made: dict[str, list[dict]], writes: list[tuple[str, str, float]]
) -> None:
    """The killed run logged an intent before each of its writes: a create intent before
    the app created each account (by the app's own meta.created), and an intent naming the
    account before the app answered each other write."""
    for app, accounts in made.items():
        creates = actions[(actions["app"] == app) & (actions["action"] == "create")]
        logged = creates.groupby(creates["user_name"].str.lower())["created_at"].min()
        for account in accounts:
            name = account["userName"].lower()
            assert name in logged, f"{app}: {name} was created with no intent logged"
            created = datetime.fromisoformat(account["meta"]["created"].replace("Z", "+00:00"))
            assert logged[name].to_pydatetime() <= created.astimezone(UTC), name
    first = actions.groupby(["app", "remote_id"])["created_at"].min()
    others = [(m, p, t) for m, p, t in writes if m != "POST"]
    for method, path, answered in others:
        app, remote_id = path.split("/")[1], path.rsplit("/", 1)[1]
        assert (app, remote_id) in first.index, f"{method} {path}: no intent logged"
        assert first[(app, remote_id)].timestamp() <= answered, f"{method} {path}"
    assert len(writes) >= len(others) + sum(len(a) for a in made.values())


def leave_before_rerun(
    site: Site,
    directory: Directory,
    made: dict[str, list[dict]],
    pending: pd.DataFrame,
    rng: random.Random,
) -> list[str]:
    """Some people whose accounts the killed run made, unconfirmed, leave the company."""
    unconfirmed = {u["userName"].lower() for accounts in made.values() for u in accounts}
    unconfirmed &= set(pending["user_name"].str.lower())
    leavers = rng.sample(sorted(unconfirmed), min(2, len(unconfirmed)))
    for name in leavers:
        directory.people[name]["active"] = "false"
    site.env.import_people(directory.rows())
    return leavers


def check_adopted(site: Site, made: dict[str, list[dict]], recovery_run: str) -> None:
    """The accounts the killed run made are linked by id, and the next run created none of
    them again (its creates are for other people only)."""
    created_again = site.env.store.read_actions(recovery_run)
    created_again = created_again[created_again["action"] == "create"]
    for app, accounts in made.items():
        links = site.env.store.read_links(app)
        users = site.env.store.read_users().set_index("user_id")["user_name"].str.lower()
        linked = dict(zip(links["user_id"].map(users), links["remote_id"], strict=True))
        again = set(created_again.loc[created_again["app"] == app, "user_name"].str.lower())
        for account in accounts:
            name = account["userName"].lower()
            assert linked.get(name) == account["id"], f"{app}: {name} not adopted"
            assert name not in again, f"{app}: {name} created twice"
