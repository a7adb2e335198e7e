"""Incremental against full sync, with N linked users in a real scim2-server process and 50
of them changed in the directory (issue 7).

Seeding (untimed for the comparison, but reported): the directory is imported from a CSV
file; the app's N accounts are POSTed straight to the server by a raw httpx loop with the
bodies Roster would send (``bench.common.raw_create``, managers first); then one full Roster
sync links them all by userName, which needs no write (the accounts already match). Each
user's stamp is then moved an hour back, as if that sync ran an hour after the import, so
the overlap margin does not bring the whole directory back into the next incremental run.
(Without that step the first incremental run considers everyone once and settles them by
their link hashes, without reading the app: measured as row "c".)

Then, in the same process and against the same server:

a. 50 users' titles change (a CSV import, which stamps them); a **full** sync: list every
   account, plan all N, update 50.
b. 50 other users' titles change; an **incremental** sync: read those 50 accounts by id,
   plan 50, update 50.
c. an incremental sync with nothing changed.

Requests are counted by the server itself, from its access log. Exits 1 when a check fails.

    python -m bench.incremental [--users 50000] [--changed 50] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import ScimServer, desired_levels, machine, raw_client, raw_create, scim_server
from bench.sync import (
    APP,
    import_people,
    people,
    prefect_running,
    prepare_environment,
    settle,
    timed,
    write_config,
    write_csv,
)

Row = tuple[str, str, str]


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, server: ScimServer, token: str):
        self.args, self.root, self.server, self.token = args, root, server, token
        self.team = people(args.users)
        self.rows: list[Row] = []
        self.checks: list[tuple[str, bool, str]] = []

    @property
    def config(self) -> str:
        return str(self.root / "roster.yaml")

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))

    def sync(self, label: str, **kwargs: Any) -> tuple[float, dict[str, Any], Counter[str]]:
        from flows.sync import sync

        mark = self.server.mark()
        seconds, result = timed(lambda: sync(app=APP, config_path=self.config, **kwargs))
        settle()
        requests = self.server.requests_since(mark)
        outcome = result["apps"][APP]
        summary = outcome.get("summary", {})
        note = (
            f"mode {outcome.get('mode')}, considered {summary.get('considered')};"
            f" requests {dict(sorted(requests.items()))}; updated {summary.get('updated')}"
        )
        self.rows.append((label, f"{seconds:.2f} s", note))
        self.check(f"{label}: ok", outcome.get("status") == "ok", str(outcome.get("status")))
        return seconds, outcome, requests

    def change(self, start: int, title: str) -> list[str]:
        """Change the title of ``changed`` users spread over the directory; import them."""
        step = max(1, self.args.users // self.args.changed)
        picked = list(range(start, self.args.users, step))[: self.args.changed]
        for i in picked:
            self.team[i]["title"] = title
        write_csv(self.root / "changed.csv", [self.team[i] for i in picked])
        import_people(self.root / "changed.csv", self.root / "roster.db")
        return [self.team[i]["user_name"] for i in picked]

    def titles(self, names: list[str]) -> set[str]:
        """The titles the server holds for ``names`` (one filtered GET each)."""
        found: set[str] = set()
        with raw_client(self.server.base_url(APP), self.token, 1) as client:
            for name in names:
                body = client.get("/Users", params={"filter": f'userName eq "{name}"'}).json()
                found.update(r.get("title") for r in body.get("Resources", []))
        settle()  # so these GETs land in the log before the next run's mark
        return found


def seed(bench: Bench) -> None:
    from directory.store import Store

    args, root = bench.args, bench.root
    write_csv(root / "people.csv", bench.team)
    seconds, _ = timed(lambda: import_people(root / "people.csv", root / "roster.db"))
    bench.rows.append((f"seed: import {args.users:,} people", f"{seconds:.2f} s", ""))
    store = Store(f"sqlite:///{root / 'roster.db'}")
    try:
        levels = desired_levels(store, root / "roster.yaml", APP)
    finally:
        store.dispose()
    with raw_client(bench.server.base_url(APP), bench.token, args.concurrency) as client:
        seconds, created = timed(lambda: raw_create(client, levels, args.concurrency))
    bench.rows.append((f"seed: raw POST of {created:,} accounts", f"{seconds:.2f} s", ""))
    _, outcome, requests = bench.sync("seed: first full sync links them")
    linked = outcome["summary"]["linked"]
    writes = sum(n for method, n in requests.items() if method != "GET")
    bench.check(
        "seed: every account linked, no write",
        linked == args.users and writes == 0,
        f"{linked} linked, {writes} writes",
    )


def age_stamps(root: Path, by: timedelta = timedelta(hours=1)) -> None:
    """Every user's stamp an hour back, in one statement (SQLite date arithmetic)."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{root / 'roster.db'}")
    seconds = int(by.total_seconds())
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE users SET updated_at = strftime('%Y-%m-%d %H:%M:%f',"
                f" updated_at, '-{seconds} seconds')"
            )
        )
    engine.dispose()


