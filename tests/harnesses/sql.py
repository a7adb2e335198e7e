"""The sql harness: PostgreSQL login roles, read back from the catalog with the
superuser's own connection (not Roster's connector).

It runs on the session's private SCRAM cluster (tests/pg_cluster.py), where the password
is checked, so ``bad_credentials`` is a wrong password refused by the server. Where that
cluster cannot start (no PostgreSQL server binaries), it runs on the shared cluster of
ROSTER_TEST_POSTGRES_URL, which trusts 127.0.0.1 and would accept any password:
``bad_credentials`` then logs in as a role that does not exist, the nearest refusal.
Each test gets its own managed role and name prefix (roles are cluster-wide), and every
role it made is dropped afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from connectors.base import Connector, Value
from connectors.build import build_connector
from directory.config import SqlAppConfig
from tests.pg_cluster import SCRAM_PASSWORD
from tests.sql_roles import RoleSandbox, admin_url, conninfo

APP = "suite"
SECRET_ENV = "ROSTER_SUITE_SECRET"
WRONG = "not-the-password-5e2f"


class SqlHarness:
    kind = "sql"
    key = "userName"
    updatable = "comment"

    def __init__(self, sandbox: RoleSandbox) -> None:
        self.sandbox = sandbox
        self.password = sandbox.password

    def app_config(self) -> dict[str, Any]:
        return {**self.sandbox.app_config(APP), "token_env": SECRET_ENV}

    def environment(self) -> dict[str, str]:
        # trust ignores the password, but the app still names one, as the suite expects
        return {SECRET_ENV: self.password or "ignored-by-trust-9d1c"}

    def connector(self, *, page_size: int = 2, dry_run: bool = False) -> Connector:
        return self._build(self.app_config(), self.environment()[SECRET_ENV], page_size, dry_run)

    def bad_credentials(self) -> Connector:
        config = self.app_config()
        if self.password is None:  # trust: only an unknown role is refused
            nobody = make_url(config["database_url"]).set(username=self.sandbox.role_name("x"))
            config["database_url"] = conninfo(nobody)
        return self._build(config, WRONG, 2, False)

    def _build(
        self, config: dict[str, Any], secret: str, page_size: int, dry_run: bool
    ) -> Connector:
        app = SqlAppConfig.model_validate({**config, "page_size": page_size, "max_retries": 0})
        return build_connector(app, SecretStr(secret), dry_run=dry_run)

    def attributes(self, i: int) -> dict[str, Value]:
        return {"userName": f"suite{i:03d}", "comment": f"Suite User {i}", "active": True}

    def seed(self, attributes: Mapping[str, Value]) -> str:
        comment = attributes.get("comment")
        return self.sandbox.seed(
            str(attributes["userName"]),
            login=attributes.get("active", True) is not False,
            comment=str(comment) if comment else None,
        )

    def server_accounts(self) -> dict[str, dict[str, Any]]:
        return {
            user_name: {"userName": user_name, "comment": row["comment"], "active": row["login"]}
            for user_name, row in self.sandbox.accounts().items()
        }


@contextlib.contextmanager
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlHarness]:
    private: str | None = request.getfixturevalue("scram_postgres")
    if private is not None:
        sandbox = RoleSandbox(make_url(private), password=SCRAM_PASSWORD)
    else:
        sandbox = RoleSandbox(admin_url())
    try:
        yield SqlHarness(sandbox)
    finally:
        sandbox.cleanup()
