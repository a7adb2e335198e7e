"""``roster provision USER``: provision one person now and show each app's steps.

Registered by ``cli/main.py`` as ``app.command("provision")(provision.provision_command)``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.context import config_path
from cli.run import AppOpt, DryRunOpt, JsonOpt, _check_config, _run_flow, stdout


def provision_command(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name or email.")],
    app: AppOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Provision USER now in every app they are assigned (or --app), step by step: in
    scope?, matched account, planned action, result. No app is listed."""
    _check_config(ctx, app)
    from flows.provision import provision_user

    result = _run_flow(
        lambda: provision_user(user=user, app=app, dry_run=dry_run, config_path=config_path(ctx)),
        f"Provisioning {user}",
    )
    if as_json:
        print(json.dumps(result, default=str))
        return
    print_provision(result)
    if any(a.get("status") == "failed" for a in result["apps"].values()):
        raise typer.Exit(1)


def print_provision(result: dict[str, Any]) -> None:
    """One table per app, one row per step."""
    title = f"Provision {result['user']}" + (
        " — dry run, nothing was written" if result["dry_run"] else ""
    )
    stdout.print(f"[bold]{escape(title)}[/]  run {result['run_id']}")
    if not result["apps"]:
        stdout.print("  no configured app is assigned to or linked with this user")
    for name, report in result["apps"].items():
        table = Table("step", "result", "detail", title=name, title_justify="left")
        for step in report["steps"]:
            table.add_row(step["step"], escape(step["result"]), escape(step["detail"]))
        stdout.print(table)
        for note in report.get("notes", []):
            stdout.print(f"  [yellow]{name}[/]: {escape(note)}")
    for name in result.get("not_configured", []):
        stdout.print(f"  [yellow]{name}[/]: assigned, but not configured in roster.yaml")
