"""Plumbing shared by the ``roster`` commands: the configuration, the store, and errors.

The root callback (``cli/main.py``) stores ``--config`` as ``ctx.obj = {"config_path": ...}``;
commands open what they need through ``open_store(ctx)``. An error a person can fix
(ConfigError, DirectoryError, an unreachable database) is printed in red on stderr as one
line, without a traceback, and the command exits with code 2.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from directory.config import ConfigError, RosterConfig, load_config
from directory.errors import CsvImportError, DirectoryError
from directory.store import Store, resolve_database_url

EXIT_ERROR = 2
#: how many CSV problems to list under the one-line summary
MAX_DETAILS = 25

stderr = Console(stderr=True, highlight=False)


def config_path(ctx: typer.Context) -> str | None:
    """The ``--config`` the root callback recorded (click hands ``obj`` down to
    sub-commands)."""
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    value = obj.get("config_path")
    return str(value) if value else None


def get_config(config_option: str | None) -> RosterConfig:
    return load_config(config_option)


def get_store(config: RosterConfig) -> Store:
    return Store(resolve_database_url(config.database_url))


def fail(message: str, details: Sequence[str] = ()) -> NoReturn:
    """Print ``error: message`` in red on stderr (plus indented details) and exit 2."""
    stderr.print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    for detail in details[:MAX_DETAILS]:
        stderr.print(f"  {detail}", markup=False, soft_wrap=True)
    if len(details) > MAX_DETAILS:
        stderr.print(f"  ... and {len(details) - MAX_DETAILS} more", markup=False)
    raise typer.Exit(EXIT_ERROR)


def warn(message: str) -> None:
    stderr.print(f"warning: {message}", style="yellow", markup=False, soft_wrap=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the errors a person can act on into one red line and exit code 2."""
    try:
        yield
    except CsvImportError as exc:
        fail(str(exc), [str(error) for error in exc.errors] if len(exc.errors) > 1 else [])
    except (ConfigError, DirectoryError) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"database error: {reason}")


@contextmanager
def open_store(ctx: typer.Context) -> Iterator[tuple[RosterConfig, Store]]:
    """The configuration and an open store for one command; errors inside the block are
    reported by ``cli_errors`` too, and the store is closed afterwards."""
    with cli_errors():
        config = get_config(config_path(ctx))
        store = get_store(config)
        try:
            yield config, store
        finally:
            store.dispose()
