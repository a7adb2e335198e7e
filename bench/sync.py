"""Sync benchmark: Roster's sync flow against a raw httpx loop, on real scim2-server processes.

a. Initial sync of N users into an empty app: the ``sync`` flow against a plain
   ``httpx.Client`` + ``ThreadPoolExecutor`` POSTing the same N bodies at the same
   concurrency (managers before their reports, as Roster orders them, so both send the
   manager reference). Each contender gets its own fresh server process.
b. No-op resync of those N: the ``sync`` flow again, against a raw paginated listing
   (GET /Users, startIndex/count, Roster's page size) of the same tenant.

Roster's time is the flow call, with the Prefect server already up (a test server
started once, then a warm-up flow): it includes the directory extract, the app listing,
plan, apply batches, action log writes and report artifacts. Writes are counted by the
server itself, from its access log; the listings also compare every account's
``meta.version`` before and after. Exits 1 when a correctness check fails, not when a
target is missed.

    python -m bench.sync [--users 5000] [--concurrency 4] [--rounds 2] [--resyncs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    MANAGER,
    CpuMeter,
    CpuUse,
    ScimServer,
    desired_levels,
    list_users,
    machine,
    raw_client,
    raw_create,
    scim_server,
    versions,
)
from directory.config import DIRECTORY_FIELDS

APP = "bench"
TOKEN_ENV = "ROSTER_BENCH_TOKEN"
CSV_FIELDS = [f for f in DIRECTORY_FIELDS if f != "user_id"] + ["apps"]
DEPARTMENTS = ("Engineering", "Sales", "Finance", "Support", "Marketing")
TITLES = ("Engineer", "Manager", "Analyst", "Designer")
TARGET_INITIAL = 0.8  # raw time / Roster time, at least
TARGET_RESYNC = 1.5  # Roster time / listing time, at most


Row = tuple[str, str, str]  # what, figure, note


@dataclass
class Results:
    setup: list[Row] = field(default_factory=list)
    initial: list[Row] = field(default_factory=list)
    resync: list[Row] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))

    @property
    def rows(self) -> list[Row]:
        return [*self.setup, *self.initial, *self.resync]

    @property
    def failed(self) -> bool:
        return not all(ok for _, ok, _ in self.checks)


# -- inputs -----------------------------------------------------------------------------------


def people(n: int) -> list[dict[str, str]]:
    """n people in a tree of ten reports per manager (five levels at 5,000)."""
    rows = []
    for i in range(n):
        name = f"user{i:05d}"
        given, family = f"Given{i}", f"Family{i % 997}"
        rows.append(
            {
                "user_name": name,
                "email": f"{name}@example.com",
                "given_name": given,
                "family_name": family,
                "display_name": f"{given} {family}",
                "department": DEPARTMENTS[i % len(DEPARTMENTS)],
                "title": TITLES[i % len(TITLES)],
                "employee_number": f"E{i:05d}",
                "manager": "" if i == 0 else f"user{(i - 1) // 10:05d}",
                "active": "true",
                "apps": APP,
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def write_config(path: Path, database: Path, base_url: str, concurrency: int) -> None:
    app = {
        "name": APP,
        "connector": "scim",
        "base_url": base_url,
        "token_env": TOKEN_ENV,
        "concurrency": concurrency,
    }
    document = {"database_url": f"sqlite:///{database}", "apps": [app]}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")


# -- the environment --------------------------------------------------------------------------


def prepare_environment(root: Path, token: str) -> None:
    """Roster's Prefect defaults on a temporary PREFECT_HOME; set before Prefect loads."""
    from cli.prefect_env import prefect_defaults

    os.environ.update({**prefect_defaults(), "PREFECT_HOME": str(root / "prefect")})
    os.environ["ROSTER_HOME"] = str(root)
    os.environ[TOKEN_ENV] = token
    os.environ.pop("ROSTER_DATABASE_URL", None)
    os.environ.pop("ROSTER_CONFIG", None)


