"""Where Roster's own time goes in an initial sync and a no-op sync, and what Prefect costs.

Against a real ``scim2-server`` process and a SQLite store of N people (``bench.sync``'s
directory: ten reports per manager), with a Prefect test server up and warmed:

1. **Prefect overhead per account.** The same sync twice over, each on a fresh server
   tenant and a fresh store: once as the ``sync`` flow (tasks as task runs), once with
   the flow's tasks replaced by their functions (``Task.fn``: no task runs, no flow run;
   the artifacts still go to the server). Both an initial sync (N creates) and a no-op
   resync. Prefect costs something per run (the flow run, a dozen task runs, about a
   second) and something per account: the flow - direct difference of a sync of
   ``SMALL`` people is the first, and the rest of the difference at N, over the N -
   ``SMALL`` further accounts, the second; target under 0.5 ms. (flow - direct) / N,
   which mixes the two, is printed too.
2. **Client CPU against the server's.** CPU seconds of this process (Roster) and of the
   scim2-server process during each sync, per account (``bench.common.CpuMeter``).
3. **Profiles** (``--profile``): the initial sync and the no-op flow under pyinstrument at
   concurrency 1 (so the accounts' work is on the profiled main thread), and the top costs
   by Roster function: each sample goes to the innermost frame of Roster's own code
   (``connectors``, ``directory``, ``tasks``, ``flows``) on its stack, so a library's
   time is charged to the Roster line that called it.

    python -m bench.profile [--users 5000] [--concurrency 4] [--rounds 1] [--profile] [--top 25]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import CpuMeter, CpuUse, ScimServer, machine, scim_server
from bench.sync import (
    APP,
    import_people,
    people,
    prefect_running,
    prepare_environment,
    write_config,
    write_csv,
)

ROOT = Path(__file__).resolve().parent.parent
ROSTER_PACKAGES = ("connectors", "directory", "tasks", "flows", "cli")
TARGET_PREFECT_MS = 0.5
#: the size of the sync whose flow - direct difference is Prefect's cost per run (the flow
#: run, its task runs, artifacts): the rest of the difference at N is its cost per account
SMALL = 30
#: the Prefect tasks ``flows.sync`` calls, by the name it imports them under
FLOW_TASKS = ("extract_directory", "extract_app", "plan_app", "apply_batch", "publish_report")


# -- the two ways to run a sync -----------------------------------------------------------------


def run_flow(config: Path) -> dict[str, Any]:
    from flows.sync import sync

    return sync(app=APP, config_path=str(config))


def run_direct(config: Path) -> dict[str, Any]:
    """The flow's body with every task called as its function: what Roster costs without
    Prefect's task runs and flow run."""
    import flows.sync as module

    saved = {name: getattr(module, name) for name in FLOW_TASKS}
    try:
        # the report and progress artifacts go to the server without a run to belong to
        warnings.filterwarnings("ignore", "Artifact creation outside", FutureWarning)
        for name, task in saved.items():
            setattr(module, name, _direct(task))
        return module.sync.fn(app=APP, config_path=str(config))
    finally:
        for name, task in saved.items():
            setattr(module, name, task)


