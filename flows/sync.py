"""The sync flow: for every app, extract, plan, guard, apply, report; then held actions wait
for a decision.

Before an app is touched its health is checked: a quarantined app is skipped until its
next retry time, and accounts still backing off after failures are left alone
(``tasks.health``). Decisions on held actions are asked for last, so an approver's
lunch break never delays the other apps (``tasks.approval``).

``mode="incremental"`` plans, per app, only the users changed since the app's watermark
(``tasks.incremental``); an app with no watermark yet, or whose mapping needs every
account, runs full and says why. A run that ends ``ok`` advances the app's watermark of
the mode it ran.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dc_fields
from datetime import datetime
from typing import Any, Literal, cast

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from connectors.errors import ConnectorError
from connectors.ratelimit import TrafficStats
from directory.actionlog import Outcome
from directory.config import AppConfig, ConfigError, RosterConfig, load_config
from directory.errors import AppLockedError
from directory.models import utcnow
from directory.store import Store
from directory.watermarks import SyncMode
from tasks.apply import ApplyContext
from tasks.approval import (
    ApprovalResult,
    approvals_in_ui,
    approve_command,
    ask_for_decision,
    held_rows,
    not_asked,
)
from tasks.batches import apply_batch, make_batches, work_items
from tasks.extract import extract_app, extract_directory
from tasks.fanout import RunnerKind, app_task_runner, fan_out
from tasks.groupsync import DirectoryGroups, GroupResult, sync_groups
from tasks.guard import held_only, release_held
from tasks.health import (
    Gate,
    HealthPolicy,
    gate,
    mark_waiting,
    waiting_accounts,
    with_next_attempts,
)
from tasks.incremental import extract_changes, full_run_reason, settings_hash
from tasks.locks import app_lock, lock_holder
from tasks.progress import ApplyProgress
from tasks.report import (
    ReportRows,
    config_warnings,
    drift_rows,
    publish_report,
    summarize,
    unmapped_rows,
    unreadable_rows,
    with_outcomes,
)
from tasks.session import current_flow_run_id, open_connector, open_store, settle_memory
from tasks.steps import (
    AppPlan,
    log_held,
    plan_app,
    quarantine_report,
    record_health,
    record_retries,
)

#: seconds approved held actions wait for an app another run is writing to
APPROVED_LOCK_WAIT = 600

#: the flow's clock, read once per run; tests move time by replacing it
clock: Callable[[], datetime] = utcnow

Mode = Literal["full", "incremental"]


@dataclass
class SyncRun:
    """What every app of one sync shares."""

    config: RosterConfig
    store: Store
    run_id: str
    #: the whole directory; read on first use in an incremental run (``directory()``)
    users: pd.DataFrame | None
    dry_run: bool
    approve_held: bool
    now: datetime
    policy: HealthPolicy
    lock_wait: float = 0
    #: the directory's groups, read once when any app maps or pushes groups
    groups: DirectoryGroups | None = None
    mode: SyncMode = SyncMode.FULL
    #: the wall clock before the directory was read: the watermark a success records
    started: datetime = field(default_factory=utcnow)
    _directory_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def directory(self) -> pd.DataFrame:
        """Every directory user, read once per run (apps may run in parallel)."""
        with self._directory_lock:
            if self.users is None:
                self.users = extract_directory(self.store)
            return self.users

    @property
    def holder(self) -> str:
        return lock_holder(self.run_id)

    def lock(self, app: AppConfig, *, wait: float | None = None) -> AbstractContextManager[Any]:
        """The app's lock for this run's writes; a dry run writes nothing and takes none."""
        if self.dry_run:
            return nullcontext()
        wait = self.lock_wait if wait is None else wait
        return app_lock(self.store, app.name, self.holder, wait=wait)


@dataclass
class AppRun:
    """One app's part of a sync, kept until the end so held actions can still be applied."""

    app: AppConfig
    result: dict[str, Any]
    planned: AppPlan | None = None
    retries: pd.DataFrame | None = None
    extract_errors: list[str] = field(default_factory=list)
    mode: SyncMode = SyncMode.FULL
    #: directory users the plan considered (an incremental run: the changed ones)
    considered: int = 0
    groups: GroupResult | None = None
    groups_error: str | None = None
    #: what the app's traffic control did (budgets, pauses, adaptive concurrency)
    traffic: TrafficStats | None = None

    @property
    def needs_decision(self) -> bool:
        return self.planned is not None and self.result.get("status") == "held"


