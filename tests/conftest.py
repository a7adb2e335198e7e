from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from tests.harnesses.ldap import LdapHarness
from tests.ldap_server import Slapd, running_slapd
from tests.pg_cluster import password_cluster
from tests.rabbitmq import rabbitmq, rabbitmq_admin  # noqa: F401 (fixtures)
from tests.scim_apps import TOKEN, InProcessScim
from tests.sql_roles import RoleSandbox, admin_url
from tests.synapse import matrix, synapse  # noqa: F401 (fixtures)
from tests.sync_env import Installation, route_to

POSTGRES_URL_ENV = "ROSTER_TEST_POSTGRES_URL"

# Property tests (the *_fuzz.py files): a fixed seed and no example database, so CI runs
# the same examples every time and in well under a minute. HYPOTHESIS_PROFILE=deep
# explores for real, new examples each run, and keeps failing ones in .hypothesis/ to
# replay: use it after changing a parser.
settings.register_profile(
    "roster",
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "deep",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "roster"))


@pytest.fixture
def scim() -> InProcessScim:
    """A fresh multi-tenant scim2-server, in-process."""
    return InProcessScim()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One OpenLDAP slapd for the session (tests/ldap_server.py); each test takes its own
    subtree with ``slapd.fresh_tree()``. Skips without slapd, fails under
    ROSTER_REQUIRE_LDAP."""
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
def ldap(slapd: Slapd) -> LdapHarness:
    """An LDAP app on the session's slapd, in a subtree of its own."""
    return LdapHarness(slapd, slapd.fresh_tree())


def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url and os.environ.get("ROSTER_REQUIRE_POSTGRES"):
        pytest.fail(f"ROSTER_REQUIRE_POSTGRES is set but {POSTGRES_URL_ENV} is not")
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_URL_ENV} "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it"
        )
    return url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a throwaway schema, dropped afterwards."""
    base = _postgres_url()
    schema = f"roster_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Every store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'roster.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One Prefect test server for the whole session, on its own PREFECT_HOME."""
    from cli.prefect_env import prefect_defaults

    home = tmp_path_factory.mktemp("prefect")
    saved = {k: os.environ.get(k) for k in prefect_defaults()}
    os.environ.update({**prefect_defaults(), "PREFECT_HOME": str(home)})
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def make_installation(
    tmp_path, scim: InProcessScim, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Installation]]:
    """Build an Installation (store, roster.yaml, SCIM apps routed in-process) for flow tests."""
    from directory.store import Store
    from tasks import session

    monkeypatch.setenv("ROSTER_TEST_TOKEN", TOKEN)
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    stores: list[Store] = []

    def make(apps: list[str], **app_settings: dict) -> Installation:
        store = Store(f"sqlite:///{tmp_path / 'roster.db'}")
        stores.append(store)
        installation = Installation(tmp_path, scim, apps, store, dict(app_settings))
        installation.write_config()
        route_to(scim, apps)
        return installation

    yield make
    session.TRANSPORTS.clear()
    for store in stores:
        store.dispose()


@pytest.fixture(autouse=True)
def _no_real_prefect_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's exported PREFECT_API_URL must never receive test events (they could
    trigger real offboardings); tests that want a server start their own."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


@pytest.fixture(scope="session")
def scram_postgres() -> Iterator[str | None]:
    """A private PostgreSQL that checks passwords (tests/pg_cluster.py), started on first
    use for the whole session; None where PostgreSQL's server binaries are missing."""
    with password_cluster() as url:
        yield url


@pytest.fixture
def sql_sandbox() -> Iterator[RoleSandbox]:
    """Roles of one test on the shared PostgreSQL cluster (tests/sql_roles.py), all
    dropped afterwards."""
    sandbox = RoleSandbox(admin_url())
    try:
        yield sandbox
    finally:
        sandbox.cleanup()
