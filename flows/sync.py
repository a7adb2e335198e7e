"""The sync flow: for every app, extract, plan, guard, apply, report."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from connectors.errors import ConnectorError
from directory.config import AppConfig, ConfigError, RosterConfig, load_config
from directory.store import Store
from tasks.apply import ApplyContext
from tasks.batches import apply_batch, make_batches, work_items
from tasks.extract import extract_app, extract_directory
from tasks.report import (
    drift_rows,
    publish_report,
    summarize,
    unreadable_rows,
    with_outcomes,
)
from tasks.session import open_connector, open_store
from tasks.steps import AppPlan, plan_app


@flow(name="sync", log_prints=False)
def sync(
    app: str | None = None,
    dry_run: bool = False,
    approve_held: bool = False,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Bring every configured app (or one) in line with the directory."""
    config = load_config(config_path)
    apps = [config.app(app)] if app else config.apps
    if not apps:
        raise ConfigError("no apps are configured: add them to roster.yaml")
    store = open_store(config)
    run_id = store.start_run("sync", dry_run=dry_run, flow_run_id=_flow_run_id())
    users = extract_directory(store)
    results = {
        a.name: sync_app(a, config, store, run_id, users, dry_run, approve_held) for a in apps
    }
    store.finish_run(run_id, results)
    return {"run_id": run_id, "dry_run": dry_run, "apps": results}


def sync_app(
    app: AppConfig,
    config: RosterConfig,
    store: Store,
    run_id: str,
    users: pd.DataFrame,
    dry_run: bool,
    approve_held: bool,
) -> dict[str, Any]:
    """One app; its failure is reported and never blocks the other apps."""
    connector = open_connector(app, dry_run=dry_run)
    try:
        extract = extract_app(connector, list(app.effective_mapping))
        links = store.read_links(app.name)
        assigned = store.read_assigned(app.name)
        planned = plan_app(
            app, users, assigned, extract, links, config.safety_for(app), approve_held
        )
        stopped = None if dry_run else apply_plan(store, app, connector, run_id, planned)
    except (ConnectorError, ConfigError) as exc:
        get_run_logger().error("app %s: %s", app.name, exc)
        return {"status": "failed", "error": str(exc)}
    finally:
        connector.close()
    return report_app(app, store, run_id, planned, extract.errors, stopped, dry_run)


def apply_plan(
    store: Store, app: AppConfig, connector: Any, run_id: str, planned: AppPlan
) -> str | None:
    """Apply batch by batch, in order; returns why the app stopped early, if it did."""
    items = work_items(planned.plan, planned.desired, planned.rules.targets)
    _log_held(store, run_id, app.name, planned.plan)
    ctx = ApplyContext(app=app, connector=connector, rules=planned.rules)
    for batch in make_batches(items, sorted(planned.rules.references)):
        state = apply_batch(store, ctx, run_id, batch, return_state=True)
        if state.is_failed():
            exc = _exception(state)
            if exc.__class__.__name__ == "AppStopped":
                return str(exc)
    return None


def report_app(
    app: AppConfig,
    store: Store,
    run_id: str,
    planned: AppPlan,
    extract_errors: list[str],
    stopped: str | None,
    dry_run: bool,
) -> dict[str, Any]:
    actions = store.read_actions(run_id, app=app.name)
    plan = with_outcomes(planned.plan, actions)
    summary = summarize(plan, dry_run=dry_run)
    notes = [*planned.hold_reasons, *extract_errors[:20]]
    if stopped:
        notes.insert(0, f"stopped: {stopped}")
    if planned.hold_reasons and summary["held"]:
        notes.append(
            f"review the held actions, then run: roster sync --app {app.name} --approve-held"
        )
    rows = drift_rows(app.name, plan) + unreadable_rows(app.name, planned.set_aside)
    summary["failed"] += len(planned.set_aside)
    publish_report(app.name, summary, rows, dry_run=dry_run, notes=notes)
    status = "stopped" if stopped else ("held" if summary["held"] else "ok")
    return {"status": status, "summary": summary, "notes": notes, "drift": rows}


def _log_held(store: Store, run_id: str, app: str, plan: pd.DataFrame) -> None:
    held = plan[plan["held"].astype(bool)]
    if held.empty:
        return
    store.log_actions(
        run_id,
        app,
        [
            {
                "user_id": r.user_id,
                "user_name": r.user_name,
                "remote_id": r.remote_id,
                "action": str(r.action),
                "situation": str(r.situation),
                "changes": r.changes,
                "outcome": "held",
                "error": r.note,
            }
            for r in held.itertuples(index=False)
        ],
    )


def _exception(state: Any) -> BaseException:
    try:
        state.result()
    except BaseException as exc:
        return exc
    return RuntimeError("batch failed")


def _flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


logging.getLogger("roster").addHandler(logging.NullHandler())
