"""The ``roster`` command. Floor 4: it imports flows; nothing imports it.

Directory commands never start Prefect (they answer in well under a second); ``sync`` and
``offboard`` run flows, in Prefect's local mode unless PREFECT_API_URL names a server.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from cli.prefect_env import apply_prefect_defaults

apply_prefect_defaults()
# httpx logs full URLs at INFO, filter values (emails) included: not for a person's terminal.
logging.getLogger("httpx").setLevel(logging.WARNING)

from cli import explain, provision, run  # noqa: E402  (Prefect reads its settings at import)
from cli.directory import directory_app  # noqa: E402
from cli.mapping import mapping_app  # noqa: E402

app = typer.Typer(
    name="roster",
    help="Keep every app's accounts in line with one directory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(directory_app, name="directory")
app.add_typer(mapping_app, name="mapping")
app.add_typer(run.quarantine_app, name="quarantine")
app.command("sync")(run.sync_command)
app.command("offboard")(run.offboard_command)
app.command("provision")(provision.provision_command)
app.command("explain")(explain.explain_command)
app.command("report")(run.report_command)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="roster.yaml to use (default: $ROSTER_CONFIG, ./roster.yaml)"
        ),
    ] = None,
) -> None:
    ctx.obj = {"config_path": config}


if __name__ == "__main__":
    app()
