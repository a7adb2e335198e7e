"""A million users: extraction from PostgreSQL in chunks, the plan, and a no-op sync.

1. **Seed** N directory users into a database of its own (``roster_bench``, created and
   dropped here, never the tests' database), each assigned the app ``bench`` and linked
   to its account, with COPY through psycopg (seconds, not the minutes of INSERTs).
2. **Extract**: ``Store.read_users`` and ``Store.read_links`` (chunked, ``read_frame``)
   against the old one-shot ``pd.read_sql`` of the same SELECTs, each in a fresh
   subprocess; time, and the peak RSS during the read above the RSS before it
   (``/proc/self/clear_refs`` and ``ru_maxrss``, as ``bench.plan`` measures).
3. **No-op sync**: Roster's ``sync`` flow under a Prefect test server, in a fresh
   subprocess, against ``bench.staticscim`` (a bench-only, read-only SCIM list server that
   computes each page from the same generator that seeded the directory, so every
   account is linked and in sync). Checks: the summary plans nothing, and the server
   counted zero non-GET requests. Time is split from the flow's task runs as Prefect
   recorded them: ``extract-app`` (listing the app: requests, validation, the frame) and
   everything else; ``plan-bench`` is shown too (build_desired + plan_changes + guard).
4. Optionally (``--scim2-probe 10000``) how fast a real ``scim2-server`` lists: that many
   users POSTed, then listed page by page; pages/s and accounts/s.

    python -m bench.million --users 1000000 [--scim2-probe 10000] [--keep] [--no-sync]

Needs ``ROSTER_BENCH_POSTGRES_URL`` or ``ROSTER_TEST_POSTGRES_URL`` (any database on the
server: the bench creates its own next to it). Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import machine
from bench.staticscim import person, remote_id, user_id
from directory.fields import DIRECTORY_FIELDS

APP = "bench"
DATABASE = "roster_bench"
TOKEN_ENV = "ROSTER_BENCH_TOKEN"
SEED_BLOCK = 100_000
TARGET_PLAN_SECONDS = 10.0


# -- the database -----------------------------------------------------------------------------


def bench_url() -> str:
    base = os.environ.get("ROSTER_BENCH_POSTGRES_URL") or os.environ.get("ROSTER_TEST_POSTGRES_URL")
    if not base:
        sys.exit("set ROSTER_BENCH_POSTGRES_URL (or ROSTER_TEST_POSTGRES_URL) to a PostgreSQL URL")
    import sqlalchemy as sa

    return sa.engine.make_url(base).set(database=DATABASE).render_as_string(hide_password=False)


@contextmanager
def bench_database(url: str, keep: bool) -> Iterator[None]:
    """``roster_bench``, created afresh (an old one dropped first), dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(
        sa.engine.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {DATABASE}"))
    try:
        yield
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        admin.dispose()


def seed(url: str, users: int) -> float:
    """Schema by migrations (``Store``), then users, assignments and links by COPY."""
    import psycopg
    import sqlalchemy as sa

    from directory.store import Store

    Store(url).dispose()
    conninfo = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)
    started = time.perf_counter()
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        for table, columns, rows in _tables(users):
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for block in _blocks(rows):
                    copy.write(block)
        cur.execute("ANALYZE")
    return time.perf_counter() - started


def _tables(users: int) -> list[tuple[str, list[str], Iterator[list[Any]]]]:
    stamp = "2026-01-01 00:00:00+00"
    user_columns = ["id", *DIRECTORY_FIELDS[1:]]  # the users table's columns

    def user_rows() -> Iterator[list[Any]]:
        for i in range(users):
            p = person(i)
            yield [p[c] for c in user_columns] + [stamp]

    def assignments() -> Iterator[list[Any]]:
        for i in range(users):
            yield [user_id(i), APP]

    def links() -> Iterator[list[Any]]:
        for i in range(users):
            yield [user_id(i), APP, remote_id(i), None, "active", stamp]

    return [
        ("users", [*user_columns, "updated_at"], user_rows()),
        ("user_apps", ["user_id", "app"], assignments()),
        ("links", ["user_id", "app", "remote_id", "attr_hash", "status", "updated_at"], links()),
    ]


def _blocks(rows: Iterator[list[Any]]) -> Iterator[str]:
    """COPY text format; the generated values hold no tab, newline or backslash."""
    lines: list[str] = []
    for row in rows:
        lines.append("\t".join(_copy_text(v) for v in row))
        if len(lines) == SEED_BLOCK:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


# -- 2. extraction, in a fresh process --------------------------------------------------------


