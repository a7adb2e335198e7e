"""Chaos: 20 syncs of a changing 2,000-person directory into two apps through a proxy that
breaks about one request in five, then one clean sync that must converge exactly.

The apps are two tenants of one standalone scim2-server behind ``bench.faultproxy`` (every
fault kind; see ``LIST_FAULT_RATE``). The directory gains joiners, loses leavers, rehires,
changes attributes and reassigns apps between runs. Each run must end with a result (apps
may fail, the run may not crash). The flow's clock moves an hour per run and a day before
the clean run, so account backoffs and any quarantine have lapsed by then, as they would
in production. The verdict comes from the server itself (``tests.chaos_support``).

Run with ``make chaos`` (``pytest -m chaos``). ``ROSTER_CHAOS_REPORT=path.json`` writes the
figures (section ``chaos``); ``ROSTER_CHAOS_SEED`` replays another seed;
``ROSTER_CHAOS_PEOPLE`` and ``ROSTER_CHAOS_RUNS`` shrink it while debugging.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.faultproxy import LIST_FAULTS, Fault, FaultProxy, spread
from connectors.scim import ScimConnector
from directory.config import load_config
from flows.sync import sync
from tasks import session
from tasks.batches import apply_batch
from tests.chaos_support import Directory, server_users, take_census, total, write_report
from tests.health_support import Clock
from tests.scim_apps import standalone_scim
from tests.sync_env import Installation

pytestmark = pytest.mark.chaos

APPS = ["a", "b"]
PEOPLE = int(os.environ.get("ROSTER_CHAOS_PEOPLE", "2000"))
RUNS = int(os.environ.get("ROSTER_CHAOS_RUNS", "20"))
FAULT_SHARE = 0.2
SEED = int(os.environ.get("ROSTER_CHAOS_SEED", "20260"))
#: per request; the proxy holds a "timeout" half a second longer than this
TIMEOUT = 1.0
#: accounts per listed page: scim2-server takes 0.4 s to serve a page of 500 (its
#: default) on an idle core of this machine, and over the 1 s timeout while it also
#: takes the other app's writes; a page of 200 takes 0.16 s
PAGE_SIZE = 200
#: every kind evenly over all requests, plus the two kinds only list requests can get
#: (about 1 request in 20) at 4% of those, so that each kind shows up in every run of
#: the suite and the share of faulty requests stays about 20%
LIST_FAULT_RATE = 0.04
#: per run, between runs: the directory's churn
CHURN = {"joiners": 25, "leavers": 12, "changes": 60, "reassign": 8, "rehires": 3}


@pytest.fixture
def chaos_site(
    make_installation: Callable[..., Installation], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Installation, FaultProxy, str]]:
    """Two apps on a standalone scim2-server, reached through the fault proxy over sockets."""
    # Backoffs made small so 20 runs fit in minutes: the connector's in-place backoff
    # (0.5 s base, 30 s cap; Retry-After is still honoured, the proxy sends 1 s) and the
    # batch task's Prefect retry delays (1 s, then 5 s).
    monkeypatch.setattr(
        "connectors.build.ScimConnector",
        functools.partial(ScimConnector, backoff_base=0.05, backoff_cap=2.0),
    )
    monkeypatch.setattr("flows.sync.apply_batch", apply_batch.with_options(retry_delay_seconds=0))
    rates = spread(FAULT_SHARE, [f for f in Fault if f not in LIST_FAULTS])
    rates |= dict.fromkeys(LIST_FAULTS, LIST_FAULT_RATE)
    with standalone_scim(APPS) as upstream:
        proxy = FaultProxy(upstream, rates, seed=SEED, retry_after=1, hold=TIMEOUT + 0.5, slow=0.2)
        with proxy:
            env = make_installation(
                APPS,
                **{
                    app: {
                        "base_url": f"{proxy.url}/{app}/v2",
                        "timeout": TIMEOUT,
                        "page_size": PAGE_SIZE,
                    }
                    for app in APPS
                },
            )
            for app in APPS:  # make_installation routes apps in-process: use the sockets
                session.TRANSPORTS.pop(app, None)
            yield env, proxy, upstream


@pytest.mark.timeout(1800)
def test_twenty_faulty_runs_then_one_clean_run_converge_exactly(
    chaos_site: tuple[Installation, FaultProxy, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, proxy, upstream = chaos_site
    clock = Clock(monkeypatch)
    directory = Directory.initial(PEOPLE, SEED)
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    crashes: list[str] = []
    for number in range(1, RUNS + 1):
        churn = directory.evolve(**CHURN) if number > 1 else None
        env.import_people(directory.rows())
        clock.advance(hours=1)
        began = time.monotonic()
        try:
            result = sync(config_path=env.config_path)
        except Exception as exc:  # the verdict is "no crash": collect, do not stop
            crashes.append(f"run {number}: {type(exc).__name__}: {exc}")
            continue
        runs.append(describe_run(number, result, churn, time.monotonic() - began))
    chaos_seconds = time.monotonic() - started

    rates, proxy.rates = proxy.rates, {}
    during = proxy.counts()
    share = sum(during["injected"].values()) / sum(during["received"].values())
    clock.advance(hours=25)  # past every account backoff and quarantine
    writes_before = proxy.writes()
    clean = sync(config_path=env.config_path)
    clean_writes = proxy.writes() - writes_before
    again = sync(config_path=env.config_path)  # converged means: nothing left to do
    idle_writes = proxy.writes() - writes_before - clean_writes

    config = load_config(env.config_path)
    censuses = {
        app.name: take_census(env.store, app, server_users(upstream, app.name))
        for app in config.apps
    }
    report = {
        "people": len(directory.people),
        "apps": APPS,
        "runs": RUNS,
        "fault_share": FAULT_SHARE,
        "rates": {str(k): round(v, 4) for k, v in rates.items()},
        "faulty_request_share": round(share, 3),
        "seed": SEED,
        "chaos_seconds": round(chaos_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "crashes": crashes,
        "injected": {str(k): proxy.injected[k] for k in Fault},
        "requests": proxy.counts(),
        "app_runs_failed": sum(1 for r in runs for a in r["apps"].values() if a["status"] != "ok"),
        "per_run": runs,
        "clean_run": {a: r["status"] for a, r in clean["apps"].items()},
        "clean_run_writes": clean_writes,
        "second_clean_run_writes": idle_writes,
        "census": {app: vars(c) for app, c in censuses.items()},
        "broken": total(censuses),
    }
    write_report("chaos", report)

    assert crashes == []
    assert len(runs) == RUNS
    assert 0.15 <= share <= 0.25, share
    assert all(n > 0 for n in report["injected"].values()), report["injected"]
    assert report["clean_run"] == {app: "ok" for app in APPS}, clean["apps"]
    assert all(c.in_scope > 0.8 * PEOPLE for c in censuses.values())
    assert report["broken"] == {key: 0 for key in report["broken"]}, report["census"]
    assert idle_writes == 0
    idle = ("created", "updated", "deactivated", "deleted", "linked", "failed", "unmanaged")
    assert {a: {k: r["summary"][k] for k in idle} for a, r in again["apps"].items()} == {
        app: dict.fromkeys(idle, 0) for app in APPS
    }


def describe_run(number: int, result: dict[str, Any], churn: Any, seconds: float) -> dict[str, Any]:
    """One run in the report: each app's status, what it did, and why it failed if it did."""
    apps = {}
    for name, outcome in result["apps"].items():
        summary = outcome.get("summary", {})
        keep = ("created", "updated", "deactivated", "linked", "failed", "waiting", "held")
        apps[name] = {
            "status": outcome.get("status"),
            **{k: summary[k] for k in keep if k in summary},
            "error": (outcome.get("error") or "")[:160] or None,
        }
    return {
        "run": number,
        "seconds": round(seconds, 1),
        "churn": vars(churn) if churn else None,
        "apps": apps,
    }
