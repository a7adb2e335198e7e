"""Many apps: one sync with its apps one at a time against N at once, and the ``sync-app``
deployment run by 1 process worker against 2, on scim2-server tenants.

Every contender starts from fresh tenants and a fresh directory (SQLite), then makes an
initial sync (creates) and a no-op resync, against one Prefect server (``prefect server
start``, started once, untimed). Apps are spread over ``--servers`` scim2-server processes
(default: one per app; one process is single-threaded, so a few tenants each share a CPU).

a. in-flow: the ``sync`` flow called in this process with ``parallel_apps`` 1, then N.
b. workers: ``sync-app`` deployed to a ``process`` work pool; one flow run per app
   created at once; 1 worker, then 2 (``prefect worker start --limit L`` each). Each run
   is a new process (2-4 s of Prefect start-up), as in production.

Printed per contender: wall time, the ratio to the first contender of its kind,
task-seconds per phase (extract, plan, apply, report; from the task runs the Prefect
server recorded) and CPU seconds of the scim2-server processes, Roster (this process, or
the workers with their finished flow-run children) and the Prefect server. Checks come
from the servers: every app holds every account, and the resync wrote nothing.

    python -m bench.workers [--apps 20] [--users 5000] [--servers 20] [--parallel 4]
                            [--worker-limit 1] [--only inflow|workers]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import ScimServer, list_users, machine, raw_client
from bench.sync import people, write_csv

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN_ENV = "ROSTER_BENCH_TOKEN"
#: task function -> phase, matched in the task run's task_key
PHASES = {
    "extract_directory": "directory",
    "extract_app": "extract",
    "plan_app": "plan",
    "apply_batch": "apply",
    "publish_report": "report",
}


@dataclass
class Outcome:
    name: str
    wall: float
    phases: dict[str, float]
    cpu: dict[str, float]
    checks: list[tuple[str, bool]] = field(default_factory=list)


# -- the site -------------------------------------------------------------------------------


@contextlib.contextmanager
def scim_servers(apps: list[str], count: int, token: str, logs: Path) -> Iterator[dict[str, Any]]:
    """``count`` scim2-server processes with the apps dealt round-robin; yields
    app -> ScimServer."""
    from bench.common import scim_server

    groups = [apps[i::count] for i in range(count)]
    with contextlib.ExitStack() as stack:
        by_app: dict[str, ScimServer] = {}
        for n, group in enumerate(g for g in groups if g):
            server = stack.enter_context(scim_server(group, token, logs / f"scim{n}.log"))
            by_app.update(dict.fromkeys(group, server))
        yield by_app


def write_site(root: Path, apps: list[str], servers: dict[str, ScimServer], users: int) -> Path:
    """roster.yaml and a fresh directory of ``users`` people assigned every app."""
    from directory.config import Safety
    from directory.importer import import_csv
    from directory.store import Store

    root.mkdir(parents=True, exist_ok=True)
    rows = [{**row, "apps": ";".join(apps)} for row in people(users)]
    write_csv(root / "people.csv", rows)
    database = f"sqlite:///{root / 'roster.db'}"
    store = Store(database)
    try:
        import_csv(store, root / "people.csv", safety=Safety(), force=True)
    finally:
        store.dispose()
    config = {
        "database_url": database,
        "apps": [
            {"name": a, "connector": "scim", "base_url": servers[a].base_url(a),
             "token_env": TOKEN_ENV}
            for a in apps
        ],
    }  # fmt: skip
    (root / "roster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root / "roster.yaml"


def check_accounts(
    servers: dict[str, ScimServer], token: str, users: int, outcome: Outcome
) -> dict[str, int]:
    """Every app holds exactly ``users`` accounts; returns each server's log mark."""
    counts = {}
    for app, server in servers.items():
        with raw_client(server.base_url(app), token, 4) as client:
            counts[app] = len(list_users(client, 500))
    outcome.checks.append((f"every app holds {users} accounts", set(counts.values()) == {users}))
    return {server.root: server.mark() for server in servers.values()}


def check_no_writes(
    servers: dict[str, ScimServer], marks: dict[str, int], outcome: Outcome
) -> None:
    writes = sum(
        s.writes_since(marks[s.root]) for s in {s.root: s for s in servers.values()}.values()
    )
    outcome.checks.append((f"resync wrote nothing (server logs: {writes} writes)", writes == 0))


# -- measuring -----------------------------------------------------------------------------


class Meter:
    """CPU seconds of the scim2-servers, the Prefect server and Roster's processes."""

    def __init__(self, scim: list[int], prefect: int, roster: list[int]) -> None:
        self.pids = {"scim2-server": scim, "Prefect server": [prefect], "Roster": roster}
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        now = {k: sum(_cpu_with_children(p) for p in pids) for k, pids in self.pids.items()}
        if not self.pids["Roster"]:  # in-flow: this process
            now["Roster"] = time.process_time()
        return now

    def read(self) -> dict[str, float]:
        end = self._now()
        return {k: end[k] - self.start[k] for k in end}


