"""``roster explain USER APP``: why Roster does what it does for one person in one app.

Read-only, and without Prefect: the answer comes from plain functions (``tasks.explain``),
the app is only asked for the person's account (find/get), and no run is recorded.
Registered by ``cli/main.py`` as ``app.command("explain")(explain.explain_command)``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from cli.context import fail, open_store
from connectors.errors import ConnectorError
from tasks.explain import Explanation, MappingRow, explain_user

stdout = Console(highlight=False)


def explain_command(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="user_name, email or id (any case)")],
    app: Annotated[str, typer.Argument(help="app name, as in roster.yaml")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead")] = False,
) -> None:
    """Explain USER in APP: scope and what decided it, the assignment path, the matched
    account and by which attribute, the evaluated mapping against the account, and the
    action a sync would take with the setting behind it. Writes nothing anywhere."""
    with open_store(ctx) as (config, store):
        try:
            explanation = explain_user(store, config, user, app)
        except ConnectorError as exc:
            fail(f"app {app!r} could not be read: {exc}")
    if as_json:
        typer.echo(json.dumps(explanation.as_dict(), indent=2, default=str))
        return
    print_explanation(explanation)


def print_explanation(explanation: Explanation) -> None:
    """The decision in a panel, the mapping in a table below it."""
    stdout.print(Panel(_summary(explanation), title=_title(explanation), title_align="left"))
    stdout.print(_mapping_table(explanation.mapping))
    for note in explanation.notes:
        stdout.print(f"[yellow]note[/]: {escape(note)}")


def _title(explanation: Explanation) -> str:
    return f"[bold]{escape(explanation.user)}[/] in [bold]{escape(explanation.app)}[/]"


def _summary(explanation: Explanation) -> Group:
    scope, match, plan = explanation.scope, explanation.match, explanation.plan
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    verdict = "[green]in scope[/]" if scope.in_scope else "[yellow]out of scope[/]"
    clause = f" (clause: {escape(scope.clause)})" if scope.clause else ""
    facts.add_row("scope", f"{verdict}: {escape(scope.reason)}{clause}")
    facts.add_row("assignment", escape(explanation.assignment.describe()))
    by = "nothing matched" if match.by is None else f"by {match.by}"
    facts.add_row("account", f"{escape(by)}: {escape(match.detail)}")
    action = f"[bold]{escape(str(plan['action']))}[/] ({escape(str(plan['situation']))})"
    if plan.get("note"):
        action += f": {escape(str(plan['note']))}"
    facts.add_row("planned action", action)
    for old_new in _changes(plan.get("changes") or {}):
        facts.add_row("", escape(old_new))
    for i, line in enumerate(explanation.policy):
        facts.add_row("policy" if i == 0 else "", escape(line))
    return Group(facts)


def _changes(changes: dict[str, list[object]]) -> list[str]:
    return [
        f"{path} = {new}" if old is None else f"{path}: {old} → {new}"
        for path, (old, new) in changes.items()
    ]


def _mapping_table(rows: list[MappingRow]) -> Table:
    table = Table(title="mapping")
    table.add_column("target", overflow="fold")  # enterprise URNs: truncated, all look alike
    for header in ("source", "desired", "in the app", "differs", "notes"):
        table.add_column(header)
    for row in rows:
        differs = {True: "[yellow]yes[/]", False: "no", None: "[dim]-[/]"}[row.differs]
        table.add_row(
            escape(row.target),
            f"[dim]{row.kind}[/] {escape(row.source)}",
            _value(row.desired),
            _value(row.current),
            differs,
            escape("; ".join(row.notes)),
        )
    return table


def _value(value: object) -> str:
    return "[dim]null[/]" if value is None else escape(str(value))
