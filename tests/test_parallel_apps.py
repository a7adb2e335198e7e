"""Apps side by side in one sync: the limit holds, results are those of a one-by-one run,
one app's failure blocks no other, and the Dask task runner syncs real scim2-server
tenants from worker processes."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from prefect import flow, task

from directory.config import ConfigError, parse_config
from directory.store import Store
from flows.sync import PortableRun, sync
from tasks import session
from tasks.fanout import RunnerKind, app_task_runner, fan_out
from tests.scim_apps import TOKEN, InProcessScim, standalone_scim
from tests.service_support import PrefectServer
from tests.sync_env import Installation, people

REPO = Path(__file__).resolve().parents[1]
APPS = ["chat", "wiki", "crm", "hr"]


class InFlight:
    """WSGI in front of the in-process scim2-server: counts how many apps have a request
    in flight at the same moment. Each request takes at least 20 ms, so apps that run
    side by side overlap, and apps run one after another never do."""

    def __init__(self, scim: InProcessScim) -> None:
        self.scim = scim
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.most_apps = 0

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        tenant = environ["PATH_INFO"].split("/")[1]
        with self.lock:
            self.now[tenant] += 1
            self.most_apps = max(self.most_apps, sum(1 for n in self.now.values() if n))
        try:
            time.sleep(0.02)
            return list(self.scim.app(environ, start_response))
        finally:
            with self.lock:
                self.now[tenant] -= 1

    def route(self, apps: list[str]) -> None:
        for app in apps:
            session.TRANSPORTS[app] = httpx.WSGITransport(app=self.app)  # type: ignore[arg-type]


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    env = make_installation(APPS)
    env.import_people(people(30, apps=";".join(APPS)))
    return env


def _created(result: dict[str, Any]) -> dict[str, int]:
    return {name: a["summary"]["created"] for name, a in result["apps"].items()}


def test_apps_run_side_by_side_up_to_the_limit(env: Installation) -> None:
    flight = InFlight(env.scim)
    flight.route(APPS)
    result = sync(config_path=env.config_path, parallel_apps=2)
    assert _created(result) == dict.fromkeys(APPS, 30)
    assert list(result["apps"]) == APPS  # config order, whoever finished first
    assert flight.most_apps == 2
    assert all(len(env.accounts(app)) == 30 for app in APPS)


def test_one_at_a_time_never_overlaps_and_a_resync_writes_nothing(env: Installation) -> None:
    flight = InFlight(env.scim)
    flight.route(APPS)
    first = sync(config_path=env.config_path, parallel_apps=1)
    assert flight.most_apps == 1
    writes = env.scim.writes()
    again = sync(config_path=env.config_path)  # roster.yaml's default: 4 at once
    assert 1 < flight.most_apps <= 4  # a resync's few requests may not all overlap
    assert env.scim.writes() == writes
    assert _created(first) == dict.fromkeys(APPS, 30)
    assert {n: a["summary"]["unchanged"] for n, a in again["apps"].items()} == dict.fromkeys(
        APPS, 30
    )


def test_a_failing_app_blocks_no_other(env: Installation, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_TOKEN", "not-the-token")
    env.app_settings["crm"] = {"token_env": "WRONG_TOKEN"}
    env.write_config(parallel_apps=4)
    result = sync(config_path=env.config_path)
    assert result["apps"]["crm"]["status"] == "failed"
    assert "401" in result["apps"]["crm"]["error"] or "token" in result["apps"]["crm"]["error"]
    assert {n: a["status"] for n, a in result["apps"].items() if n != "crm"} == dict.fromkeys(
        ["chat", "wiki", "hr"], "ok"
    )
    assert env.accounts("crm") == {}
    assert all(len(env.accounts(app)) == 30 for app in ("chat", "wiki", "hr"))


def test_one_at_a_time_a_crashing_app_still_lets_the_next_apps_run(
    env: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.sync as sync_module

    real = sync_module.sync_app

    def crash_first(app: Any, run: Any) -> Any:
        if app.name == "chat":
            raise RuntimeError("chat crashed")
        return real(app, run)

    monkeypatch.setattr(sync_module, "sync_app", crash_first)
    with pytest.raises(RuntimeError, match="chat crashed"):
        sync(config_path=env.config_path, parallel_apps=1)
    assert env.accounts("chat") == {}
    assert all(len(env.accounts(app)) == 30 for app in ("wiki", "crm", "hr"))


def test_a_crashing_task_is_raised_only_after_the_others_finished(
    prefect_harness: None,
) -> None:
    finished: list[str] = []

    @task(task_run_name="{name}")
    def work(name: str) -> str:
        if name == "boom":
            raise RuntimeError("boom")
        time.sleep(0.3)
        finished.append(name)
        return name

    @flow
    def fanned() -> list[str]:
        runner = app_task_runner(RunnerKind.THREADS, 3)
        return fan_out(runner, work, ["boom", "a", "b"], lambda n: {"name": n})

    with pytest.raises(RuntimeError, match="boom"):
        fanned()
    assert sorted(finished) == ["a", "b"]


def test_parallel_settings_in_roster_yaml_name_the_field() -> None:
    config = parse_config({"parallel_apps": 8, "task_runner": "dask"})
    assert (config.parallel_apps, config.task_runner) == (8, "dask")
    assert parse_config({}).parallel_apps == 4 and parse_config({}).task_runner == "threads"
    for bad, field in (
        ({"parallel_apps": 0}, "parallel_apps"),
        ({"task_runner": "ray"}, "task_runner"),
        ({"dask_address": "tcp://127.0.0.1:8786"}, "dask_address"),
    ):
        with pytest.raises(ConfigError, match=field):
            parse_config(bad, source="roster.yaml")


# -- Dask ---------------------------------------------------------------------------------


@pytest.fixture
def dask_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """Two tenants on a real scim2-server process, a SQLite directory of 25 people, and a
    roster.yaml asking for Dask on a local cluster of two worker processes: what they get
    must cross as pickles. The cluster is started here once (``dask_address``) rather
    than by each run (prefect-dask's default), which would start it twice."""
    from distributed import LocalCluster

    monkeypatch.setenv("ROSTER_TEST_TOKEN", TOKEN)
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    with (
        standalone_scim(["chat", "wiki"]) as root,
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
    ):
        store = Store(f"sqlite:///{tmp_path / 'roster.db'}")
        env = Installation(tmp_path, InProcessScim(), ["chat", "wiki"], store)
        env.import_people(people(25))
        store.dispose()
        config = {
            "database_url": f"sqlite:///{tmp_path / 'roster.db'}",
            "parallel_apps": 2,
            "task_runner": "dask",
            "dask_address": cluster.scheduler_address,
            "apps": [
                {
                    "name": app,
                    "connector": "scim",
                    "base_url": f"{root}/{app}/v2",
                    "token_env": "ROSTER_TEST_TOKEN",
                }
                for app in ("chat", "wiki")
            ],
        }
        (tmp_path / "roster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        yield tmp_path / "roster.yaml", root


def _listed(root: str, app: str) -> list[str]:
    body = httpx.get(
        f"{root}/{app}/v2/Users",
        params={"count": 1000},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ).json()
    return sorted(u["userName"] for u in body.get("Resources", []))


def test_dask_workers_sync_real_tenants(prefect_harness: None, dask_site: tuple[Path, str]) -> None:
    """Each app task opens its own store and connector in a worker process; the app's
    result and plan come back to the flow."""
    config_path, root = dask_site
    first = sync(config_path=str(config_path))
    assert _created(first) == {"chat": 25, "wiki": 25}
    assert _listed(root, "chat") == _listed(root, "wiki") == [f"user{i:04d}" for i in range(25)]
    again = sync(config_path=str(config_path))
    assert {n: a["summary"]["unchanged"] for n, a in again["apps"].items()} == {
        "chat": 25,
        "wiki": 25,
    }


def test_what_crosses_to_dask_pickles_without_the_store(env: Installation) -> None:
    from flows.sync import SyncRun
    from tasks.health import HealthPolicy

    config = parse_config(yaml.safe_load(Path(env.config_path).read_text()))
    run = SyncRun(
        config=config,
        store=env.store,
        run_id="r1",
        users=env.store.read_users(),
        dry_run=False,
        approve_held=False,
        now=datetime(2026, 1, 1),
        policy=HealthPolicy(quarantine_after=3),
    )
    portable = pickle.loads(pickle.dumps(PortableRun.of(run)))
    assert "store" not in portable.fields
    assert portable.database_url == str(env.store.engine.url.render_as_string(False))
    assert len(portable.fields["users"]) == 30


# -- several workers on one work pool ----------------------------------------------------------


def _deploy_sync_app(env: dict[str, str]) -> None:
    """``make deploy``'s commands, for the ``sync-app`` deployment only (``sync-all`` is
    on a schedule, which has no place in a test)."""
    prefect = str(Path(sys.executable).with_name("prefect"))
    for args in (
        ["work-pool", "create", "roster", "--type", "process"],
        ["--no-prompt", "deploy", "--name", "sync-app"],
    ):
        done = subprocess.run([prefect, *args], env=env, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def _post(server: PrefectServer, path: str, body: dict[str, Any]) -> Any:
    """POST, retried on 503: Prefect's server answers it for errors a client may retry
    (its SQLite busy, on a loaded machine), and Prefect's own client retries too."""
    for _ in range(30):
        response = httpx.post(f"{server.api_url}{path}", json=body, timeout=30)
        if response.status_code != 503:
            response.raise_for_status()
            return response.json()
        time.sleep(1)
    response.raise_for_status()


def _start_runs(server: PrefectServer, params: list[dict[str, Any]]) -> list[str]:
    deployment = server.deployment("sync-app", "sync-app")
    path = f"/deployments/{deployment['id']}/create_flow_run"
    return [str(_post(server, path, {"parameters": p})["id"]) for p in params]


def _finished(server: PrefectServer, ids: list[str]) -> list[dict[str, Any]] | None:
    runs = list(_post(server, "/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}}))
    states = [r["state_type"] for r in runs]
    if any(s in ("FAILED", "CRASHED", "CANCELLED") for s in states):
        raise AssertionError(f"a sync-app run did not complete: {states}")
    return runs if states == ["COMPLETED"] * len(ids) else None


def _running(server: PrefectServer, ids: list[str]) -> list[str] | None:
    """The runs Running right now, once there are two."""
    runs = _post(server, "/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}})
    running = [str(r["id"]) for r in runs if r["state_type"] == "RUNNING"]
    return running if len(running) >= 2 else None


def _taken_by(logs: list[Path], flow_run_id: str) -> list[int]:
    """Which workers (by index) ran the flow run: both may reach for a run, and the
    server lets one have it (the other logs that it aborted its submission)."""
    took = []
    for n, log in enumerate(logs):
        text = log.read_text()
        if f"submitting flow run '{flow_run_id}'" in text and (
            f"Aborted submission of flow run '{flow_run_id}'" not in text
        ):
            took.append(n)
    return took


@pytest.mark.service
@pytest.mark.chaos  # 38 s quiet, 170 s at load 14 on 2 cores: `make chaos` runs it
def test_two_process_workers_share_sync_app_runs_and_the_lock_keeps_one_writer(
    tmp_path: Path,
) -> None:
    """Two ``prefect worker start --pool roster`` processes (one run each at a time) on one
    Prefect server, and three ``sync-app`` runs: chat twice, wiki once. While this test
    holds both apps' locks, two runs are Running at once, one on each worker, both
    waiting for their lock. Released, the two chat runs write one after the other: one
    creates every account, the other finds them done, and nobody has two accounts."""
    from tasks.locks import app_lock, lock_holder
    from tests.service_support import background, make_site, poll, prefect_server

    apps = ["chat", "wiki"]
    with standalone_scim(apps) as scim_root, prefect_server(tmp_path / "server") as server:
        site = make_site(tmp_path / "site", server, scim_root, apps, 150, synced=False)
        env = {**site.env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "INFO"}
        _deploy_sync_app(env)
        logs = [tmp_path / f"worker{n}.log" for n in range(2)]
        command = [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool",
                   "roster", "--type", "process", "--limit", "1"]  # fmt: skip
        store = Store(f"sqlite:///{site.root / 'roster.db'}")
        try:
            with (
                background([*command, "--name", "w0"], env=env, cwd=REPO, log=logs[0]),
                background([*command, "--name", "w1"], env=env, cwd=REPO, log=logs[1]),
            ):
                with (
                    app_lock(store, "chat", lock_holder("test")),
                    app_lock(store, "wiki", lock_holder("test")),
                ):
                    ids = _start_runs(
                        server, [{"app": a, "lock_wait": 300} for a in ("chat", "chat", "wiki")]
                    )
                    both = poll(lambda: _running(server, ids), timeout=240, interval=0.5)
                    assert sorted(n for run_id in both for n in _taken_by(logs, run_id)) == [0, 1]
                poll(lambda: _finished(server, ids), timeout=240, interval=1)
        finally:
            store.dispose()
        for app in apps:
            names = _listed(scim_root, app)
            assert names == sorted(set(names)) and len(names) == 150, app
        created = _created_by_flow_run(site.root / "roster.db")
        assert sorted(created[run_id]["chat"] for run_id in ids[:2]) == [0, 150]
        assert created[ids[2]]["wiki"] == 150


def _created_by_flow_run(database: Path) -> dict[str, dict[str, int]]:
    """Accounts each sync created, per app, from Roster's run records."""
    store = Store(f"sqlite:///{database}")
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT flow_run_id, summary FROM runs WHERE kind = 'sync'")
            ).all()
    finally:
        store.dispose()
    found = {}
    for flow_run_id, summary in rows:
        apps = json.loads(summary) if isinstance(summary, str) else summary
        found[flow_run_id] = {a: r["summary"]["created"] for a, r in apps.items()}
    return found