@flow(name="sync", log_prints=False)
def sync(
    app: str | None = None,
    dry_run: bool = False,
    approve_held: bool = False,
    config_path: str | None = None,
    wait_for_approval: bool | None = None,
    approval_timeout: int = 3600,
    quarantine_after: int = 3,
    lock_wait: float = 0,
    mode: Mode = "full",
    parallel_apps: int | None = None,
    task_runner: RunnerKind | None = None,
) -> dict[str, Any]:
    """Bring every configured app (or one) in line with the directory.

    Held actions wait up to ``approval_timeout`` seconds for a decision in the Prefect UI
    when a Prefect server is there to show it (``wait_for_approval`` None); True or False
    forces it. An app failing ``quarantine_after`` runs in a row for one app-level reason
    is quarantined. An app another run is writing to is waited for up to ``lock_wait``
    seconds, then reported ``locked`` and left alone. ``mode="incremental"`` plans only
    the users changed since each app's last successful run (see the module docstring).
    Up to ``parallel_apps`` apps run at once on ``task_runner`` (threads or dask); None
    takes roster.yaml's settings.
    """
    return run_sync(**locals())


@flow(name="sync-app", log_prints=False)
def sync_one_app(
    app: str,
    dry_run: bool = False,
    approve_held: bool = False,
    config_path: str | None = None,
    wait_for_approval: bool | None = None,
    approval_timeout: int = 3600,
    quarantine_after: int = 3,
    lock_wait: float = 0,
    mode: Mode = "full",
    parallel_apps: int | None = None,
    task_runner: RunnerKind | None = None,
) -> dict[str, Any]:
    """Bring one app in line with the directory: the ``sync-app`` deployment's flow.

    ``app`` is required here, so a run started without it fails at once with Prefect's
    parameter error instead of quietly syncing every app.
    """
    return run_sync(**locals())


def run_sync(
    app: str | None,
    dry_run: bool,
    approve_held: bool,
    config_path: str | None,
    wait_for_approval: bool | None,
    approval_timeout: int,
    quarantine_after: int,
    lock_wait: float,
    mode: Mode = "full",
    parallel_apps: int | None = None,
    task_runner: RunnerKind | None = None,
) -> dict[str, Any]:
    """The body of both sync flows, inside a flow run."""
    settle_memory()
    sync_mode = SyncMode(mode)
    config = load_config(config_path)
    apps = [config.app(app)] if app else config.apps
    if not apps:
        raise ConfigError("no apps are configured: add them to roster.yaml")
    store = open_store(config)
    try:
        started = utcnow()
        run = SyncRun(
            config=config,
            store=store,
            run_id=store.start_run("sync", dry_run=dry_run, flow_run_id=current_flow_run_id()),
            users=extract_directory(store) if sync_mode is SyncMode.FULL else None,
            dry_run=dry_run,
            approve_held=approve_held,
            now=clock(),
            policy=HealthPolicy(quarantine_after=quarantine_after),
            lock_wait=lock_wait,
            mode=sync_mode,
            started=started,
            groups=read_directory_groups(store) if any(a.uses_groups for a in apps) else None,
        )
        runs = sync_apps(apps, run, parallel_apps, task_runner)
        if _ask_for_decisions(runs, run, wait_for_approval):
            decide_held(runs, run, approval_timeout)
        results = {r.app.name: r.result for r in runs}
        store.finish_run(run.run_id, _storable(results))
    finally:
        store.dispose()
    return {"run_id": run.run_id, "dry_run": dry_run, "mode": str(sync_mode), "apps": results}