@contextlib.contextmanager
def prefect_running() -> Iterator[float]:
    """A Prefect test server (as tests/conftest.py starts it, heartbeat off as the CLI
    runs flows), warmed up by one tiny flow; yields the seconds it took to be ready."""
    from prefect import flow, task
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    @task
    def nothing() -> int:
        return 0

    @flow(name="bench-warm-up")
    def warm_up() -> int:
        return nothing()

    started = time.perf_counter()
    with (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        warm_up()
        yield time.perf_counter() - started


# -- checking ---------------------------------------------------------------------------------


def managers_ok(users: list[dict[str, Any]]) -> bool:
    """Every account's manager reference names its manager's account."""
    enterprise = MANAGER.rsplit(":", 1)[0]
    by_name = {u["userName"]: u["id"] for u in users}
    for u in users:
        number = int(u["userName"][4:])
        expected = None if number == 0 else by_name.get(f"user{(number - 1) // 10:05d}")
        got = u.get(enterprise, {}).get("manager", {}).get("value")
        if got != expected:
            return False
    return True


# -- measuring --------------------------------------------------------------------------------


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result)."""
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def settle() -> None:
    """The server logs a request after answering it: let the last lines land."""
    time.sleep(0.5)


def bench_initial(
    args: argparse.Namespace,
    home: Path,
    token: str,
    roster: ScimServer,
    results: Results,
    round_no: int,
) -> float:
    """a. The raw loop into its own fresh server and Roster's first sync into another,
    raw first in odd rounds, Roster first in even ones; returns raw time / Roster time."""
    if round_no % 2:
        raw_s, raw_cpu = initial_raw(args, home, token, roster, results)
        roster_s, roster_cpu = initial_roster(args, home, token, roster, results)
    else:
        roster_s, roster_cpu = initial_roster(args, home, token, roster, results)
        raw_s, raw_cpu = initial_raw(args, home, token, roster, results)
    ratio = raw_s / roster_s
    order = "raw first" if round_no % 2 else "Roster first"
    results.initial += [
        (f"a. round {round_no} ({order}): raw httpx loop", f"{raw_s:.2f} s", str(raw_cpu)),
        (f"a. round {round_no}: Roster flow", f"{roster_s:.2f} s", str(roster_cpu)),
        (
            f"a. round {round_no}: ratio raw / Roster",
            f"{ratio:.2f}",
            f"all CPU (the three above) raw / Roster: {raw_cpu.total / roster_cpu.total:.2f}",
        ),
    ]
    return ratio


def initial_raw(
    args: argparse.Namespace, root: Path, token: str, roster: ScimServer, results: Results
) -> tuple[float, CpuUse]:
    """The raw loop, on a server process of its own: (seconds, CPU note)."""
    from directory.store import Store

    store = Store(f"sqlite:///{root / 'roster.db'}")
    levels = desired_levels(store, root / "roster.yaml", APP)
    store.dispose()
    with (
        scim_server(["raw"], token, root / "raw.log") as server,
        raw_client(server.base_url("raw"), token, args.concurrency) as client,
    ):
        mark, meter = server.mark(), CpuMeter(server, [server, roster])
        raw_s, created = timed(lambda: raw_create(client, levels, args.concurrency))
        cpu = meter.read()
        settle()
        posts = server.requests_since(mark)["POST"]
        listed = list_users(client, 500)
    results.check(
        "raw loop: every user created once",
        created == posts == len(listed) == args.users,
        f"{created} created, {posts} POSTs, {len(listed)} listed",
    )
    results.check("raw loop: manager references", managers_ok(listed))
    return raw_s, cpu


def initial_roster(
    args: argparse.Namespace, root: Path, token: str, roster: ScimServer, results: Results
) -> tuple[float, CpuUse]:
    """Roster's first sync of the app: (seconds, CPU note)."""
    from flows.sync import sync

    mark, meter = roster.mark(), CpuMeter(roster, [roster])
    roster_s, outcome = timed(lambda: sync(app=APP, config_path=str(root / "roster.yaml")))
    cpu = meter.read()
    settle()
    summary = outcome["apps"][APP].get("summary", {})
    posts = roster.requests_since(mark)["POST"]
    with raw_client(roster.base_url(APP), token, 1) as client:
        listed = list_users(client, 500)
    results.check(
        "roster: every user created once",
        summary.get("created") == posts == len(listed) == args.users and not summary.get("failed"),
        f"summary {summary}, {posts} POSTs, {len(listed)} listed",
    )
    results.check("roster: manager references", managers_ok(listed))
    return roster_s, cpu


