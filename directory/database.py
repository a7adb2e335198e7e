"""One engine from one URL, and the schema brought to the latest Alembic revision.

Migrations ship inside the package (``directory/migrations``) and run programmatically, so
an installed ``roster`` upgrades its database from any working directory without an
``alembic.ini`` on disk.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from directory.errors import DirectoryError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: any constant; serialises concurrent first-time upgrades of one PostgreSQL database
_PG_MIGRATION_LOCK = 7_265_430_115


def resolve_database_url(config_url: str | None) -> str:
    """ROSTER_DATABASE_URL, then the config's ``database_url``, then a SQLite file in
    ROSTER_HOME (``~/.roster``), so a first run works with no setup at all."""
    if env := os.environ.get("ROSTER_DATABASE_URL"):
        return env
    if config_url:
        return config_url
    home = Path(os.environ.get("ROSTER_HOME") or Path.home() / ".roster").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'roster.db'}"


def create_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys on, which it leaves off by default,
    so ON DELETE CASCADE and membership references hold there as they do on PostgreSQL.
    A URL SQLAlchemy cannot use is a DirectoryError that never repeats the URL, which may
    hold a password."""
    try:
        engine = sa.create_engine(url)
    except ImportError as exc:  # mysql://, postgresql+psycopg2://: a driver not installed
        raise DirectoryError(
            f"database URL: the driver {exc.name or ''} is not installed; "
            "use sqlite:/// or postgresql+psycopg://"
        ) from None
    except ValueError:  # e.g. a port that is not a number
        raise DirectoryError("database URL: cannot be parsed") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code: script_location is the packaged directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str | None:
    """The newest revision shipped with this package (read once per process)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to head; a database already there costs one small query."""
    with engine.connect() as connection:
        if current_revision(connection) == head_revision():
            return
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            if current_revision(connection) == head_revision():
                return  # another process upgraded while we waited for the lock
        command.upgrade(alembic_config(connection), "head")