def _storable(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The apps' results as plain JSON values for the run's record."""
    return {
        name: {k: v.as_list() if isinstance(v, ReportRows) else v for k, v in result.items()}
        for name, result in results.items()
    }


def sync_apps(
    apps: Sequence[AppConfig], run: SyncRun, limit: int | None, kind: RunnerKind | None
) -> list[AppRun]:
    """Every app as a task of its own, side by side (``tasks.fanout``), in config order."""
    kind = RunnerKind(kind or run.config.task_runner)
    limit = min(limit or run.config.parallel_apps, len(apps))
    # quote(): Prefect would walk the run's frames for every task; Dask would take the
    # quote (a tuple) apart, and gets a PortableRun, small enough to walk, instead
    shared: Any = quote(run) if kind is RunnerKind.THREADS else PortableRun.of(run)
    if kind is RunnerKind.THREADS and limit == 1:
        # one at a time: in the flow's own thread, no pool (and profilers see the work)
        states = [sync_app_task(app=app, run=shared, return_state=True) for app in apps]
        return [state.result() for state in states]  # a crash, after every app ran
    runner = app_task_runner(kind, limit, run.config.dask_address)
    return fan_out(runner, sync_app_task, apps, lambda a: {"app": a, "run": shared})


@dataclass(frozen=True)
class PortableRun:
    """A ``SyncRun`` without its open store, for an app task in another process (Dask),
    which opens its own store from the URL."""

    database_url: str = field(repr=False)
    fields: dict[str, Any]

    @classmethod
    def of(cls, run: SyncRun) -> PortableRun:
        # neither the open store nor the run's own locks cross to another process
        fields = {
            f.name: getattr(run, f.name)
            for f in dc_fields(run)
            if f.name != "store" and not f.name.startswith("_")
        }
        return cls(run.store.engine.url.render_as_string(hide_password=False), fields)


@task(name="sync-app", task_run_name="{app.name}", cache_policy=NO_CACHE)
def sync_app_task(app: AppConfig, run: SyncRun | PortableRun) -> AppRun:
    """One app's extract, plan, apply and report, as a task the UI shows beside the
    other apps'."""
    if isinstance(run, SyncRun):
        return sync_app(app, run)
    store = Store(run.database_url)
    try:
        return sync_app(app, SyncRun(store=store, **run.fields))
    finally:
        store.dispose()


def sync_app(app: AppConfig, run: SyncRun) -> AppRun:
    """One app; its failure is reported and never blocks the other apps."""
    health = run.store.read_app_health(app.name)
    if gate(health, run.now) is Gate.SKIP:
        return AppRun(app, quarantine_report(health, skipped=True))
    failure: BaseException | None
    try:
        with run.lock(app):
            app_run, failure = _sync_app(app, run)
    except AppLockedError as exc:  # not the app's fault: its health is left as it is
        get_run_logger().warning("%s", exc)
        return AppRun(app, {"status": "locked", "error": str(exc)})
    except (ConnectorError, ConfigError) as exc:
        get_run_logger().error("app %s: %s", app.name, exc)
        result = {"status": "failed", "error": str(exc), "notes": config_warnings(app)}
        app_run, failure = AppRun(app, result), exc
    if not run.dry_run:
        record_health(run.store, health, failure, app_run.result, run.now, run.policy)
        if failure is None and app_run.result.get("status") == "ok":
            run.store.save_watermark(
                app.name, app_run.mode, run.started, run.run_id, settings_hash(app)
            )
    return app_run


def _sync_app(app: AppConfig, run: SyncRun) -> tuple[AppRun, BaseException | None]:
    connector = open_connector(app, dry_run=run.dry_run)
    try:
        app_run = plan_one(app, run, connector)
        planned = app_run.planned
        assert planned is not None
        stopped = None if run.dry_run else apply_plan(run.store, app, connector, run, planned)
        if app.push_groups is not None and stopped is None:
            keep_groups(app_run, connector, run)
        app_run.traffic = getattr(connector, "traffic_stats", None)
    finally:
        connector.close()
    app_run.result = report_app(app_run, run, stopped)
    return app_run, stopped


def plan_one(app: AppConfig, run: SyncRun, connector: Any) -> AppRun:
    """Extract and plan one app, incrementally where the run and the app allow it."""
    retries = run.store.read_account_retries(app.name)
    assigned = cast(set[str], quote(run.store.read_assigned(app.name)))
    safety, waiting = run.config.safety_for(app), waiting_accounts(retries, run.now)
    marks = run.store.read_watermarks(app.name)
    since = marks.since()
    reason = full_run_reason(app, marks) if run.mode is SyncMode.INCREMENTAL else None
    if run.mode is SyncMode.INCREMENTAL and reason is None and since is not None:
        changes = extract_changes(run.store, connector, app, since)
        planned = plan_app(
            app,
            changes.users,
            assigned,
            changes.extract,
            changes.links,
            safety,
            run.approve_held,
            waiting,
            _groups_of(run),
            only=changes.user_ids,
            counts=changes.counts,
        )
        errors = changes.notes + changes.extract.errors
        return AppRun(app, {}, planned, retries, errors, SyncMode.INCREMENTAL, changes.considered)
    users = run.directory()
    extract = extract_app(connector, list(app.effective_mapping))
    links = run.store.read_links(app.name)
    planned = plan_app(
        app, users, assigned, extract, links, safety, run.approve_held, waiting, _groups_of(run)
    )
    errors = ([f"mode: full, not incremental: {reason}"] if reason else []) + extract.errors
    return AppRun(app, {}, planned, retries, errors, SyncMode.FULL, len(users))


def _groups_of(run: SyncRun) -> Mapping[str, Iterable[str]] | None:
    """Each user's group names, for mappings that write them (None: no app does)."""
    return cast(dict, quote(run.groups.names_by_user())) if run.groups is not None else None


def read_directory_groups(store: Store) -> DirectoryGroups:
    return DirectoryGroups(store.read_groups(), store.read_group_members())


def keep_groups(app_run: AppRun, connector: Any, run: SyncRun) -> None:
    """The app's groups after its accounts; a failure here is reported with the app's
    results and never undoes the account work."""
    planned = app_run.planned
    assert planned is not None and run.groups is not None
    desired = planned.desired
    in_scope = desired.loc[desired["in_scope"].astype(bool), "user_id"].tolist()
    held = bool(planned.plan["held"].astype(bool).any())
    try:
        app_run.groups = sync_groups(
            app_run.app,
            cast(Any, quote(connector)),
            cast(Any, quote(run.store)),
            run.run_id,
            cast(Any, quote(run.groups)),
            cast(Any, quote(in_scope)),
            cast(Any, quote(run.directory())),
            run.config.safety_for(app_run.app),
            dry_run=run.dry_run,
            account_hold=planned.hold_reasons if held else [],
            approve_held=run.approve_held,
        )
    except ConnectorError as exc:
        get_run_logger().error("app %s: groups: %s", app_run.app.name, exc)
        app_run.groups_error = str(exc)


def apply_plan(
    store: Store, app: AppConfig, connector: Any, run: SyncRun, planned: AppPlan
) -> BaseException | None:
    """Apply batch by batch, in order; returns why the app stopped early, if it did.
    Accounts waiting out their backoff are not applied."""
    items = [
        item
        for item in work_items(planned.plan, planned.desired, planned.rules.targets)
        if item.user_id not in planned.waiting
    ]
    log_held(store, run.run_id, app.name, planned.plan)
    ctx = ApplyContext(app=app, connector=connector, rules=planned.rules)
    progress = ApplyProgress(app.name, total=len(items))
    progress.start()
    for batch in make_batches(items, sorted(planned.rules.references)):
        # quote(): Prefect would otherwise walk every account of the batch, twice, per task
        state = apply_batch(store, quote(ctx), run.run_id, quote(batch), return_state=True)
        progress.advance(len(batch.items))
        if state.is_failed():
            exc = _exception(state)
            if exc.__class__.__name__ == "AppStopped":
                return exc
    return None


def report_app(
    app_run: AppRun,
    run: SyncRun,
    stopped: BaseException | None,
    decision: ApprovalResult | None = None,
) -> dict[str, Any]:
    """Outcomes from the action log, retry times recorded, artifacts published."""
    app, planned = app_run.app, app_run.planned
    assert planned is not None
    actions = run.store.read_actions(run.run_id, app=app.name)
    plan = mark_waiting(with_outcomes(planned.plan, actions), planned.waiting)
    next_attempts = dict(planned.waiting)
    if not run.dry_run:
        next_attempts.update(
            record_retries(
                run.store, app.name, plan, app_run.retries, run.now, complete=stopped is None
            )
        )
    summary = summarize(plan, dry_run=run.dry_run)
    summary["waiting"] = len(planned.waiting)
    summary["considered"] = app_run.considered
    notes = config_warnings(app) + _notes(
        app.name, planned, summary, app_run.extract_errors, stopped, decision
    )
    rows = drift_rows(app.name, plan) + unreadable_rows(app.name, planned.set_aside)
    rows += unmapped_rows(app.name, planned.unmapped)
    rows = _decided(with_next_attempts(rows, plan, next_attempts), decision)
    summary["failed"] += len(planned.set_aside) + len(planned.unmapped)
    if app_run.groups is not None:
        summary.update(app_run.groups.summary)
        rows += app_run.groups.rows
        notes += [f"groups: {note}" for note in app_run.groups.notes]
    if app_run.groups_error is not None:
        notes.append(f"groups not kept this run: {app_run.groups_error}")
    traffic = app_run.traffic
    if traffic is not None and (traffic.throttled or traffic.paused or traffic.waited >= 1):
        notes.append(f"traffic: {traffic.describe()}")  # the app held Roster back
    publish_report(app.name, summary, cast(list, quote(rows)), dry_run=run.dry_run, notes=notes)
    status = "stopped" if stopped else ("held" if summary["held"] else "ok")
    result = {
        "status": status,
        "mode": str(app_run.mode),
        "summary": summary,
        "notes": notes,
        "drift": ReportRows(rows),  # Prefect would walk a list of them (tasks.report)
    }
    if traffic is not None:
        result["traffic"] = asdict(traffic)
    if decision is not None:
        result["approval"] = decision.as_dict()
    elif status == "held":
        result["approve_with"] = approve_command(app.name)
    return result


def _notes(
    app: str,
    planned: AppPlan,
    summary: dict[str, int],
    extract_errors: list[str],
    stopped: BaseException | None,
    decision: ApprovalResult | None,
) -> list[str]:
    notes = [*planned.hold_reasons, *extract_errors[:20]]
    if stopped:
        notes.insert(0, f"stopped: {stopped}")
    if planned.waiting:
        first = min(planned.waiting.values()).strftime("%Y-%m-%d %H:%M UTC")
        notes.append(
            f"{len(planned.waiting)} failing accounts wait for their next attempt"
            f" (the first at {first})"
        )
    if decision is not None:
        who = f" by {decision.approver}" if decision.approver else ""
        why = f": {decision.comment}" if decision.comment else ""
        notes.append(f"held actions {decision.outcome.value}{who}{why}")
    elif planned.hold_reasons and summary["held"]:
        counts = planned.plan.loc[planned.plan["held"].astype(bool), "action"].value_counts()
        kinds = ", ".join(f"{n} {action}" for action, n in counts.items())
        notes.append(
            f"{summary['held']} actions held and not applied ({kinds}); review them, then run:"
            f" {approve_command(app)}"
        )
    return notes


def _decided(rows: list[dict[str, Any]], decision: ApprovalResult | None) -> list[dict[str, Any]]:
    """Held rows say what became of them once someone decided (or nobody did)."""
    if decision is None or decision.approved:
        return rows
    status = decision.outcome.value
    return [{**row, "status": status} if row["status"] == "held" else row for row in rows]


# -- decisions on held actions -----------------------------------------------------------


def _ask_for_decisions(runs: list[AppRun], run: SyncRun, wait: bool | None) -> bool:
    if run.dry_run or not any(r.needs_decision for r in runs):
        return False
    return approvals_in_ui() if wait is None else wait


def decide_held(runs: list[AppRun], run: SyncRun, timeout: int) -> None:
    """Ask, app by app, for a decision on its held actions, and carry it out. A run whose
    pause expired cannot pause again, so the apps after an expiry expire too."""
    expired = False
    for app_run in (r for r in runs if r.needs_decision):
        assert app_run.planned is not None
        name = app_run.app.name
        if expired:
            decision = not_asked(name, "an earlier approval of this run expired", clock)
        else:
            rows = held_rows(app_run.planned.plan)
            decision = ask_for_decision(
                name, rows, app_run.planned.hold_reasons, timeout=timeout, clock=clock
            )
            expired = decision.outcome is Outcome.EXPIRED
        carry_out(app_run, run, decision)


def carry_out(app_run: AppRun, run: SyncRun, decision: ApprovalResult) -> None:
    """Log the decision on the held rows; on approval apply them; report again."""
    app, planned = app_run.app, app_run.planned
    assert planned is not None
    run.store.record_decision(
        run.run_id,
        app.name,
        decision.outcome,
        decided_by=decision.approver,
        decided_at=decision.decided_at,
        note=decision.comment,
    )
    stopped: BaseException | None = None
    if decision.approved:
        try:
            with run.lock(app, wait=max(run.lock_wait, APPROVED_LOCK_WAIT)):
                connector = open_connector(app, dry_run=False)
                try:
                    only = replace(planned, plan=release_held(held_only(planned.plan)))
                    stopped = apply_plan(run.store, app, connector, run, only)
                finally:
                    connector.close()
        except AppLockedError as exc:
            stopped = exc
        reasons = [f"approved: {reason}" for reason in planned.hold_reasons]
        released = release_held(planned.plan, note=f"held, then approved by {decision.approver}")
        app_run.planned = replace(planned, plan=released, hold_reasons=reasons)
    app_run.result = report_app(app_run, run, stopped, decision)


def _exception(state: Any) -> BaseException:
    try:
        state.result()
    except BaseException as exc:
        return exc
    return RuntimeError("batch failed")


logging.getLogger("roster").addHandler(logging.NullHandler())