def _cpu_with_children(pid: int) -> float:
    """utime + stime + the waited-for children's (a worker reaps its flow-run processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def phase_seconds(api_url: str, flow_run_ids: list[str]) -> dict[str, float]:
    """Task-seconds per phase over the given flow runs, once the server has recorded them
    all (it records task runs in batches, seconds behind)."""
    last: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(2)
        now = _phase_seconds(api_url, flow_run_ids)
        if now and now == last:
            return now
        last = now
    return last


def _phase_seconds(api_url: str, flow_run_ids: list[str]) -> dict[str, float]:
    import httpx

    totals: dict[str, float] = defaultdict(float)
    offset = 0
    while True:
        body = {
            "flow_runs": {"id": {"any_": flow_run_ids}},
            "limit": 200,
            "offset": offset,
        }
        answer = httpx.post(f"{api_url}/task_runs/filter", json=body, timeout=30)
        if answer.status_code == 503:
            continue
        runs = answer.json()
        for run in runs:
            for key, phase in PHASES.items():
                if run["task_key"].startswith(key):
                    totals[phase] += float(run.get("total_run_time") or 0)
        if len(runs) < 200:
            return dict(totals)
        offset += 200


# -- a. in-flow -----------------------------------------------------------------------------


def in_flow(config: Path, parallel: int, api_url: str, meter: Meter, label: str) -> Outcome:
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    from flows.sync import sync

    started = time.perf_counter()
    # Prefect read its settings at import, before the server's URL was known
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_API_URL: api_url}):
        state = sync(config_path=str(config), parallel_apps=parallel, return_state=True)
    wall = time.perf_counter() - started
    cpu = meter.read()
    result = state.result()
    flow_run_id = str(state.state_details.flow_run_id)
    outcome = Outcome(label, wall, phase_seconds(api_url, [flow_run_id]), cpu)
    failing = [a for a, r in result["apps"].items() if r.get("status") != "ok"]
    outcome.checks.append((f"every app ok ({failing or 'none failing'})", not failing))
    return outcome


# -- b. workers -----------------------------------------------------------------------------


def deploy(env: dict[str, str]) -> None:
    def prefect(*args: str) -> None:
        subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO, check=True,
                       capture_output=True)  # fmt: skip

    prefect("work-pool", "create", "roster", "--type", "process", "--overwrite")
    prefect("--no-prompt", "deploy", "--name", "sync-app")


@contextlib.contextmanager
def workers(count: int, limit: int, env: dict[str, str], logs: Path) -> Iterator[list[int]]:
    from tests.service_support import stop_process

    procs = []
    for n in range(count):
        args = [str(BIN / "prefect"), "worker", "start", "--pool", "roster", "--type",
                "process", "--limit", str(limit), "--name", f"bench-worker-{n}"]  # fmt: skip
        with (logs / f"worker{n}.log").open("wb") as out:
            procs.append(subprocess.Popen(args, env=env, cwd=REPO, stdout=out,
                                          stderr=subprocess.STDOUT))  # fmt: skip
    try:
        time.sleep(5)  # registered and polling
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            stop_process(proc)


def run_deployed(apps: list[str], config: Path, api_url: str, label: str, meter: Meter) -> Outcome:
    """One ``sync-app`` run per app, created at once; wall time until all are done."""
    import httpx

    deployment = httpx.get(f"{api_url}/deployments/name/sync-app/sync-app", timeout=10).json()
    started = time.perf_counter()
    ids = []
    for app in apps:
        body = {"parameters": {"app": app, "config_path": str(config)}}
        url = f"{api_url}/deployments/{deployment['id']}/create_flow_run"
        for _ in range(10):  # a busy server's SQLite answers 503 now and then
            run = httpx.post(url, json=body, timeout=30)
            if run.status_code != 503:
                break
            time.sleep(1)
        if run.status_code >= 300:
            raise RuntimeError(f"create_flow_run: {run.status_code} {run.text[:500]}")
        ids.append(run.json()["id"])
    while True:
        answer = httpx.post(
            f"{api_url}/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}, timeout=30
        )
        if answer.status_code == 503:
            continue
        runs = answer.json()
        if all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
            break
        time.sleep(0.5)
    wall = time.perf_counter() - started
    cpu = meter.read()
    phases = phase_seconds(api_url, ids)
    # where a deployed run's time goes before its flow code runs: the worker's poll and
    # the new process's start-up, until Prefect marks it Running
    waits = [_seconds(r["start_time"]) - _seconds(r["created"]) for r in runs if r["start_time"]]
    phases["(flow runs: running)"] = sum(float(r["total_run_time"] or 0) for r in runs)
    phases["(flow runs: created to running, mean)"] = sum(waits) / max(1, len(waits))
    outcome = Outcome(label, wall, phases, cpu)
    bad = [r["state_type"] for r in runs if r["state_type"] != "COMPLETED"]
    outcome.checks.append((f"every run completed ({bad or 'all'})", not bad))
    return outcome


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


# -- the bench -----------------------------------------------------------------------------


def bench(args: argparse.Namespace, root: Path) -> list[Outcome]:
    from tests.service_support import prefect_env, prefect_server

    token = secrets.token_urlsafe(16)
    os.environ[TOKEN_ENV] = token
    os.environ["ROSTER_HOME"] = str(root)
    os.environ.pop("ROSTER_DATABASE_URL", None)
    apps = [f"app{n:02d}" for n in range(args.apps)]
    outcomes: list[Outcome] = []
    with prefect_server(root / "prefect-server") as server:
        api = server.api_url
        os.environ.update(prefect_env(root / "prefect-client", api))
        client_env = {**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1"}
        contenders: list[tuple[str, Any]] = []
        if args.only in (None, "inflow"):
            contenders += [
                (f"in-flow, parallel_apps={p}", ("inflow", p)) for p in (1, args.parallel)
            ]
        if args.only in (None, "workers"):
            deploy(client_env)
            contenders += [(f"{w} worker(s), limit {args.worker_limit}", ("workers", w))
                           for w in (1, 2)]  # fmt: skip
        for n, (label, (kind, size)) in enumerate(contenders):
            site = root / f"site{n}"
            logs = site / "logs"
            logs.mkdir(parents=True)
            with scim_servers(apps, args.servers, token, logs) as servers:
                config = write_site(site, apps, servers, args.users)
                scim_pids = sorted({s.pid for s in servers.values()})
                with contextlib.ExitStack() as stack:
                    roster_pids: list[int] = []
                    if kind == "workers":
                        roster_pids = stack.enter_context(
                            workers(size, args.worker_limit, client_env, logs)
                        )
                    for phase in ("initial", "resync"):
                        meter = Meter(scim_pids, _server_pid(server), roster_pids)
                        name = f"{label}: {phase}"
                        if kind == "inflow":
                            outcome = in_flow(config, size, api, meter, name)
                        else:
                            outcome = run_deployed(apps, config, api, name, meter)
                        if phase == "initial":
                            marks = check_accounts(servers, token, args.users, outcome)
                        else:
                            check_no_writes(servers, marks, outcome)
                        outcomes.append(outcome)
                        print(_line(outcome), flush=True)
    return outcomes


def _server_pid(server: Any) -> int:
    """The ``prefect server start`` process serving ``server``'s port."""
    port = server.api_url.rsplit(":", 1)[1].split("/")[0]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if b"server" in args and b"start" in args and port.encode() in args:
                return int(cmdline.parent.name)
    raise RuntimeError("the Prefect server process is gone")


