"""One behavioural suite for every connector kind: SCIM, rest, sql and ldap, each against
a real server of its kind (``tests/harnesses/<kind>.py``). A new connector is done when
it passes here.

Checked on the server, read directly by the harness, never through the connector:
listing across pages, create/update/deactivate/reactivate/delete, an idempotent re-run
making zero writes, adopting an existing account, and a clear error for bad credentials.
"""

from __future__ import annotations

import csv
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import tests.harnesses
from connectors.errors import AuthError, ConflictError, NotFoundError
from directory.config import Safety
from directory.importer import import_csv
from directory.store import Store
from tests.harnesses import ConnectorHarness
from tests.sync_env import FIELDS, people

#: every kind with a harness; the suite's parameters
KINDS = sorted(
    m.name for m in pkgutil.iter_modules(tests.harnesses.__path__) if not m.name.startswith("_")
)


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConnectorHarness]:
    module = importlib.import_module(f"tests.harnesses.{request.param}")
    with module.harness(request, tmp_path) as made:
        yield made


def test_every_kind_has_a_harness() -> None:
    from directory.appkinds import CONNECTOR_KINDS

    assert set(KINDS) == set(CONNECTOR_KINDS) == {"scim", "rest", "sql", "ldap"}


# -- the connector on its own ----------------------------------------------------------


def test_list_spans_several_pages_and_sees_every_account_once(harness: ConnectorHarness) -> None:
    for i in range(7):
        harness.seed(harness.attributes(i))
    connector = harness.connector(page_size=2)
    try:
        pages = list(connector.list_accounts())
    finally:
        connector.close()
    keys = [str(a.attributes[harness.key]) for page in pages for a in page.accounts]
    # A harness whose app has no paging (RabbitMQ's users) says so: one page, then.
    assert len(pages) >= 4 if getattr(harness, "paginates", True) else len(pages) == 1
    assert sorted(keys) == sorted(str(harness.attributes(i)[harness.key]) for i in range(7))
    assert all(not page.errors for page in pages)


def test_create_update_deactivate_reactivate_delete(harness: ConnectorHarness) -> None:
    wanted = harness.attributes(1)
    key = str(wanted[harness.key])
    connector = harness.connector()
    try:
        created = connector.create_account(wanted)
        assert harness.server_accounts()[key]["active"] in (True, None)

        connector.update_account(created.id, {harness.updatable: "Changed Name"}, wanted)
        assert harness.server_accounts()[key][harness.updatable] == "Changed Name"

        connector.deactivate_account(created.id)
        assert connector.get_account(created.id).attributes.get("active") is False
        assert harness.server_accounts()[key]["active"] is False

        changed = {**wanted, harness.updatable: "Changed Name"}
        connector.update_account(created.id, {"active": True}, {**changed, "active": True})
        assert connector.get_account(created.id).attributes.get("active") is True
        assert harness.server_accounts()[key]["active"] is True

        connector.delete_account(created.id)
        assert key not in harness.server_accounts()
        with pytest.raises(NotFoundError):
            connector.get_account(created.id)
    finally:
        connector.close()


def test_creating_an_existing_account_is_a_conflict_then_found(harness: ConnectorHarness) -> None:
    existing = harness.attributes(2)
    remote_id = harness.seed(existing)
    connector = harness.connector()
    try:
        with pytest.raises(ConflictError):
            connector.create_account(existing)
        found = connector.find_account(harness.key, str(existing[harness.key]))
    finally:
        connector.close()
    assert found is not None and found.id == remote_id
    assert len(harness.server_accounts()) == 1


def test_bad_credentials_are_a_clear_auth_error(harness: ConnectorHarness) -> None:
    connector = harness.bad_credentials()
    try:
        with pytest.raises(AuthError) as caught:
            list(connector.list_accounts())
    finally:
        connector.close()
    message = str(caught.value)
    assert message and "Traceback" not in message
    for secret in harness.environment().values():
        assert secret not in message


# -- the sync engine over the connector -------------------------------------------------


class Site:
    """roster.yaml with the harness's app, a SQLite directory of people assigned to it."""

    def __init__(self, harness: ConnectorHarness, root: Path) -> None:
        self.harness = harness
        self.config = root / "roster.yaml"
        self.store = Store(f"sqlite:///{root / 'roster.db'}")
        document = {
            "database_url": f"sqlite:///{root / 'roster.db'}",
            "apps": [harness.app_config()],
        }
        self.config.write_text(yaml.safe_dump(document), encoding="utf-8")
        self.people = root / "people.csv"

    def import_people(self, team: list[dict[str, Any]]) -> None:
        with self.people.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(team)
        import_csv(self.store, self.people, full=True, safety=Safety(), force=True)

    def sync(self) -> dict[str, Any]:
        from flows.sync import sync

        result: dict[str, Any] = sync(config_path=str(self.config))["apps"]["suite"]
        assert result["status"] == "ok", result
        return result


@pytest.fixture
def site(
    harness: ConnectorHarness,
    tmp_path: Path,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    for name, value in harness.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    made = Site(harness, tmp_path)
    yield made
    made.store.dispose()


WRITES = ("created", "updated", "deactivated", "deleted", "linked")


def test_a_second_sync_makes_zero_writes(site: Site) -> None:
    team = people(6, apps="suite")
    team[5]["active"] = "false"  # a leaver: never created
    site.import_people(team)
    first = site.sync()
    assert first["summary"]["created"] == 5
    before = site.harness.server_accounts()
    assert len(before) == 5
    second = site.sync()
    assert {k: second["summary"][k] for k in WRITES} == dict.fromkeys(WRITES, 0)
    assert second["summary"]["unchanged"] == 5
    assert site.harness.server_accounts() == before


def test_sync_adopts_an_existing_account_and_deprovisions_a_leaver(site: Site) -> None:
    team = people(3, apps="suite")
    existing = dict(site.harness.attributes(0))
    existing[site.harness.key] = team[1]["user_name"]
    site.harness.seed(existing)
    site.import_people(team)
    first = site.sync()
    assert first["summary"]["created"] == 2 and first["summary"]["linked"] == 1
    assert len(site.harness.server_accounts()) == 3  # adopted, not duplicated

    team[2]["active"] = "false"
    site.import_people(team)
    site.sync()
    leaver = site.harness.server_accounts().get(team[2]["user_name"])
    assert leaver is None or leaver["active"] is False
    assert site.harness.server_accounts()[team[1]["user_name"]]["active"] in (True, None)
