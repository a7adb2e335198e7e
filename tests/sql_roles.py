"""PostgreSQL roles for tests, on the shared local cluster.

Roles are cluster-wide, and other test runs use the same cluster: every sandbox has a
unique tag, every role it makes (managed role, accounts, group roles, helpers) starts
with that tag, and ``cleanup`` drops them all, whatever the test left behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import SecretStr
from sqlalchemy.engine import URL, make_url

from connectors.sql import SqlConnector, sql_engine
from directory.appkinds.sql import SQL_DEFAULT_MAPPING

POSTGRES_URL_ENV = "ROSTER_TEST_POSTGRES_URL"


def admin_url() -> URL:
    """The test cluster's superuser URL (``.ci/run`` sets it), or the test is skipped."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url and os.environ.get("ROSTER_REQUIRE_POSTGRES"):
        pytest.fail(f"ROSTER_REQUIRE_POSTGRES is set but {POSTGRES_URL_ENV} is not")
    if not url:
        pytest.skip(f"sql connector tests need {POSTGRES_URL_ENV}")
    return make_url(url).set(drivername="postgresql+psycopg")


def conninfo(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class RoleSandbox:
    """A managed role and a name prefix of its own; reads the server directly."""

    def __init__(self, url: URL, password: str | None = None) -> None:
        self.url = url
        self.password = password
        self.tag = f"rt{uuid.uuid4().hex[:10]}"
        self.prefix = f"{self.tag}_"
        self.managed_role = f"{self.tag}-managed"
        self._admin = psycopg.connect(
            conninfo(url), password=password, autocommit=True, row_factory=dict_row
        )
        self._connectors: list[SqlConnector] = []

    # -- connectors ----------------------------------------------------------------

    def connector(
        self,
        *,
        attributes: Sequence[str] = tuple(SQL_DEFAULT_MAPPING),
        url: URL | None = None,
        max_retries: int = 0,
        timeout: float = 10,
        **settings: Any,
    ) -> SqlConnector:
        """A connector over this sandbox's roles; no retries unless asked (tests that
        expect a failure should not wait for backoff)."""
        secret = SecretStr(self.password) if self.password is not None else None
        engine = sql_engine(url or self.url, secret, app_name="test", pool_size=2, timeout=timeout)
        options: dict[str, Any] = {
            "managed_role": self.managed_role,
            "name_prefix": self.prefix,
            "page_size": 500,
            "max_retries": max_retries,
            **settings,
        }
        connector = SqlConnector("test", engine, attributes=attributes, **options)
        self._connectors.append(connector)
        return connector

    def app_config(self, name: str = "pg", **settings: Any) -> dict[str, Any]:
        """A roster.yaml entry for this sandbox."""
        return {
            "name": name,
            "connector": "sql",
            "database_url": conninfo(self.url),
            "managed_role": self.managed_role,
            "name_prefix": self.prefix,
            **settings,
        }

    # -- the server, directly ---------------------------------------------------------

    def execute(self, statement: str | sql.Composable, params: Any = None) -> list[dict[str, Any]]:
        with self._admin.cursor() as cur:
            cur.execute(statement, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def role_name(self, suffix: str) -> str:
        """A helper role's name inside the sandbox (not an account: no prefix match)."""
        return f"{self.tag}-{suffix}"

    def make_role(self, name: str, *, login: bool = False, managed: bool = False) -> str:
        """Create a role directly; its oid."""
        self.execute(
            sql.SQL("CREATE ROLE {} {}").format(
                sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN")
            )
        )
        if managed:
            self.ensure_managed_role()
            self.execute(
                sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(self.managed_role), sql.Identifier(name)
                )
            )
        return str(self.oid(name))

    def seed(self, user_name: str, *, login: bool = True, comment: str | None = None) -> str:
        """An account as a DBA (or an earlier, crashed run) would have made it: its oid."""
        name = self.prefix + user_name
        oid = self.make_role(name, login=login, managed=True)
        if comment is not None:
            self.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(comment)
                )
            )
        return oid

    def ensure_managed_role(self) -> None:
        if not self.exists(self.managed_role):
            managed = sql.Identifier(self.managed_role)
            self.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(managed))

    def oid(self, name: str) -> int:
        rows = self.execute("SELECT oid FROM pg_roles WHERE rolname = %s", [name])
        assert rows, f"no role {name!r}"
        return int(rows[0]["oid"])

    def exists(self, name: str) -> bool:
        return bool(self.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]))

    def roles(self) -> dict[str, dict[str, Any]]:
        """Every role of this sandbox by name: oid, login, comment, all its memberships."""
        rows = self.execute(
            """
            SELECT r.oid, r.rolname::text AS name, r.rolcanlogin AS login,
                   shobj_description(r.oid, 'pg_authid') AS comment,
                   ARRAY(SELECT g.rolname::text FROM pg_auth_members m
                         JOIN pg_roles g ON g.oid = m.roleid
                         WHERE m.member = r.oid ORDER BY 1) AS member_of
            FROM pg_roles r WHERE starts_with(r.rolname, %s) ORDER BY r.rolname
            """,
            [self.tag],
        )
        return {row["name"]: row for row in rows}

    def accounts(self) -> dict[str, dict[str, Any]]:
        """The sandbox's accounts (managed, prefixed) by userName."""
        return {
            name[len(self.prefix) :]: row
            for name, row in self.roles().items()
            if name.startswith(self.prefix) and self.managed_role in row["member_of"]
        }

    def catalog_versions(self) -> dict[str, Any]:
        """The transaction ids that last wrote each catalog row about the sandbox's roles
        (pg_authid: the role; pg_auth_members: memberships; pg_shdescription: comments).
        Equal before and after a sync: the sync wrote nothing."""
        like = {"tag": self.tag}
        return {
            "roles": self.execute(
                "SELECT oid, xmin::text FROM pg_authid"
                " WHERE starts_with(rolname, %(tag)s) ORDER BY oid",
                like,
            ),
            "members": self.execute(
                "SELECT m.roleid, m.member, m.xmin::text FROM pg_auth_members m"
                " JOIN pg_authid r ON r.oid = m.member"
                " WHERE starts_with(r.rolname, %(tag)s) ORDER BY 1, 2",
                like,
            ),
            "comments": self.execute(
                "SELECT d.objoid, d.xmin::text, d.description FROM pg_shdescription d"
                " JOIN pg_authid r ON r.oid = d.objoid"
                " WHERE starts_with(r.rolname, %(tag)s) ORDER BY 1",
                like,
            ),
        }

    @contextmanager
    def session_as(self, name: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection logged in as role ``name`` (the cluster trusts 127.0.0.1)."""
        with psycopg.connect(conninfo(self.url.set(username=name)), autocommit=True) as conn:
            yield conn

    # -- teardown ------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Drop every role whose name starts with the tag, with whatever it owns here."""
        for connector in self._connectors:
            connector.close()
        self.execute(
            "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a"
            " JOIN pg_roles r ON r.oid = a.usesysid WHERE starts_with(r.rolname, %s)",
            [self.tag],
        )
        names = [
            row["rolname"]
            for row in self.execute(
                "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, %s)", [self.tag]
            )
        ]
        for name in names:
            role = sql.Identifier(name)
            self.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))
            self.execute(sql.SQL("DROP OWNED BY {}").format(role))
        for name in names:
            self.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        leftover = self.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", [self.tag]
        )
        self._admin.close()
        assert not leftover, f"roles left behind: {leftover}"
