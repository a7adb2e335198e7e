"""The sync and offboard flows with a sql app beside a SCIM one, checked in the catalog.

"Zero writes" is read from PostgreSQL itself: every catalog row about the app's roles
(pg_authid, pg_auth_members, pg_shdescription) keeps the transaction id that last wrote
it (``xmin``); a run that wrote nothing leaves them all as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from flows.offboard import offboard
from flows.sync import sync
from tests.sql_roles import RoleSandbox
from tests.sync_env import Installation, people

pytestmark = pytest.mark.postgres

WRITES = ("created", "updated", "deactivated", "deleted", "linked")


class Site:
    def __init__(self, installation: Installation, box: RoleSandbox) -> None:
        self.installation = installation
        self.box = box
        self.readers = box.role_name("readers")

    def run(self, **kwargs: Any) -> dict[str, Any]:
        result = sync(config_path=self.installation.config_path, **kwargs)
        assert result["apps"]["pg"]["status"] == "ok", result["apps"]["pg"]
        return result

    def role(self, user_name: str) -> sql.Identifier:
        return sql.Identifier(self.box.prefix + user_name)


@pytest.fixture
def site(make_installation: Callable[..., Installation], sql_sandbox: RoleSandbox) -> Site:
    readers = sql_sandbox.role_name("readers")
    sql_sandbox.make_role(readers)
    heir = sql_sandbox.role_name("heir")
    sql_sandbox.make_role(heir)
    pg = sql_sandbox.app_config("pg", group_roles=[readers], reassign_owned_to=heir)
    return Site(make_installation(["chat", "pg"], pg=pg), sql_sandbox)


def writes_of(result: dict[str, Any]) -> dict[str, int]:
    return {key: result["apps"]["pg"]["summary"][key] for key in WRITES}


def test_first_sync_creates_the_roles_and_the_second_writes_nothing(site: Site) -> None:
    site.installation.import_people(people(6, apps="chat;pg"))

    first = site.run()

    assert first["apps"]["pg"]["summary"]["created"] == 6
    accounts = site.box.accounts()
    assert sorted(accounts) == [f"user{i:04d}" for i in range(6)]
    assert accounts["user0002"]["login"] is True
    assert accounts["user0002"]["comment"] == "Given2 Family2"
    assert accounts["user0002"]["member_of"] == sorted([site.box.managed_role, site.readers])
    assert len(site.installation.accounts("chat")) == 6  # the SCIM app beside it, unharmed

    catalog = site.box.catalog_versions()
    second = site.run()

    assert writes_of(second) == dict.fromkeys(WRITES, 0)
    assert second["apps"]["pg"]["summary"]["unchanged"] == 6
    assert site.box.catalog_versions() == catalog


def test_drift_made_by_a_dba_is_repaired(site: Site) -> None:
    site.installation.import_people(people(5, apps="pg"))
    site.run()
    box = site.box
    box.execute(sql.SQL("COMMENT ON ROLE {} IS 'temp contractor'").format(site.role("user0002")))
    box.execute(
        sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(site.readers), site.role("user0003"))
    )
    box.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(site.role("user0004")))

    result = site.run()

    drift = {(r["user"], r["attribute"], r["old"], r["new"]) for r in result["apps"]["pg"]["drift"]}
    assert drift == {
        ("user0002", "comment", "temp contractor", "Given2 Family2"),
        ("user0003", "memberOf", None, site.readers),
        ("user0004", "active", "False", "True"),
    }
    assert result["apps"]["pg"]["summary"]["updated"] == 3
    accounts = box.accounts()
    assert accounts["user0002"]["comment"] == "Given2 Family2"
    assert site.readers in accounts["user0003"]["member_of"]
    assert accounts["user0004"]["login"] is True


def test_a_leaver_loses_login_and_open_sessions_and_stays_so_without_writes(
    site: Site,
) -> None:
    team = people(4, apps="pg")
    site.installation.import_people(team)
    site.run()
    team[1]["active"] = "false"
    site.installation.import_people(team)

    with site.box.session_as(site.box.prefix + "user0001") as session:
        result = site.run()
        with pytest.raises(psycopg.OperationalError):
            for _ in range(50):  # the backend exits a moment after the signal
                session.execute("SELECT pg_sleep(0.05)")

    assert writes_of(result) == {**dict.fromkeys(WRITES, 0), "deactivated": 1}
    accounts = site.box.accounts()
    assert accounts["user0001"]["login"] is False
    assert sum(row["login"] for row in accounts.values()) == 3
    catalog = site.box.catalog_versions()
    again = site.run()
    assert writes_of(again) == dict.fromkeys(WRITES, 0)
    assert site.box.catalog_versions() == catalog


def test_delete_as_deprovisioning_hands_the_leavers_objects_on(
    make_installation: Callable[..., Installation], sql_sandbox: RoleSandbox
) -> None:
    heir = sql_sandbox.role_name("heir")
    sql_sandbox.make_role(heir)
    pg = sql_sandbox.app_config(
        "pg",
        deprovision="delete",
        actions=["create", "update", "deactivate", "delete"],
        reassign_owned_to=heir,
    )
    installation = make_installation(["pg"], pg=pg)
    team = people(3, apps="pg")
    installation.import_people(team)
    sync(config_path=installation.config_path)
    table = f"{sql_sandbox.tag}_notes"
    sql_sandbox.execute(sql.SQL("CREATE TABLE {} (note text)").format(sql.Identifier(table)))
    owner = sql.Identifier(sql_sandbox.prefix + "user0002")
    sql_sandbox.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(table), owner))
    team[2]["active"] = "false"
    installation.import_people(team)

    result = sync(config_path=installation.config_path)

    assert result["apps"]["pg"]["summary"]["deleted"] == 1
    assert sorted(sql_sandbox.accounts()) == ["user0000", "user0001"]
    owners = sql_sandbox.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", [table])
    assert owners == [{"tableowner": heir}]
    sql_sandbox.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def test_dry_run_writes_nothing_not_even_the_managed_role(site: Site) -> None:
    site.installation.import_people(people(3, apps="pg"))

    dry = site.run(dry_run=True)

    assert dry["apps"]["pg"]["summary"]["created"] == 3
    assert not site.box.exists(site.box.managed_role)
    assert site.box.accounts() == {}


def test_offboarding_reaches_the_sql_app_too(site: Site) -> None:
    site.installation.import_people(people(4, apps="chat;pg"))
    site.run()

    result = offboard(user="user0003@example.com", config_path=site.installation.config_path)

    assert result["apps"]["pg"]["outcome"] == "succeeded"
    assert result["apps"]["chat"]["outcome"] == "succeeded"
    accounts = site.box.accounts()
    assert accounts["user0003"]["login"] is False
    assert sum(row["login"] for row in accounts.values()) == 3
    assert site.installation.accounts("chat")["user0003"]["active"] is False