def measure_extract(url: str, mode: str) -> dict[str, Any]:
    """Run in the child: read users and links, ``mode`` chunked (Roster) or one-shot."""
    import gc

    import pandas as pd
    import sqlalchemy as sa

    from bench.plan import _peak_bytes, _release_free_memory, _reset_peak, _rss_bytes
    from directory.models import Link
    from directory.queries import users_select
    from directory.store import Store

    store = Store(url)
    gc.collect()
    _release_free_memory()
    before = _rss_bytes()
    reset = _reset_peak()
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "chunked":
        users, links = store.read_users(), store.read_links(APP)
    else:
        links_stmt = (
            sa.select(Link.user_id, Link.remote_id, Link.attr_hash, Link.status)
            .where(Link.app == APP)
            .order_by(Link.user_id)
        )
        with store.engine.connect() as conn:
            users = pd.read_sql(users_select(), conn)
            links = pd.read_sql(links_stmt, conn)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    peak = _peak_bytes()
    frames = int(users.memory_usage(deep=True).sum() + links.memory_usage(deep=True).sum())
    return {
        "mode": mode,
        "users": len(users),
        "links": len(links),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rss_before": before,
        "peak": peak if reset else None,
        "after": _rss_bytes(),
        "frames_deep": frames,
    }


def run_child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.million", *args]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- 3. the no-op sync, in a fresh process ----------------------------------------------------


