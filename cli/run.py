"""``roster sync``, ``roster offboard``, ``roster report`` and ``roster quarantine``: run
flows, show what they did, and lift an app's quarantine.

With ``--json`` exactly one JSON document goes to stdout; logs and progress go to stderr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.context import cli_errors, config_path, get_config, open_store
from cli.progress import apply_progress
from connectors.build import check_mapping
from connectors.errors import ConnectorError
from directory.config import ConfigError, find_config_path
from directory.errors import DirectoryError

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)

AppOpt = Annotated[str | None, typer.Option("--app", help="Only this app.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Plan and report; send no write to any app.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


class TaskRunnerName(StrEnum):
    """``--task-runner`` (tasks.fanout.RunnerKind, without importing Prefect to parse it)."""

    threads = "threads"
    dask = "dask"


#: app statuses that make ``roster sync`` exit 1
FAILING = ("failed", "stopped", "quarantined", "locked")


def sync_command(
    ctx: typer.Context,
    app: AppOpt = None,
    dry_run: DryRunOpt = False,
    approve_held: Annotated[
        bool, typer.Option("--approve-held", help="Apply actions the safety threshold held.")
    ] = False,
    approval_timeout: Annotated[
        int,
        typer.Option(
            "--approval-timeout",
            min=1,
            help="Against a Prefect server: minutes to wait for a decision on held actions"
            " in its UI before leaving them unapplied.",
        ),
    ] = 60,
    wait_for_lock: Annotated[
        float,
        typer.Option(
            "--wait-for-lock",
            min=0,
            metavar="SECONDS",
            help="When another run is syncing an app, wait this long for it to finish"
            " (default: skip that app and say who holds it).",
        ),
    ] = 0,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Only the users changed since each app's last successful sync (apps with"
            " no earlier sync, or a mapping that calls unique, run in full and say so)."
            " Drift made inside apps waits for the next full sync.",
        ),
    ] = False,
    parallel_apps: Annotated[
        int | None,
        typer.Option(
            "--parallel-apps",
            min=1,
            metavar="N",
            help="Sync up to N apps at once (default: parallel_apps in roster.yaml, else 4).",
        ),
    ] = None,
    task_runner: Annotated[
        TaskRunnerName | None,
        typer.Option(
            "--task-runner",
            help="Run the apps in threads of this process, or on Dask (prefect-dask)"
            " (default: task_runner in roster.yaml, else threads).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring every app (or one) in line with the directory."""
    _check_config(ctx, app)
    from flows.sync import sync
    from tasks.fanout import RunnerKind

    result = _run_flow(
        lambda: sync(
            app=app,
            dry_run=dry_run,
            approve_held=approve_held,
            config_path=config_path(ctx),
            approval_timeout=approval_timeout * 60,
            lock_wait=wait_for_lock,
            mode="incremental" if incremental else "full",
            parallel_apps=parallel_apps,
            task_runner=RunnerKind(task_runner.value) if task_runner else None,
        ),
        "Syncing",
    )
    if as_json:
        from tasks.report import jsonable  # the flow imported it already

        print(json.dumps(result, default=jsonable))
        return
    _print_sync(result)
    if any(a.get("status") in FAILING for a in result["apps"].values()):
        raise typer.Exit(1)


