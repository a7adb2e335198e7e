"""``roster mapping preview USER APP``: what each target attribute would be for one person,
and where it comes from, without touching the app.

Registered by ``cli/main.py`` as ``app.add_typer(mapping_app, name="mapping")``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.context import open_store
from tasks.desired import preview_mapping

mapping_app = typer.Typer(
    help="Inspect app mappings: which directory field, constant or expression gives each "
    "attribute.",
    no_args_is_help=True,
)
stdout = Console(highlight=False)


@mapping_app.command("preview")
def preview(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="user_name, email or id (any case)")],
    app: Annotated[str, typer.Argument(help="app name, as in roster.yaml")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead")] = False,
) -> None:
    """Show USER's value for every target attribute of APP: target, source (field, constant
    or expression), value and notes (default used, create-only). Reads only the directory."""
    with open_store(ctx) as (config, store):
        settings = config.app(app)
        person = store.find_user(user)
    rows = preview_mapping(person, settings.effective_mapping)
    if as_json:
        typer.echo(json.dumps([asdict(row) for row in rows], indent=2, default=str))
        return
    table = Table("target", "source", "value", "notes", title=f"{app}: {person['user_name']}")
    for row in rows:
        value = "[dim]null[/]" if row.value is None else escape(str(row.value))
        source = f"[dim]{row.kind}[/] {escape(row.source)}"
        table.add_row(escape(row.target), source, value, escape("; ".join(row.notes)))
    stdout.print(table)