@contextmanager
def static_app(users: int, token: str) -> Iterator[str]:
    """``bench.staticscim`` on a free port; yields its base URL."""

    from tests.scim_apps import free_port, wait_until_serving

    port = free_port()
    env = {**os.environ, TOKEN_ENV: token}
    command = [sys.executable, "-m", "bench.staticscim", "--users", str(users)]
    proc = subprocess.Popen([*command, "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, f"{base}/_bench/requests", "bench.staticscim")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def server_requests(base: str) -> dict[str, int]:
    import httpx

    return dict(httpx.get(f"{base}/_bench/requests", timeout=10).json())


def measure_noop(url: str, base: str, page_size: int) -> dict[str, Any]:
    """Run in the child: the sync flow once, timed, with its task runs' durations."""
    import resource

    import yaml

    from bench.sync import prefect_running, prepare_environment

    root = Path(tempfile.mkdtemp(prefix="roster-million-"))
    token = os.environ[TOKEN_ENV]
    prepare_environment(root, token)
    config = root / "roster.yaml"
    app = {
        "name": APP,
        "connector": "scim",
        "base_url": f"{base}/v2",
        "token_env": TOKEN_ENV,
        "page_size": page_size,
    }
    config.write_text(yaml.safe_dump({"database_url": url, "apps": [app]}), encoding="utf-8")
    with prefect_running() as ready:
        from flows.sync import sync

        started, cpu = time.perf_counter(), time.process_time()
        state = sync(app=APP, config_path=str(config), return_state=True)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        result = state.result()
        steps = _task_seconds(state.state_details.flow_run_id)
    return {
        "prefect_ready": ready,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "summary": result["apps"][APP].get("summary"),
        "status": result["apps"][APP].get("status"),
        "steps": steps,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def _task_seconds(flow_run_id: Any) -> dict[str, float]:
    """Each task run's time as the Prefect server recorded it (polled: the recorder
    writes in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    wanted = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    steps: dict[str, float] = {}
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(flow_run_filter=wanted)
            steps = {
                r.name: (r.end_time - r.start_time).total_seconds()
                for r in runs
                if r.start_time and r.end_time
            }
            if "extract-bench" in steps and any(k.startswith("plan-") for k in steps):
                break
            time.sleep(1)
    return steps


# -- 4. a real scim2-server's listing speed ---------------------------------------------------


def probe_scim2_server(users: int, page_size: int) -> dict[str, Any]:
    """POST ``users`` accounts into a real scim2-server, then list them, timed."""
    from bench.common import list_users, raw_client, raw_create, scim_server
    from bench.staticscim import resource

    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as tmp, scim_server([APP], token, Path(tmp) / "log") as srv:
        client = raw_client(srv.base_url(APP), token, 4)
        bodies = []
        for i in range(users):
            body = resource(i, "")
            body.pop("id"), body.pop("meta"), body[_ENTERPRISE].pop("manager", None)
            bodies.append(_flat_for_raw_create(body))
        seeded = time.perf_counter()
        raw_create(client, [bodies], 4)
        seed_seconds = time.perf_counter() - seeded
        started = time.perf_counter()
        listed = list_users(client, page_size)
        seconds = time.perf_counter() - started
        client.close()
    pages = -(-len(listed) // min(page_size, 1000))
    return {
        "users": len(listed),
        "seed_seconds": seed_seconds,
        "list_seconds": seconds,
        "pages_per_s": pages / seconds,
        "accounts_per_s": len(listed) / seconds,
    }


_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _flat_for_raw_create(body: dict[str, Any]) -> dict[str, Any]:
    """``raw_create`` takes flat attribute maps (it calls ``to_resource``)."""
    from bench.common import MANAGER

    flat = {
        "user_id": body["externalId"],
        "userName": body["userName"],
        "externalId": body["externalId"],
        "name.givenName": body["name"]["givenName"],
        "name.familyName": body["name"]["familyName"],
        "displayName": body["displayName"],
        'emails[type eq "work"].value': body["emails"][0]["value"],
        "title": body["title"],
        "active": True,
        f"{_ENTERPRISE}:department": body[_ENTERPRISE]["department"],
        f"{_ENTERPRISE}:employeeNumber": body[_ENTERPRISE]["employeeNumber"],
    }
    flat.pop(MANAGER, None)
    return flat


# -- the report -------------------------------------------------------------------------------


def gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--scim2-probe", type=int, default=0, metavar="N")
    parser.add_argument("--keep", action="store_true", help="keep roster_bench afterwards")
    parser.add_argument("--no-sync", action="store_true", help="seed and extract only")
    parser.add_argument("--child", choices=["extract", "noop"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="chunked", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    url = bench_url()
    if args.child == "extract":
        print(json.dumps(measure_extract(url, args.mode)))
        return 0
    if args.child == "noop":
        print(json.dumps(measure_noop(url, args.base, args.page_size), default=str))
        return 0
    return run(args, url)


def run(args: argparse.Namespace, url: str) -> int:
    print(f"bench.million: {args.users:,} users; {machine()}", flush=True)
    failures: list[str] = []
    if args.scim2_probe:
        probe = probe_scim2_server(args.scim2_probe, args.page_size)
        print(
            f"scim2-server: {probe['users']:,} POSTed in {probe['seed_seconds']:.1f} s; listed in"
            f" {probe['list_seconds']:.1f} s = {probe['pages_per_s']:.2f} pages/s,"
            f" {probe['accounts_per_s']:.0f} accounts/s (1M would take"
            f" {1e6 / probe['accounts_per_s'] / 60:.0f} min)",
            flush=True,
        )
    with bench_database(url, args.keep):
        seconds = seed(url, args.users)
        print(f"seed: {seconds:.1f} s (COPY, users + assignments + links)", flush=True)
        for mode in ("one-shot", "chunked"):
            got = run_child("--child", "extract", "--mode", mode, "--users", str(args.users))
            peak = got["peak"]
            print(
                f"extract {mode:9}: {got['seconds']:.1f} s wall, {got['cpu_seconds']:.1f} s CPU;"
                f" RSS before {gib(got['rss_before'])} GiB, peak {gib(peak)} GiB"
                f" (+{gib(peak - got['rss_before'] if peak else None)}), after"
                f" {gib(got['after'])} GiB; frames {gib(got['frames_deep'])} GiB (deep)",
                flush=True,
            )
            if got["users"] != args.users or got["links"] != args.users:
                failures.append(f"extract {mode}: {got['users']} users, {got['links']} links")
        if args.no_sync:
            return _verdict(failures)
        token = secrets.token_urlsafe(16)
        with static_app(args.users, token) as base:
            before = server_requests(base)
            env = {**os.environ, TOKEN_ENV: token}
            noop = run_child(
                "--child", "noop", "--base", base, "--page-size", str(args.page_size), env=env
            )
            after = server_requests(base)
        failures += report_noop(noop, before, after, args.users)
    return _verdict(failures)


def _verdict(failures: list[str]) -> int:
    for failure in failures:
        print(f"CHECK FAILED: {failure}")
    print(f"checks: {'all passed' if not failures else f'{len(failures)} failed'}")
    return 1 if failures else 0


def report_noop(
    noop: dict[str, Any], before: dict[str, int], after: dict[str, int], users: int
) -> list[str]:
    steps = noop["steps"]
    listing = steps.get(f"extract-{APP}")
    plan = steps.get(f"plan-{APP}")
    gets = after.get("GET", 0) - before.get("GET", 0)
    writes = sum(n - before.get(m, 0) for m, n in after.items() if m != "GET")
    print(f"no-op sync flow: {noop['seconds']:.1f} s wall, {noop['cpu_seconds']:.1f} s CPU")
    if listing is not None:
        print(
            f"  listing the app (extract-{APP}): {listing:.1f} s"
            f" ({listing / noop['seconds']:.0%}); everything else"
            f" {noop['seconds'] - listing:.1f} s"
        )
    print(f"  steps as Prefect recorded them: {json.dumps(steps)}")
    if plan is not None:
        verdict = "met" if plan < TARGET_PLAN_SECONDS else "MISSED"
        print(f"  plan task (desired + plan + guard): {plan:.1f} s, target < 10 s: {verdict}")
    print(f"  process peak RSS {gib(noop['peak_rss'])} GiB")
    print(f"  the app's server counted {gets} GETs and {writes} writes")
    summary = noop["summary"] or {}
    print(f"  summary: {json.dumps(summary)}")
    failures = []
    if writes:
        failures.append(f"no-op: the server saw {writes} writes")
    if noop["status"] != "ok":
        failures.append(f"no-op: status {noop['status']}")
    # ``considered`` counts who the run judged (all of them here), not a change
    idle = ("unchanged", "waiting", "considered")
    planned = {k: v for k, v in summary.items() if k not in idle and v}
    if summary.get("unchanged") != users or summary.get("considered") != users or planned:
        failures.append(f"no-op: expected {users} unchanged and nothing else, got {summary}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