def _line(o: Outcome) -> str:
    phases = ", ".join(f"{k} {v:.1f}" for k, v in sorted(o.phases.items()))
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in o.cpu.items())
    bad = [name for name, ok in o.checks if not ok]
    return (f"{o.name}: {o.wall:.1f} s | task-s: {phases} | CPU s: {cpu}"
            f" | checks {'FAILED: ' + '; '.join(bad) if bad else 'ok'}")  # fmt: skip


def report(args: argparse.Namespace, outcomes: list[Outcome], started: str) -> None:
    print(f"\nbench.workers: {args.apps} apps x {args.users:,} users, {args.servers} scim2-server"
          f" process(es)")  # fmt: skip
    print(f"machine at start: {started}; at end: {machine()}")
    by_phase: dict[str, dict[str, Outcome]] = defaultdict(dict)
    for o in outcomes:
        label, phase = o.name.rsplit(": ", 1)
        by_phase[phase][label] = o
    for phase, contenders in by_phase.items():
        labels = list(contenders)
        for first, second in zip(labels[::2], labels[1::2], strict=False):
            a, b = contenders[first], contenders[second]
            print(f"  {phase}: {first} {a.wall:.1f} s / {second} {b.wall:.1f} s ="
                  f" ratio {a.wall / b.wall:.2f}")  # fmt: skip
    failed = [(o.name, n) for o in outcomes for n, ok in o.checks if not ok]
    print(f"checks: {failed or 'all passed'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--servers", type=int, default=None, help="default: one per app")
    parser.add_argument("--parallel", type=int, default=4, help="parallel_apps against 1")
    parser.add_argument("--worker-limit", type=int, default=1, help="runs per worker at once")
    parser.add_argument("--only", choices=["inflow", "workers"], default=None)
    args = parser.parse_args(argv)
    args.servers = args.servers or args.apps
    started = machine()
    with tempfile.TemporaryDirectory(prefix="roster-bench-workers-") as tmp:
        outcomes = bench(args, Path(tmp))
    report(args, outcomes, started)
    return 0 if all(ok for o in outcomes for _, ok in o.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