def compare(bench: Bench) -> None:
    args = bench.args
    names = bench.change(0, "Staff Engineer")
    full_s, full, full_req = bench.sync(f"a. full sync, {args.changed} changed", mode="full")
    bench.check("a. full: the changed updated", full["summary"]["updated"] == args.changed)
    bench.check("a. full: titles on the server", bench.titles(names) == {"Staff Engineer"})
    names = bench.change(1, "Principal Engineer")
    inc_s, inc, inc_req = bench.sync(
        f"b. incremental sync, {args.changed} changed", mode="incremental"
    )
    bench.check("b. incremental: mode", inc.get("mode") == "incremental", str(inc.get("mode")))
    # considered: the changed, their reports (a manager's change can reach them) and,
    # within the overlap, the users the full run before was given; only the changed are
    # read (the check on requests below)
    bench.check(
        "b. incremental: considered at least the changed",
        inc["summary"]["considered"] >= args.changed,
        str(inc["summary"]["considered"]),
    )
    bench.check("b. incremental: the changed updated", inc["summary"]["updated"] == args.changed)
    bench.check(
        "b. incremental: titles on the server", bench.titles(names) == {"Principal Engineer"}
    )
    bench.check(
        "b. incremental: one GET and one PATCH per changed account (+ one /ServiceProviderConfig)",
        inc_req["PATCH"] == args.changed and inc_req["GET"] <= args.changed + 1,
        str(dict(inc_req)),
    )
    _, _, idle_req = bench.sync("c. incremental sync, nothing changed", mode="incremental")
    bench.check("c. no-op incremental: no request", sum(idle_req.values()) == 0, str(idle_req))
    bench.rows.append(("ratio full / incremental, wall time", f"{full_s / inc_s:.1f}", ""))
    total = sum(full_req.values()), sum(inc_req.values())
    bench.rows.append(("requests full / incremental", f"{total[0]} / {total[1]}", ""))


def run(args: argparse.Namespace, root: Path) -> Bench:
    token = secrets.token_urlsafe(16)
    prepare_environment(root, token)
    with scim_server([APP], token, root / "scim.log") as server:
        write_config(
            root / "roster.yaml", root / "roster.db", server.base_url(APP), args.concurrency
        )
        bench = Bench(args, root, server, token)
        with prefect_running() as ready_s:
            bench.rows.append(("Prefect test server + warm-up (untimed)", f"{ready_s:.1f} s", ""))
            seed(bench)
            if args.within_overlap:
                bench.sync(
                    "c0. incremental right after seeding (everyone in the overlap)",
                    mode="incremental",
                )
            age_stamps(root)
            compare(bench)
    return bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.incremental",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--changed", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--within-overlap",
        action="store_true",
        help="also time an incremental run that considers everyone once",
    )
    args = parser.parse_args(argv)
    started = machine()
    with tempfile.TemporaryDirectory(prefix="roster-bench-") as tmp:
        bench = run(args, Path(tmp))
    print(
        f"bench.incremental: {args.users:,} linked users, {args.changed} changed,"
        f" concurrency {args.concurrency}"
    )
    print(f"machine at start: {started}; at end: {machine()}")
    width = max(len(name) for name, _, _ in bench.rows)
    for name, value, note in bench.rows:
        print(f"  {name:<{width}}  {value:>12}  {note}")
    for name, ok, detail in bench.checks:
        if not ok:
            print(f"CHECK FAILED: {name}: {detail}")
    print(f"checks: {sum(ok for _, ok, _ in bench.checks)} of {len(bench.checks)} passed")
    return 0 if all(ok for _, ok, _ in bench.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
