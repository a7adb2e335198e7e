"""How the sql connector fails: credentials, privileges, an absent server, a held lock.

Wrong passwords are checked against a private SCRAM cluster (tests/pg_cluster.py): the
shared test cluster trusts 127.0.0.1 and would accept any password. Refusals that trust
cannot hide (an unknown role, a NOLOGIN role, a missing database) run on the shared one.
"""

from __future__ import annotations

import logging
import threading
import traceback

import pytest
from psycopg import sql
from pydantic import SecretStr

from connectors.build import build_connector
from connectors.errors import AuthError, TransientError
from directory.config import SqlAppConfig
from tasks.apply import Disposition, disposition
from tasks.session import open_connector
from tests.pg_cluster import SCRAM_PASSWORD
from tests.sql_roles import RoleSandbox

pytestmark = pytest.mark.postgres

#: spaces included: a database password is not an HTTP header
PASSWORD = SCRAM_PASSWORD
WRONG = "wrong-password-7f3a9c1e"


@pytest.fixture
def scram_url(scram_postgres: str | None) -> str:
    if scram_postgres is None:
        pytest.skip("no private PostgreSQL (initdb) to check passwords against")
    return scram_postgres


def sql_app(url: str, **settings: object) -> SqlAppConfig:
    return SqlAppConfig.model_validate(
        {
            "name": "pg",
            "connector": "sql",
            "database_url": url,
            "token_env": "ROSTER_PG_PASSWORD",
            **settings,
        }
    )


def everything_printed(exc: BaseException) -> str:
    """What a traceback of ``exc`` shows, causes included (Prefect logs these)."""
    return "".join(traceback.format_exception(exc))


def test_the_password_from_token_env_opens_the_connection(
    scram_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROSTER_PG_PASSWORD", f"{PASSWORD}\n")  # as a mounted file ends
    connector = open_connector(sql_app(scram_url, name_prefix="tok_"), dry_run=False)
    try:
        account = connector.create_account({"userName": "ann", "comment": "Ann"})
        assert connector.get_account(account.id).attributes["userName"] == "ann"
        connector.delete_account(account.id)
    finally:
        connector.close()


def test_a_wrong_password_is_an_auth_error_that_never_shows_it(
    scram_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector = build_connector(sql_app(scram_url), SecretStr(WRONG), dry_run=False)
    try:
        with pytest.raises(AuthError, match="password authentication failed") as error:
            list(connector.list_accounts())
    finally:
        connector.close()
    assert connector.last_attempts == 1  # refused credentials are not retried
    assert disposition(error.value) is Disposition.STOP_APP
    assert WRONG not in everything_printed(error.value)
    assert WRONG not in caplog.text
    assert WRONG not in repr(connector.__dict__)


def test_an_unknown_role_is_refused_as_bad_credentials(sql_sandbox: RoleSandbox) -> None:
    nobody = sql_sandbox.url.set(username=sql_sandbox.role_name("nobody"))
    connector = sql_sandbox.connector(url=nobody, max_retries=3)
    with pytest.raises(AuthError, match=r'role ".*-nobody" does not exist'):
        list(connector.list_accounts())
    assert connector.last_attempts == 1


def test_a_nologin_role_is_refused_as_bad_credentials(sql_sandbox: RoleSandbox) -> None:
    name = sql_sandbox.role_name("locked")
    sql_sandbox.make_role(name, login=False)
    connector = sql_sandbox.connector(url=sql_sandbox.url.set(username=name))
    with pytest.raises(AuthError, match="not permitted to log in"):
        connector.find_account("userName", "ann")


def test_a_missing_database_stops_the_app(sql_sandbox: RoleSandbox) -> None:
    connector = sql_sandbox.connector(url=sql_sandbox.url.set(database=sql_sandbox.tag))
    with pytest.raises(AuthError, match="does not exist") as error:
        list(connector.list_accounts())
    assert disposition(error.value) is Disposition.STOP_APP


def test_a_role_without_createrole_gets_an_auth_error_not_a_per_account_one(
    sql_sandbox: RoleSandbox,
) -> None:
    weak = sql_sandbox.role_name("weak")
    sql_sandbox.make_role(weak, login=True)
    sql_sandbox.ensure_managed_role()
    connector = sql_sandbox.connector(url=sql_sandbox.url.set(username=weak))

    assert [page.accounts for page in connector.list_accounts()] == [[]]  # reading is fine
    with pytest.raises(AuthError, match="42501 permission denied"):
        connector.create_account({"userName": "ann"})
    assert sql_sandbox.accounts() == {}


def test_an_unreachable_server_is_transient_and_retried(sql_sandbox: RoleSandbox) -> None:
    closed = sql_sandbox.url.set(port=1)  # nothing listens on port 1
    sleeps: list[float] = []
    connector = sql_sandbox.connector(url=closed, max_retries=2, sleep=sleeps.append)
    with pytest.raises(TransientError, match="cannot reach the database"):
        connector.get_account("12345")
    assert connector.last_attempts == 3
    assert len(sleeps) == 2


def test_a_lock_held_past_the_timeout_is_transient_and_the_retry_succeeds(
    sql_sandbox: RoleSandbox,
) -> None:
    oid = sql_sandbox.seed("ann")
    name = sql.Identifier(sql_sandbox.prefix + "ann")
    sleeps: list[float] = []
    connector = sql_sandbox.connector(timeout=0.5, max_retries=3, sleep=sleeps.append)
    with sql_sandbox.session_as("postgres") as other:  # a DBA's open transaction
        other.autocommit = False
        other.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 5").format(name))
        releaser = threading.Timer(0.7, other.commit)  # let go after the first attempt
        releaser.start()
        try:
            connector.deactivate_account(oid)
        finally:
            releaser.join()
    # waiting: statement_timeout; after the DBA's commit, PostgreSQL may say "tuple
    # concurrently updated": both are retried
    assert sleeps, "the first attempt should have hit statement_timeout and been retried"
    assert connector.last_operation.requests == 2  # NOLOGIN, then ending open sessions
    assert connector.last_attempts == 2 + len(sleeps)
    assert sql_sandbox.accounts()["ann"]["login"] is False


def test_without_pg_signal_backend_a_leaver_is_still_deactivated_with_a_warning(
    sql_sandbox: RoleSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    provisioner = sql_sandbox.role_name("provisioner")
    sql_sandbox.make_role(provisioner, login=True)
    sql_sandbox.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(provisioner)))
    connector = sql_sandbox.connector(url=sql_sandbox.url.set(username=provisioner))
    account = connector.create_account({"userName": "ann"})

    with sql_sandbox.session_as(sql_sandbox.prefix + "ann") as session:
        connector.deactivate_account(account.id)
        # not ended (not allowed to): still alive after the moment a signal would take
        assert session.execute("SELECT 1 FROM pg_sleep(0.3)").fetchone() == (1,)

    assert sql_sandbox.accounts()["ann"]["login"] is False
    assert "open sessions of role" in caplog.text and "42501" in caplog.text
