"""Rate-limit benchmark: how close Roster gets to an app's published write limit.

A ``bench.faultproxy`` proxy with a ``WriteLimit`` (Slack's published limit by default:
180 user writes per minute, burst 20; over budget: 429 with ``Retry-After``) stands in
front of a real ``scim2-server`` process, and Roster's ``sync`` flow creates N users
through it, once per run, each into an empty tenant:

1. **budget**: the app configured with ``rate_limits.writes: {per_minute: 180, burst: 20}``
   (and adaptive concurrency, the default);
2. **adaptive**: no budget configured, ``adaptive: {learn_rate: true}``: Roster learns a
   write rate from the 429s (``connectors.learnedrate``), besides the app-wide pause from
   ``Retry-After`` and the in-flight limit halving;
3. **concurrency** (not run by default): no budget, ``learn_rate: false`` (the default):
   adaptive concurrency and the pause alone.

The figures come from the proxy, which saw every write: the achieved share of the
allowed rate is the writes admitted / the writes the limit allowed over the same span
(``burst + rate * (last - first)``); the 429 share is 429s / write requests. The
baseline is the limit itself, measured in the same run. Targets (issue 7), for the
budget and adaptive runs: >= 95% of the allowed rate, <= 1% of requests answered 429. Exits 1 when a
correctness check fails (not everyone created once), not when a target is missed.

    python -m bench.ratelimit [--creates 1000] [--per-minute 180] [--burst 20]
        [--concurrency 4] [--runs budget,adaptive]

1,000 writes at 180/min take about 5.5 minutes per run.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.common import ScimServer, list_users, machine, raw_client, scim_server
from bench.faultproxy import FaultProxy, WriteLimit
from bench.sync import APP, TOKEN_ENV, import_people, people, prefect_running, write_csv
from bench.sync import prepare_environment as prepare_prefect

TARGET_RATE = 0.95  # achieved / allowed, at least
TARGET_429 = 0.01  # 429s / write requests, at most
RUNS = ("budget", "adaptive")
TITLES = {
    "budget": "budget configured",
    "adaptive": "no budget, write rate learned from 429s (learn_rate: true)",
    "concurrency": "no budget, adaptive concurrency only (learn_rate: false)",
}


@dataclass
class Outcome:
    run: str
    seconds: float
    admitted: int
    refused: int
    allowed: float
    per_minute: float
    created: int
    listed: int
    traffic: str

    @property
    def rate_share(self) -> float:
        return self.admitted / self.allowed if self.allowed else 0.0

    @property
    def refused_share(self) -> float:
        requests = self.admitted + self.refused
        return self.refused / requests if requests else 0.0


class TrafficLog(logging.Handler):
    """Keeps the line Roster logs when it closes an app's connector: where the adaptive
    concurrency settled, 429s, time waited."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "429s:" in message:
            self.lines.append(message)


def write_config(
    path: Path, database: Path, base_url: str, args: argparse.Namespace, run: str
) -> None:
    app: dict[str, Any] = {
        "name": APP,
        "connector": "scim",
        "base_url": base_url,
        "token_env": TOKEN_ENV,
        "concurrency": args.concurrency,
    }
    if run == "budget":
        app["rate_limits"] = {"writes": {"per_minute": args.per_minute, "burst": args.burst}}
    elif run == "adaptive":
        app["adaptive"] = {"learn_rate": True}
    elif run == "concurrency":
        app["adaptive"] = {"learn_rate": False}
    document = {"database_url": f"sqlite:///{database}", "apps": [app]}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")


def allowed_writes(admitted: list[float], per_minute: float, burst: int) -> float:
    """What the limit allowed between the first and the last admitted write."""
    if not admitted:
        return 0.0
    return burst + per_minute / 60 * (admitted[-1] - admitted[0])


