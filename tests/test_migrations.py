"""The packaged Alembic migrations: from empty to head on SQLite and PostgreSQL, cheap
when already there, and in step with models.py."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from directory.database import (
    alembic_config,
    create_engine,
    current_revision,
    head_revision,
    upgrade_to_head,
)
from directory.models import Base
from directory.store import Store

TABLES = {
    "users",
    "groups",
    "group_members",
    "user_apps",
    "group_apps",
    "links",
    "runs",
    "actions",
    "app_health",
    "account_retries",
    "app_locks",
    "group_groups",
    "group_links",
    "watermarks",
}


def test_head_is_the_watermarks_revision() -> None:
    assert head_revision() == "0005_watermarks"


def test_opening_a_store_creates_every_table(database_url: str) -> None:
    store = Store(database_url)
    try:
        tables = set(sa.inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            revision = current_revision(conn)
    finally:
        store.dispose()
    assert tables == TABLES | {"alembic_version"}
    assert revision == head_revision()


def test_upgrade_is_idempotent_and_cheap_at_head(database_url: str) -> None:
    engine = create_engine(database_url)
    upgrade_to_head(engine)
    statements: list[str] = []
    sa.event.listen(
        engine, "before_cursor_execute", lambda *args: statements.append(args[2].strip())
    )
    try:
        upgrade_to_head(engine)
        Store(database_url).dispose()
    finally:
        engine.dispose()
    assert not [s for s in statements if s.upper().startswith(("CREATE", "ALTER", "DROP"))]
    assert len(statements) <= 3  # the alembic_version check, nothing more


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade_to_head(engine)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_downgrade_to_base_and_back(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade_to_head(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade_to_head(engine)
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrations_run_from_any_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    try:
        assert "users" in sa.inspect(store.engine).get_table_names()
    finally:
        store.dispose()


def test_sqlite_enforces_foreign_keys(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.dispose()