def _direct(task: Any) -> Callable[..., Any]:
    """``task.fn`` with Prefect's calling conventions kept: ``quote()`` arguments unwrapped,
    ``return_state=True`` answered with a Completed or Failed state."""
    from prefect.states import Completed, Failed
    from prefect.utilities.annotations import BaseAnnotation

    def plain(value: Any) -> Any:
        return value.unwrap() if isinstance(value, BaseAnnotation) else value

    def call(*args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        args = tuple(plain(a) for a in args)
        kwargs = {k: plain(v) for k, v in kwargs.items()}
        if not return_state:
            return task.fn(*args, **kwargs)
        try:
            return Completed(data=task.fn(*args, **kwargs))
        except Exception as exc:
            return Failed(data=exc)

    return call


# -- one measured sync --------------------------------------------------------------------------


class Setup:
    """A fresh store (SQLite) holding N people assigned to the app, and a config for it."""

    def __init__(self, root: Path, users: int, server: ScimServer, concurrency: int) -> None:
        root.mkdir(parents=True)
        csv_path, database = root / "people.csv", root / "roster.db"
        write_csv(csv_path, people(users))
        import_people(csv_path, database)
        self.config = root / "roster.yaml"
        write_config(self.config, database, server.base_url(APP), concurrency)


def measured(
    label: str, run: Callable[[], dict[str, Any]], server: ScimServer, users: int
) -> dict[str, Any]:
    mark = server.mark()
    meter = CpuMeter(server, [server])
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    cpu = meter.read()
    time.sleep(0.5)  # the server logs a request after answering it
    methods = server.requests_since(mark)
    summary = result["apps"][APP]["summary"]
    print(
        f"  {label:22} {seconds:7.2f} s  {_per(cpu.client, users)} client CPU/account,"
        f" {_per(cpu.server, users)} scim2-server CPU/account, Prefect server"
        f" {cpu.prefect:.1f} s; requests {dict(methods)}",
        flush=True,
    )
    return {"seconds": seconds, "cpu": cpu, "summary": summary, "methods": methods}


def _per(seconds: float, users: int) -> str:
    return f"{seconds / users * 1000:6.3f} ms"


# -- profiles -----------------------------------------------------------------------------------


def profiled(label: str, run: Callable[[], Any], top: int) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    run()
    session = profiler.stop()
    frame = session.root_frame()
    print(f"\n{label}: {session.duration:.1f} s wall, {session.cpu_time:.1f} s CPU (main thread)")
    if frame is None:
        return
    costs: Counter[str] = Counter()
    _charge(frame, None, costs)
    roster = sum(seconds for where, seconds in costs.items() if where != "(outside Roster)")
    print(f"  charged to Roster functions: {roster:.1f} s; top {top}:")
    for where, seconds in costs.most_common(top):
        print(f"  {seconds:7.2f} s  {where}")


def _charge(frame: Any, owner: str | None, costs: Counter[str]) -> None:
    """Each frame's own time goes to the innermost Roster function above it."""
    here = _roster_function(frame) or owner
    own = frame.time - sum(child.time for child in frame.children)
    costs[here or "(outside Roster)"] += own
    for child in frame.children:
        _charge(child, here, costs)


def _roster_function(frame: Any) -> str | None:
    path = frame.file_path or ""
    try:
        relative = Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return None
    if not relative.parts or relative.parts[0] not in ROSTER_PACKAGES:
        return None
    return f"{relative}:{frame.function}"


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def tenant_server(root: Path, name: str, token: str) -> Iterator[ScimServer]:
    with scim_server([APP], token, root / f"{name}.log") as server:
        yield server


def compare(root: Path, token: str, users: int, concurrency: int, rounds: int = 1) -> list[str]:
    """Flow and direct, initial and no-op, each on its own server and store; then raw
    httpx. With ``rounds`` > 1 the three alternate (flow first, then direct first, ...)
    and every figure is the median over the rounds: on a shared machine one run's CPU
    per account moves by 10-20%, and the flow - direct difference is small beside it."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        way: {"initial": [], "no-op": []} for way in ("flow", "direct")
    }
    small: dict[str, dict[str, list[dict[str, Any]]]] = {
        way: {"initial": [], "no-op": []} for way in ("flow", "direct")
    }
    raws: dict[str, list[CpuUse]] = {"initial": [], "no-op": []}
    for number in range(rounds):
        ways = [("flow", run_flow), ("direct", run_direct)]
        for way, run in ways if number % 2 == 0 else ways[::-1]:
            print(f"{way} (round {number + 1} of {rounds}):", flush=True)
            for size, into in ((SMALL, small), (users, runs)):
                tag = f"{way}-{number}-{size}"
                with tenant_server(root, tag, token) as server:
                    setup = Setup(root / tag, size, server, concurrency)
                    for kind in ("initial", "no-op"):
                        label = f"{way} {kind} ({size})"
                        into[way][kind].append(
                            measured(label, partial(run, setup.config), server, size)
                        )
        (root / f"raw-{number}").mkdir()
        raw = measure_raw(root / f"raw-{number}", token, users, concurrency)
        for kind in raws:
            raws[kind].append(raw[kind])
    failures = []
    for way, kinds in runs.items():
        for initial in kinds["initial"]:
            if initial["methods"].get("POST") != users:
                failures.append(f"{way}: {initial['methods']} POSTs, expected {users}")
        for noop in kinds["no-op"]:
            writes = sum(n for m, n in noop["methods"].items() if m != "GET")
            if writes or noop["summary"]["unchanged"] != users:
                failures.append(f"{way} no-op: {writes} writes, {noop['summary']}")
    medians = {
        way: {kind: _median_run(r) for kind, r in kinds.items()} for way, kinds in runs.items()
    }
    raw_median = {kind: _median_cpu(cpus) for kind, cpus in raws.items()}
    of = f" (medians of {rounds} rounds)" if rounds > 1 else ""
    print(f"\nPrefect overhead = flow - direct{of}:")
    for kind in ("initial", "no-op"):
        flow, direct = medians["flow"][kind], medians["direct"][kind]
        fixed_wall = _median_difference(small, kind, lambda r: r["seconds"])
        fixed_cpu = _median_difference(small, kind, lambda r: _roster_cpu(r["cpu"]))
        wall = (flow["seconds"] - direct["seconds"] - fixed_wall) / (users - SMALL) * 1000
        cpu = (
            (_roster_cpu(flow["cpu"]) - _roster_cpu(direct["cpu"]) - fixed_cpu)
            / (users - SMALL)
            * 1000
        )
        verdict = "met" if wall < TARGET_PREFECT_MS else "MISSED"
        print(
            f"  {kind:8} per run (a sync of {SMALL}): {fixed_wall:+.2f} s wall,"
            f" {fixed_cpu:+.2f} s CPU; per further account: {wall:+.3f} ms wall"
            f" (target < {TARGET_PREFECT_MS} ms: {verdict}), {cpu:+.3f} ms CPU"
            f" (this process + Prefect server); over {users}: "
            f"{(flow['seconds'] - direct['seconds']) / users * 1000:+.3f} ms wall per account"
        )
    print(f"\nRoster's client CPU per account against scim2-server's{of}:")
    for way in ("flow", "direct"):
        for kind in ("initial", "no-op"):
            cpu = medians[way][kind]["cpu"]
            print(
                f"  {way:6} {kind:8} client {_per(cpu.client, users)},"
                f" server {_per(cpu.server, users)}, ratio {cpu.client / cpu.server:.2f}"
            )
    for kind in ("initial", "no-op"):
        cpu = raw_median[kind]
        print(
            f"  raw httpx {kind:8} client {_per(cpu.client, users)},"
            f" server {_per(cpu.server, users)}, ratio {cpu.client / cpu.server:.2f}"
        )
    if rounds > 1:
        print("  ratios by round (flow initial, direct initial, raw initial):")
        for number in range(rounds):
            flow_cpu = runs["flow"]["initial"][number]["cpu"]
            direct_cpu = runs["direct"]["initial"][number]["cpu"]
            raw_cpu = raws["initial"][number]
            print(
                f"    {number + 1}: {flow_cpu.client / flow_cpu.server:.2f},"
                f" {direct_cpu.client / direct_cpu.server:.2f},"
                f" {raw_cpu.client / raw_cpu.server:.2f}"
            )
    return failures


def _median_difference(
    runs: dict[str, dict[str, list[dict[str, Any]]]], kind: str, value: Callable[[Any], float]
) -> float:
    """The median over rounds of flow - direct, for one kind of sync."""
    pairs = zip(runs["flow"][kind], runs["direct"][kind], strict=True)
    return statistics.median(value(flow) - value(direct) for flow, direct in pairs)


def _median_cpu(cpus: list[CpuUse]) -> CpuUse:
    return CpuUse(
        statistics.median(c.client for c in cpus),
        statistics.median(c.server for c in cpus),
        statistics.median(c.prefect for c in cpus),
    )


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "cpu": _median_cpu([r["cpu"] for r in runs]),
    }


def measure_raw(root: Path, token: str, users: int, concurrency: int) -> dict[str, CpuUse]:
    """The floor: a hand-written httpx loop POSTing the same bodies (``bench.sync``'s raw
    contender), then one paginated listing, on a fresh server: what the HTTP client alone
    costs per account."""
    from bench.common import desired_levels, list_users, raw_client, raw_create
    from directory.store import Store

    with tenant_server(root, "raw", token) as server:
        setup = Setup(root / "raw", users, server, concurrency)
        store = Store(f"sqlite:///{root / 'raw' / 'roster.db'}")
        levels = desired_levels(store, setup.config, APP)
        store.dispose()
        client = raw_client(server.base_url(APP), token, concurrency)
        meter = CpuMeter(server, [server])
        created = raw_create(client, levels, concurrency)
        initial = meter.read()
        meter = CpuMeter(server, [server])
        listed = len(list_users(client, 500))
        listing = meter.read()
        client.close()
    print(f"raw httpx: {created} POSTed, {listed} listed; initial {initial}; listing {listing}")
    return {"initial": initial, "no-op": listing}


def _roster_cpu(cpu: CpuUse) -> float:
    return cpu.client + cpu.prefect


def profile_flows(root: Path, token: str, users: int, top: int) -> None:
    with tenant_server(root, "profile", token) as server:
        setup = Setup(root / "profile", users, server, concurrency=1)
        profiled("profile: initial sync flow (concurrency 1)", lambda: run_flow(setup.config), top)
        profiled("profile: no-op sync flow", lambda: run_flow(setup.config), top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="also profile with pyinstrument")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate flow, direct and raw; report medians"
    )
    args = parser.parse_args(argv)
    print(f"bench.profile: {args.users:,} users, concurrency {args.concurrency}; {machine()}")
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="roster-profile-") as tmp:
        root = Path(tmp)
        prepare_environment(root, token)
        with prefect_running() as ready:
            print(f"Prefect test server ready in {ready:.1f} s", flush=True)
            failures = compare(root, token, args.users, args.concurrency, args.rounds)
            if args.profile:
                profile_flows(root, token, args.users, args.top)
    print(f"\nend: {machine()}")
    for failure in failures:
        print(f"CHECK FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