def one_run(
    args: argparse.Namespace, root: Path, token: str, server: ScimServer, run: str
) -> Outcome:
    from flows.sync import sync

    home = root / run
    home.mkdir()
    import_people(root / "people.csv", home / "roster.db")
    limit = WriteLimit(args.per_minute, args.burst)
    log = TrafficLog()
    logging.getLogger("roster").addHandler(log)
    logging.getLogger("roster").setLevel(logging.INFO)
    try:
        with FaultProxy(server.root, limit=limit) as proxy:
            write_config(
                home / "roster.yaml", home / "roster.db", f"{proxy.url}/{run}/v2", args, run
            )
            started = time.perf_counter()
            outcome = sync(app=APP, config_path=str(home / "roster.yaml"))
            seconds = time.perf_counter() - started
    finally:
        logging.getLogger("roster").removeHandler(log)
    summary = outcome["apps"][APP].get("summary", {})
    with raw_client(server.base_url(run), token, 1) as client:
        listed = len(list_users(client, 500))
    admitted = limit.admitted
    span = admitted[-1] - admitted[0] if len(admitted) > 1 else 0.0
    return Outcome(
        run=run,
        seconds=seconds,
        admitted=len(admitted),
        refused=len(limit.refusals),
        allowed=allowed_writes(admitted, args.per_minute, args.burst),
        per_minute=(len(admitted) - args.burst) / span * 60 if span else 0.0,
        created=int(summary.get("created", 0)),
        listed=listed,
        traffic=log.lines[-1] if log.lines else "(no traffic line logged)",
    )


def run(args: argparse.Namespace, root: Path) -> list[Outcome]:
    token = secrets.token_urlsafe(16)
    prepare_prefect(root, token)
    write_csv(root / "people.csv", people(args.creates))
    outcomes = []
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = set(runs) - set(TITLES)
    if unknown:
        raise SystemExit(f"unknown runs: {', '.join(sorted(unknown))}; known: {', '.join(TITLES)}")
    with prefect_running(), scim_server(runs, token, root / "scim.log") as server:
        for name in runs:
            outcomes.append(one_run(args, root, token, server, name))
    return outcomes


def report(args: argparse.Namespace, outcomes: list[Outcome], started: str) -> bool:
    """Prints the figures; returns whether every correctness check passed."""
    print(
        f"bench.ratelimit: {args.creates:,} creates through a limit of {args.per_minute:g}"
        f" writes/min, burst {args.burst}; concurrency {args.concurrency}"
    )
    print(f"machine at start: {started}; at end: {machine()}")
    ok = True
    for o in outcomes:
        correct = o.created == o.admitted == o.listed == args.creates
        ok = ok and correct
        title = TITLES[o.run]
        rows = [
            ("sync flow wall time", f"{o.seconds:.1f} s"),
            ("writes admitted / allowed", f"{o.admitted} / {o.allowed:.1f} = {o.rate_share:.1%}"),
            ("steady write rate", f"{o.per_minute:.1f} /min (limit {args.per_minute:g})"),
            (
                "429s / write requests",
                f"{o.refused} / {o.admitted + o.refused} = {o.refused_share:.2%}",
            ),
            ("Roster's traffic line", o.traffic),
            (
                "check: everyone created once",
                f"{'ok' if correct else 'FAILED'} (summary {o.created},"
                f" admitted {o.admitted}, listed {o.listed})",
            ),
        ]
        if o.run != "concurrency":
            rows.append((f"target rate >= {TARGET_RATE:.0%}", _met(o.rate_share >= TARGET_RATE)))
            rows.append((f"target 429s <= {TARGET_429:.0%}", _met(o.refused_share <= TARGET_429)))
        print(f"\n[{o.run}] {title}")
        for name, value in rows:
            print(f"  {name:<30} {value}")
    return ok


def _met(met: bool) -> str:
    return "met" if met else "MISSED"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--per-minute", type=float, default=180.0, help="the app's write limit")
    parser.add_argument("--burst", type=int, default=20, help="the app's burst")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--runs", default=",".join(RUNS), help="of budget, adaptive, concurrency; comma-separated"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = machine()
    with tempfile.TemporaryDirectory(prefix="roster-bench-ratelimit-") as tmp:
        outcomes = run(args, Path(tmp))
    return 0 if report(args, outcomes, started) else 1


if __name__ == "__main__":
    sys.exit(main())