def bench_resync(
    args: argparse.Namespace, root: Path, token: str, roster: ScimServer, results: Results
) -> None:
    """b. No-op resyncs of the same tenant, each followed by a raw listing; zero writes."""
    from directory.config import load_config

    page_size = load_config(root / "roster.yaml").app(APP).page_size
    with raw_client(roster.base_url(APP), token, 1) as client:
        listing_s, listed = timed(lambda: list_users(client, page_size))
        before = versions(listed)
        listings, resyncs, writes, gets = [listing_s], [], 0, 0
        for _ in range(args.resyncs):
            resync_s, requests, resync_cpu = resync_once(args, root, roster, results)
            writes += sum(n for method, n in requests.items() if method != "GET")
            gets += requests["GET"]
            meter = CpuMeter(roster, [roster])
            listing_s, listed = timed(lambda: list_users(client, page_size))
            listing_cpu = meter.read()
            listings.append(listing_s)
            resyncs.append(resync_s)
            unchanged = versions(listed) == before
            results.check("resync: every account's meta.version unchanged", unchanged)
    results.check("resync: zero writes received by the server", writes == 0, f"{writes} writes")
    ratio = statistics.median(resyncs) / statistics.median(listings)
    results.resync += [
        (
            f"b. raw listing, page size {page_size} (median of {len(listings)})",
            f"{statistics.median(listings):.2f} s",
            f"{_spread(listings)}; last: {listing_cpu}",
        ),
        (
            f"b. no-op resync, Roster flow (median of {len(resyncs)})",
            f"{statistics.median(resyncs):.2f} s",
            f"{_spread(resyncs)}; last: {resync_cpu}",
        ),
        (
            "b. ratio Roster / listing",
            f"{ratio:.2f}",
            f"server saw {gets // len(resyncs)} GETs and {writes} writes per resync",
        ),
    ]
    results.targets.append(_target("no-op resync Roster/listing", ratio, "<=", TARGET_RESYNC))


def resync_once(
    args: argparse.Namespace, root: Path, roster: ScimServer, results: Results
) -> tuple[float, Counter[str], CpuUse]:
    """One timed no-op sync: (seconds, requests the server logged, CPU note)."""
    from flows.sync import sync

    mark, meter = roster.mark(), CpuMeter(roster, [roster])
    resync_s, outcome = timed(lambda: sync(app=APP, config_path=str(root / "roster.yaml")))
    cpu = meter.read()
    settle()
    summary = outcome["apps"][APP].get("summary", {})
    results.check(
        "roster resync: all unchanged, nothing planned",
        summary.get("unchanged") == args.users
        and not any(summary.get(k) for k in ("created", "updated", "deactivated", "failed")),
        f"summary {summary}",
    )
    return resync_s, roster.requests_since(mark), cpu


def _spread(values: list[float]) -> str:
    return "runs " + ", ".join(f"{v:.2f}" for v in values)


def _target(name: str, value: float, op: str, bound: float) -> str:
    met = value >= bound if op == ">=" else value <= bound
    return f"target {name} {value:.2f} {op} {bound}: {'met' if met else 'MISSED'}"


def run(args: argparse.Namespace, root: Path) -> Results:
    token = secrets.token_urlsafe(16)
    prepare_environment(root, token)
    results = Results()
    write_csv(root / "people.csv", people(args.users))
    with prefect_running() as ready_s:
        results.setup.append(
            ("Prefect test server + warm-up flow (untimed)", f"{ready_s:.1f} s", "")
        )
        ratios = []
        for round_no in range(1, args.rounds + 1):
            home = root / f"round{round_no}"
            home.mkdir()
            import_people(root / "people.csv", home / "roster.db")
            with scim_server([APP], token, home / "roster.log") as roster:
                write_config(
                    home / "roster.yaml", home / "roster.db", roster.base_url(APP), args.concurrency
                )
                ratios.append(bench_initial(args, home, token, roster, results, round_no))
                if round_no == args.rounds:
                    bench_resync(args, home, token, roster, results)
    ratio = statistics.median(ratios)
    results.initial.append((f"a. ratio raw / Roster, median of {len(ratios)}", f"{ratio:.2f}", ""))
    results.targets.insert(0, _target("initial sync raw/Roster", ratio, ">=", TARGET_INITIAL))
    return results


def import_people(csv_path: Path, database: Path) -> None:
    """The directory: a fresh store, the people imported from the CSV file."""
    from directory.config import Safety
    from directory.importer import import_csv
    from directory.store import Store

    store = Store(f"sqlite:///{database}")
    try:
        import_csv(store, csv_path, safety=Safety(), force=True)
    finally:
        store.dispose()


def print_results(args: argparse.Namespace, results: Results, started: str) -> None:
    print(f"bench.sync: {args.users:,} users, concurrency {args.concurrency}")
    print(f"machine at start: {started}; at end: {machine()}")
    width = max(len(name) for name, _, _ in results.rows)
    for name, value, note in results.rows:
        print(f"  {name:<{width}}  {value:>9}  {note}")
    for line in results.targets:
        print(line)
    for name, ok, detail in results.checks:
        if not ok:
            print(f"CHECK FAILED: {name}: {detail}")
    passed = sum(ok for _, ok, _ in results.checks)
    print(f"checks: {passed} of {len(results.checks)} passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--rounds", type=int, default=2, help="initial-sync rounds, alternating who goes first"
    )
    parser.add_argument("--resyncs", type=int, default=3, help="no-op resyncs to time")
    args = parser.parse_args(argv)
    started = machine()
    with tempfile.TemporaryDirectory(prefix="roster-bench-") as tmp:
        results = run(args, Path(tmp))
    print_results(args, results, started)
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
