"""roster.yaml for sql apps: defaults, what is refused, and where the password may come from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.build import build_connector
from connectors.sql import SqlConnector
from directory.config import (
    Constant,
    DeprovisionMode,
    ScimAppConfig,
    SqlAppConfig,
    TokenError,
    load_config,
)
from tasks.plan import PlanRules
from tasks.tokens import resolve_token

EXAMPLE = Path(__file__).parent.parent / "examples" / "sql" / "roster.yaml"
MINIMAL = """
apps:
  - name: db
    connector: sql
    database_url: postgresql://roster@127.0.0.1:5432/app
"""


def load(tmp_path: Path, text: str) -> SqlAppConfig:
    path = tmp_path / "roster.yaml"
    path.write_text(text, encoding="utf-8")
    app = load_config(path).apps[0]
    assert isinstance(app, SqlAppConfig)
    return app


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "roster.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(Exception) as error:
        load_config(path)
    return str(error.value)


def test_minimal_sql_app_needs_no_secret_and_gets_the_kinds_defaults(tmp_path: Path) -> None:
    app = load(tmp_path, MINIMAL)
    assert app.effective_mapping == {
        "userName": "user_name",
        "active": "active",
        "comment": "display_name",
    }
    assert app.match_on == ["userName"]
    assert (app.managed_role, app.name_prefix, app.group_roles) == ("roster_managed", "", [])
    assert (app.reassign_owned_to, app.terminate_sessions) == (None, True)
    assert app.has_secret is False
    assert app.database_url == "postgresql+psycopg://roster@127.0.0.1:5432/app"


def test_the_example_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_config(EXAMPLE).apps[0]
    assert isinstance(app, SqlAppConfig)
    assert app.effective_mapping["memberOf"] == Constant(constant="analytics_read")
    assert app.token_env == "ANALYTICS_DB_PASSWORD"
    assert app.deprovision is DeprovisionMode.DEACTIVATE


def test_a_password_in_the_url_is_refused_without_repeating_it(tmp_path: Path) -> None:
    text = MINIMAL.replace("roster@", "roster:hunter2-secret@")
    message = error_of(tmp_path, text)
    assert "apps[0].database_url" in message
    assert "must not contain a password" in message and "token_env" in message
    assert "hunter2-secret" not in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("    database_url: mysql://roster@db/app\n", "unsupported database 'mysql'"),
        ("    database_url: postgresql+asyncpg://r@db/app\n", "unsupported driver 'asyncpg'"),
        ("    mapping: {title: title}\n", "unknown attribute(s) 'title'"),
        ("    mapping: {userName: null}\n", "match_on names unmapped attributes: userName"),
        ("    mapping: {userName: null}\n    match_on: [comment]\n", "userName is the role"),
        ("    mapping: {memberOf: department}\n", "memberOf needs group_roles"),
        ("    match_on: [active]\n", "matches on userName or comment"),
        ("    managed_role: pg_roster\n", "apps[0].managed_role: Value error, role name starts"),
        ("    name_prefix: pg_\n", "apps[0].name_prefix"),
        ("    group_roles: ['a,b']\n", "group role 'a,b' contains ','"),
        ("    group_roles: [roster_managed]\n", "must not list managed_role"),
        ("    managed_role: " + "m" * 64 + "\n", "longer than 63 bytes"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(
    tmp_path: Path, change: str, expected: str
) -> None:
    text = MINIMAL.replace("    database_url: postgresql://roster@127.0.0.1:5432/app\n", "")
    if "database_url" not in change:
        text += "    database_url: postgresql://roster@127.0.0.1:5432/app\n"
    assert expected in error_of(tmp_path, text + change)


def test_group_roles_become_every_accounts_member_of_unless_mapped(tmp_path: Path) -> None:
    app = load(tmp_path, MINIMAL + "    group_roles: [write, read]\n")
    assert app.group_roles == ["read", "write"]
    assert app.effective_mapping["memberOf"] == Constant(constant="read,write")
    mapped = load(tmp_path, MINIMAL + "    group_roles: [a]\n    mapping: {memberOf: department}\n")
    assert mapped.effective_mapping["memberOf"] == "department"
    dropped = load(tmp_path, MINIMAL + "    group_roles: [a]\n    mapping: {memberOf: null}\n")
    assert "memberOf" not in dropped.effective_mapping


def test_the_plan_compares_sql_user_names_exactly_and_scim_ones_folded(tmp_path: Path) -> None:
    assert PlanRules.for_app(load(tmp_path, MINIMAL)).case_insensitive == frozenset()
    scim = ScimAppConfig.model_validate(
        {"name": "chat", "connector": "scim", "base_url": "http://x/", "token_env": "T"}
    )
    assert "userName" in PlanRules.for_app(scim).case_insensitive


def test_a_database_password_may_hold_spaces_a_bearer_token_may_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "two words and more\n")
    app = load(tmp_path, MINIMAL + "    token_env: DB_PASSWORD\n")
    assert resolve_token(app).get_secret_value() == "two words and more"
    scim = ScimAppConfig.model_validate(
        {"name": "chat", "connector": "scim", "base_url": "http://x/", "token_env": "DB_PASSWORD"}
    )
    with pytest.raises(TokenError, match="Authorization header"):
        resolve_token(scim)


def test_the_builder_makes_a_sql_connector_whose_engine_hides_the_password(
    tmp_path: Path,
) -> None:
    app = load(tmp_path, MINIMAL + "    token_env: DB_PASSWORD\n    concurrency: 3\n")
    connector = build_connector(app, SecretStr("s3cret-password"), dry_run=True)
    try:
        assert isinstance(connector, SqlConnector)
        assert connector.dry_run is True
        engine = connector._engine
        assert engine.url.password == "s3cret-password"
        assert "s3cret-password" not in repr(engine) + repr(engine.url) + str(engine.url)
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        connector.close()


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("postgresql://roster@db.internal/app", True),
        ("postgresql://roster@db.internal/app?sslmode=require", True),
        ("postgresql://roster@db.internal/app?sslmode=verify-full", False),
        ("postgresql://roster@127.0.0.1/app", False),
        ("postgresql://roster@/app?host=/var/run/postgresql", False),
    ],
)
def test_an_unverified_server_certificate_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str, warned: bool
) -> None:
    app = load(tmp_path, MINIMAL.replace("postgresql://roster@127.0.0.1:5432/app", url))
    build_connector(app, None, dry_run=True).close()  # the engine connects lazily
    assert ("certificate is not verified" in caplog.text) is warned