def offboard_command(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name or email.")],
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Deactivate USER in the directory and deprovision them in every linked app now."""
    _check_config(ctx, None)
    from flows.offboard import offboard

    result = _run_flow(
        lambda: offboard(user=user, dry_run=dry_run, config_path=config_path(ctx)),
        f"Offboarding {user}",
    )
    if as_json:
        from tasks.report import jsonable  # the flow imported it already

        print(json.dumps(result, default=jsonable))
        return
    _print_offboard(result)
    if any(a.get("outcome") == "failed" for a in result["apps"].values()):
        raise typer.Exit(1)


def report_command(
    ctx: typer.Context,
    failed: Annotated[
        bool, typer.Option("--failed", help="Accounts whose latest action failed, any run.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the last run's summary and actions (from the action log; no Prefect needed)."""
    with open_store(ctx) as (_, store):
        run = _latest_run(store)
        if run is None:
            stderr.print("no runs yet: run `roster sync`")
            raise typer.Exit(1)
        actions = (
            with_retries(still_failing(store.read_actions()), store.read_account_retries())
            if failed
            else store.read_actions(run["run_id"])
        )
    if as_json:
        records = json.loads(actions.to_json(orient="records", date_format="iso"))
        print(json.dumps({"run": run, "actions": records}, default=str))
        return
    stdout.print(f"[bold]Last run {run['run_id']}[/] ({run['kind']}, started {run['started_at']})")
    summary = run.get("summary") or {}
    if run["kind"] == "sync" and summary and not failed:
        _print_summary_table(summary)
    _print_actions(actions)


def _latest_run(store: Any) -> dict[str, Any] | None:
    """The latest sync or offboarding (imports are runs too, but have no account actions)."""
    runs = [r for r in (store.latest_run("sync"), store.latest_run("offboard")) if r]
    return max(runs, key=lambda r: r["started_at"]) if runs else None


def still_failing(actions: Any) -> Any:
    """The latest action per app and user, where it failed."""
    if actions.empty:
        return actions
    latest = actions.sort_values("id").groupby(["app", "user_id"], as_index=False).last()
    return latest[latest["outcome"] == "failed"]


def with_retries(failing: Any, retries: Any) -> Any:
    """Failing actions with each account's failure count and next attempt time."""
    columns = ["app", "user_id", "failures", "next_attempt_at"]
    merged = failing.merge(retries[columns], on=["app", "user_id"], how="left")
    merged["failures"] = merged["failures"].astype(object).where(merged["failures"].notna(), None)
    return merged


def _check_config(ctx: typer.Context, app: str | None) -> None:
    """Fail fast, before Prefect starts, on what the user can fix: config, app name, tokens
    in the environment (Secret blocks need Prefect: they are read when the app syncs)."""
    from tasks.tokens import check_env_token

    with cli_errors():
        config = get_config(config_path(ctx))
        source = find_config_path(config_path(ctx))
        names = [a.name for a in config.apps]
        for selected in [config.app(app)] if app else config.apps:
            check_env_token(selected)
            check_mapping(selected, f"{source}: apps[{names.index(selected.name)}].mapping")
        if not config.apps:
            raise ConfigError("no apps are configured: add them to roster.yaml")


@contextmanager
def _quiet_prefect() -> Iterator[None]:
    """Prefect's flow heartbeat makes every flow wait ~1 s at exit; a CLI run needs none.
    A task that failed with a typed error (an app refused, or answered nonsense) is one
    line on the terminal, not a traceback; the Prefect API still gets the traceback."""
    from prefect.logging.handlers import PrefectConsoleHandler
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    formatters = [handler.formatter for handler in consoles]
    for handler, formatter in zip(consoles, formatters, strict=True):
        handler.setFormatter(_TypedErrorsOnOneLine(formatter))
    try:
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        for handler, formatter in zip(consoles, formatters, strict=True):
            handler.setFormatter(formatter)


class _TypedErrorsOnOneLine(logging.Formatter):
    """Formats like ``inner``, without the traceback of Roster's own typed errors."""

    TYPED = (ConnectorError, ConfigError, DirectoryError)

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and isinstance(record.exc_info[1], self.TYPED):
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return self.inner.format(record)


def _run_flow(call: Callable[[], dict[str, Any]], label: str) -> dict[str, Any]:
    with cli_errors():
        try:
            with apply_progress(stderr, f"{label}…"), _quiet_prefect():
                return call()
        except ConnectorError as exc:
            from cli.context import fail

            fail(str(exc))


def _print_sync(result: dict[str, Any]) -> None:
    title = "Roster sync" + (" — dry run, nothing was written" if result["dry_run"] else "")
    stdout.print(f"[bold]{title}[/]  run {result['run_id']}")
    _print_summary_table(result["apps"])
    for name, outcome in result["apps"].items():
        for note in outcome.get("notes", []):
            stdout.print(f"  [yellow]{name}[/]: {escape(note)}")
        if outcome.get("status") in ("failed", "locked"):
            stdout.print(f"  [red]{name}: {escape(str(outcome['error']))}[/]")
        if "quarantine" in outcome:
            stdout.print(
                f"  [red]{name}[/]: lift the quarantine with: roster quarantine lift {name}"
            )
        drift = [r for r in outcome.get("drift", []) if _worth_showing(r)]
        if drift:
            _print_drift(name, drift)
    if not result["dry_run"] and any("approve_with" in a for a in result["apps"].values()):
        stdout.print(
            "Held actions were not applied. Nobody can approve them here: Prefect runs in"
            " local mode. Run the command above to apply them, or set PREFECT_API_URL to a"
            " Prefect server to approve them in its UI."
        )


#: report rows a person reviews whatever their action
REVIEW_STATUSES = ("failed", "held", "waiting", "rejected", "expired")


def _worth_showing(row: dict[str, Any]) -> bool:
    """Drift a person reviews: changes to existing accounts, failures, holds and accounts
    waiting for a retry. Creates are counted in the summary and listed in full in the
    drift artifact."""
    return row["status"] in REVIEW_STATUSES or row["action"] in (
        "update",
        "link",
        "deactivate",
        "delete",
    )


def _print_summary_table(apps: dict[str, Any]) -> None:
    """One column per app, one row per count: it stays readable on a narrow terminal."""
    from tasks.groupsync import GROUP_SUMMARY_KEYS
    from tasks.report import SUMMARY_KEYS

    table = Table("", *apps)
    table.add_row("status", *(str(a.get("status", "?")) for a in apps.values()))
    table.add_row("mode", *(str(a.get("mode", "")) for a in apps.values()))
    summaries = [a.get("summary") or {} for a in apps.values()]
    groups = [k for k in GROUP_SUMMARY_KEYS if any(k in s for s in summaries)]
    for key in (*SUMMARY_KEYS, "considered", *groups):
        table.add_row(key, *(str(summary.get(key, "")) for summary in summaries))
    stdout.print(table)


def _print_drift(app: str, rows: list[dict[str, Any]], limit: int = 20) -> None:
    table = Table(
        "user", "action", "changed in", "status", "attribute", "old → new", "error", title=app
    )
    for row in rows[:limit]:
        change = "" if row["attribute"] is None else f"{row['old']} → {row['new']}"
        table.add_row(
            *_plain(
                row["user"] or row["remote_id"],
                row["action"],
                row.get("origin") or "",
                row["status"],
                row["attribute"] or "",
                change,
                row["error"] or "",
            )
        )
    stdout.print(table)
    if len(rows) > limit:
        stdout.print(f"  … {len(rows) - limit} more rows in the Prefect artifact drift-{app}")


def _print_offboard(result: dict[str, Any]) -> None:
    stdout.print(
        f"[bold]Offboarded {escape(str(result['user']))}[/]  run {result['run_id']}"
        + (" — dry run" if result["dry_run"] else "")
    )
    if not result["apps"]:
        stdout.print("  no linked apps: nothing to deprovision")
        return
    table = Table("app", "action", "outcome", "active in app now", "error")
    for name, outcome in result["apps"].items():
        active = outcome.get("active_in_app")
        shown = "gone" if active is None and outcome.get("action") == "delete" else str(active)
        table.add_row(
            *_plain(
                name,
                outcome.get("action", ""),
                outcome.get("outcome", ""),
                shown,
                outcome.get("error") or outcome.get("note") or "",
            )
        )
    stdout.print(table)


def _print_actions(actions: Any) -> None:
    if actions.empty:
        stdout.print("no account actions")
        return
    retries = "next_attempt_at" in actions
    columns = ["app", "user", "action", "outcome", "attempts", "error"]
    table = Table(*columns, *(["failed runs", "next attempt"] if retries else ["decided by"]))
    for row in actions.itertuples(index=False):
        cells = [row.app, str(row.user_name), row.action, row.outcome, str(row.attempts)]
        cells.append(row.error or "")
        if retries:
            cells += [_text(row.failures), _when(row.next_attempt_at)]
        else:
            cells.append(_decider(row.decided_by, row.decided_at))
        table.add_row(*_plain(*cells))
    stdout.print(table)


def _plain(*cells: Any) -> list[str]:
    """Table cells as text, never markup: errors and values come from apps, and a title
    like "[/b]" would crash the table (rich MarkupError) or restyle it."""
    return [escape(str(cell)) for cell in cells]


def _decider(who: Any, when: Any) -> str:
    return "" if not _present(when) else f"{_text(who) or '-'} at {_when(when)}"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if _present(value) else ""


def _text(value: Any) -> str:
    return str(value) if _present(value) else ""


def _present(value: Any) -> bool:
    import pandas as pd

    return value is not None and not pd.isna(value)


# -- roster quarantine -------------------------------------------------------------------

quarantine_app = typer.Typer(
    help="Apps skipped after failing run after run, and lifting that.", no_args_is_help=True
)


@quarantine_app.command("list")
def quarantine_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Apps with app-level failures on record: quarantined or on their way to it."""
    with open_store(ctx) as (_, store):
        states = store.list_app_health()
    if as_json:
        print(json.dumps([_health_dict(h) for h in states], default=str))
        return
    if not states:
        stdout.print("no app is failing or quarantined")
        return
    table = Table("app", "state", "failed runs", "reason", "since", "next retry", "last error")
    for h in states:
        table.add_row(
            *_plain(
                h.app,
                "quarantined" if h.quarantined else "failing",
                str(h.failures),
                h.reason or "",
                _when(h.quarantined_since or h.failing_since),
                _when(h.next_retry_at),
                h.last_error or "",
            )
        )
    stdout.print(table)


@quarantine_app.command("lift")
def quarantine_lift(
    ctx: typer.Context, app: Annotated[str, typer.Argument(help="The app to sync again.")]
) -> None:
    """Lift APP's quarantine (and forget its failures): the next sync runs it again."""
    with open_store(ctx) as (config, store):
        config.app(app)  # an unknown app name is an error, not a silent no-op
        before = store.lift_quarantine(app)
    if before.quarantined:
        stdout.print(f"lifted the quarantine of {app}: the next sync runs it")
    elif before.failures:
        stdout.print(
            f"{app} was not quarantined; its {before.failures} failed run(s) are forgotten"
        )
    else:
        stdout.print(f"{app} is not quarantined")


def _health_dict(health: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {**asdict(health), "quarantined": health.quarantined}
