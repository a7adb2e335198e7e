"""The sql connector against the real local PostgreSQL: every check reads the server."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from connectors.errors import (
    BadRequestError,
    ConflictError,
    DryRunError,
    NotFoundError,
)
from tests.sql_roles import RoleSandbox

pytestmark = pytest.mark.postgres

ALL = ("userName", "active", "comment", "memberOf")


def test_listing_pages_through_managed_roles_only(sql_sandbox: RoleSandbox) -> None:
    box = sql_sandbox
    oids = {box.seed(f"user{i}", comment=f"User {i}") for i in range(7)}
    box.make_role(box.prefix + "not-a-member", login=True)  # prefixed, not managed
    box.make_role(box.role_name("no-prefix"), login=True, managed=True)  # managed, no prefix
    connector = box.connector(page_size=3)

    pages = list(connector.list_accounts())

    assert [len(page.accounts) for page in pages] == [3, 3, 1]
    assert connector.last_attempts == 3  # one transaction per page, none after a short one
    accounts = [a for page in pages for a in page.accounts]
    assert {a.id for a in accounts} == oids
    assert sorted(a.attributes["userName"] for a in accounts) == [f"user{i}" for i in range(7)]
    assert accounts[0].attributes == {"userName": "user0", "active": True, "comment": "User 0"}


def test_listing_an_app_without_its_managed_role_is_empty_and_creates_nothing(
    sql_sandbox: RoleSandbox,
) -> None:
    pages = list(sql_sandbox.connector().list_accounts())
    assert [page.accounts for page in pages] == [[]]
    assert not sql_sandbox.exists(sql_sandbox.managed_role)


def test_create_makes_a_managed_login_role_with_its_comment(sql_sandbox: RoleSandbox) -> None:
    connector = sql_sandbox.connector()
    account = connector.create_account({"userName": "ann", "active": True, "comment": "Ann Lee"})

    role = sql_sandbox.roles()[sql_sandbox.prefix + "ann"]
    assert account.id == str(role["oid"])
    assert account.attributes == {"userName": "ann", "active": True, "comment": "Ann Lee"}
    assert (role["login"], role["comment"]) == (True, "Ann Lee")
    assert role["member_of"] == [sql_sandbox.managed_role]
    assert sql_sandbox.roles()[sql_sandbox.managed_role]["login"] is False
    assert connector.last_attempts == 2  # the managed role, then the account
    connector.create_account({"userName": "bob"})
    assert connector.last_attempts == 1  # the managed role is known to exist now


def test_update_renames_in_place_and_the_remote_id_survives(sql_sandbox: RoleSandbox) -> None:
    connector = sql_sandbox.connector()
    account = connector.create_account({"userName": "ann", "comment": "Ann"})

    connector.update_account(account.id, {"userName": "ann.lee", "comment": "Ann Lee"}, {})

    assert connector.get_account(account.id).attributes == {
        "userName": "ann.lee",
        "active": True,
        "comment": "Ann Lee",
    }
    roles = sql_sandbox.roles()
    assert sql_sandbox.prefix + "ann" not in roles
    assert str(roles[sql_sandbox.prefix + "ann.lee"]["oid"]) == account.id
    connector.update_account(account.id, {"comment": None}, {})
    assert sql_sandbox.roles()[sql_sandbox.prefix + "ann.lee"]["comment"] is None


def test_deactivate_and_reactivate_switch_login(sql_sandbox: RoleSandbox) -> None:
    connector = sql_sandbox.connector()
    account = connector.create_account({"userName": "ann", "active": True})
    name = sql_sandbox.prefix + "ann"

    connector.deactivate_account(account.id)
    assert sql_sandbox.roles()[name]["login"] is False
    assert connector.get_account(account.id).attributes["active"] is False

    connector.update_account(account.id, {"active": True}, {})
    assert sql_sandbox.roles()[name]["login"] is True


@pytest.mark.parametrize("how", ["deactivate", "update"])
def test_deactivating_ends_the_sessions_already_open(sql_sandbox: RoleSandbox, how: str) -> None:
    connector = sql_sandbox.connector()
    account = connector.create_account({"userName": "ann"})
    with sql_sandbox.session_as(sql_sandbox.prefix + "ann") as session:
        assert session.execute("SELECT current_user").fetchone() == (sql_sandbox.prefix + "ann",)

        if how == "deactivate":
            connector.deactivate_account(account.id)
        else:
            connector.update_account(account.id, {"active": False}, {})

        with pytest.raises(psycopg.OperationalError):
            for _ in range(50):  # the backend exits a moment after the signal
                session.execute("SELECT pg_sleep(0.05)")
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        sql_sandbox.session_as(sql_sandbox.prefix + "ann").__enter__()


def test_delete_drops_the_role_and_a_second_delete_is_not_found(sql_sandbox: RoleSandbox) -> None:
    connector = sql_sandbox.connector()
    account = connector.create_account({"userName": "ann"})

    connector.delete_account(account.id)

    assert sql_sandbox.prefix + "ann" not in sql_sandbox.roles()
    with pytest.raises(NotFoundError):
        connector.get_account(account.id)
    with pytest.raises(NotFoundError):
        connector.delete_account(account.id)
    with pytest.raises(NotFoundError):
        connector.update_account(account.id, {"comment": "x"}, {})


def test_delete_of_an_owner_needs_reassign_owned_to_and_then_keeps_the_objects(
    sql_sandbox: RoleSandbox,
) -> None:
    box = sql_sandbox
    heir = box.role_name("heir")
    box.make_role(heir)
    oid = box.seed("ann")
    table = f"{box.tag}_ann_notes"
    box.execute(sql.SQL("CREATE TABLE {} (note text)").format(sql.Identifier(table)))
    box.execute(
        sql.SQL("ALTER TABLE {} OWNER TO {}").format(
            sql.Identifier(table), sql.Identifier(box.prefix + "ann")
        )
    )
    owner_of = "SELECT tableowner FROM pg_tables WHERE tablename = %s"

    with pytest.raises(BadRequestError, match=r"2BP01 .*reassign_owned_to"):
        box.connector().delete_account(oid)
    assert box.prefix + "ann" in box.roles()  # nothing was dropped, the table is intact
    assert box.execute(owner_of, [table]) == [{"tableowner": box.prefix + "ann"}]

    box.connector(reassign_owned_to=heir).delete_account(oid)

    assert box.prefix + "ann" not in box.roles()
    assert box.execute(owner_of, [table]) == [{"tableowner": heir}]
    box.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def test_an_existing_managed_role_is_adopted_after_a_conflict(sql_sandbox: RoleSandbox) -> None:
    oid = sql_sandbox.seed("ann", comment="made by hand")
    connector = sql_sandbox.connector()

    with pytest.raises(ConflictError, match="42710"):
        connector.create_account({"userName": "ann", "comment": "Ann"})
    found = connector.find_account("userName", "ann")

    assert found is not None and found.id == oid
    assert found.attributes["comment"] == "made by hand"
    assert len(sql_sandbox.accounts()) == 1


def test_a_role_roster_does_not_manage_is_never_adopted_nor_touched(
    sql_sandbox: RoleSandbox,
) -> None:
    box = sql_sandbox
    oid = box.make_role(box.prefix + "ann", login=True)  # the DBA's, not Roster's
    connector = box.connector()

    with pytest.raises(ConflictError):
        connector.create_account({"userName": "ann"})
    assert connector.find_account("userName", "ann") is None
    for write in (connector.deactivate_account, connector.delete_account):
        with pytest.raises(NotFoundError):
            write(oid)
    role = box.roles()[box.prefix + "ann"]
    assert (role["login"], role["member_of"]) == (True, [])


def test_postgres_itself_is_out_of_reach(sql_sandbox: RoleSandbox) -> None:
    postgres = str(sql_sandbox.oid("postgres"))
    connector = sql_sandbox.connector(name_prefix="")

    assert connector.find_account("userName", "postgres") is None
    for call in (
        lambda: connector.get_account(postgres),
        lambda: connector.update_account(postgres, {"userName": "owned"}, {}),
        lambda: connector.deactivate_account(postgres),
        lambda: connector.delete_account(postgres),
    ):
        with pytest.raises(NotFoundError):
            call()
    rows = sql_sandbox.execute(
        "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'postgres'"
    )
    assert rows == [{"rolcanlogin": True, "rolsuper": True}]


def test_a_hostile_user_name_is_one_quoted_identifier(sql_sandbox: RoleSandbox) -> None:
    box = sql_sandbox
    victim = box.role_name("y")
    box.make_role(victim)
    hostile = f'x"; DROP ROLE "{victim}"; --'
    worse = f'x\');DROP ROLE "{victim}";--'
    comment = f'x\'); DROP ROLE "{victim}"; COMMENT ON ROLE "{victim}" IS \'pwned'
    connector = box.connector()

    account = connector.create_account({"userName": hostile, "comment": comment})
    assert box.exists(victim)
    assert box.prefix + hostile in box.roles()  # the name round-trips byte for byte
    assert box.roles()[box.prefix + hostile]["comment"] == comment
    assert connector.get_account(account.id).attributes["userName"] == hostile
    assert connector.find_account("userName", hostile) == connector.get_account(account.id)

    connector.update_account(account.id, {"userName": worse, "comment": hostile}, {})
    assert box.exists(victim)
    assert box.roles()[box.prefix + worse]["comment"] == hostile
    assert box.roles()[victim]["comment"] is None

    connector.deactivate_account(account.id)
    connector.delete_account(account.id)
    assert box.exists(victim)
    assert box.prefix + worse not in box.roles()


def test_user_names_are_case_sensitive_like_role_names(sql_sandbox: RoleSandbox) -> None:
    connector = sql_sandbox.connector()
    upper = connector.create_account({"userName": "Ann"})
    lower = connector.create_account({"userName": "ann"})

    assert upper.id != lower.id
    assert connector.find_account("userName", "ANN") is None
    found = connector.find_account("userName", "Ann")
    assert found is not None and found.id == upper.id


def test_names_postgres_would_truncate_or_reserve_are_refused(sql_sandbox: RoleSandbox) -> None:
    connector = sql_sandbox.connector(name_prefix="")
    with pytest.raises(BadRequestError, match="longer than 63 bytes"):
        connector.create_account({"userName": sql_sandbox.tag + "é" * 30})
    with pytest.raises(BadRequestError, match="pg_"):
        connector.create_account({"userName": "pg_roster"})
    assert sql_sandbox.accounts() == {}


def test_dry_run_reads_but_refuses_every_write(sql_sandbox: RoleSandbox) -> None:
    oid = sql_sandbox.seed("ann")
    connector = sql_sandbox.connector(dry_run=True)
    assert [a.id for page in connector.list_accounts() for a in page.accounts] == [oid]

    for write in (
        lambda: connector.create_account({"userName": "bob"}),
        lambda: connector.update_account(oid, {"comment": "x"}, {}),
        lambda: connector.deactivate_account(oid),
        lambda: connector.delete_account(oid),
    ):
        with pytest.raises(DryRunError, match="dry-run"):
            write()
        assert connector.last_attempts == 0  # refused before any transaction
    assert sql_sandbox.accounts()["ann"]["login"] is True
    assert list(sql_sandbox.accounts()) == ["ann"]


def test_member_of_grants_and_revokes_only_the_group_roles(sql_sandbox: RoleSandbox) -> None:
    box = sql_sandbox
    read, write, other = (box.role_name(n) for n in ("read", "write", "other"))
    for role in (read, write, other):
        box.make_role(role)
    connector = box.connector(attributes=ALL, group_roles=[read, write])
    account = connector.create_account({"userName": "ann", "memberOf": read})
    box.execute(
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(other), sql.Identifier(box.prefix + "ann"))
    )

    assert connector.get_account(account.id).attributes["memberOf"] == read
    connector.update_account(account.id, {"memberOf": f"{write},{read}"}, {})
    assert box.accounts()["ann"]["member_of"] == sorted([box.managed_role, read, write, other])
    assert connector.get_account(account.id).attributes["memberOf"] == f"{read},{write}"

    connector.update_account(account.id, {"memberOf": write}, {})
    assert box.accounts()["ann"]["member_of"] == sorted([box.managed_role, write, other])

    with pytest.raises(BadRequestError, match="outside group_roles"):
        connector.update_account(account.id, {"memberOf": other}, {})
    assert box.accounts()["ann"]["member_of"] == sorted([box.managed_role, write, other])


def test_a_missing_group_role_fails_the_write_as_a_bad_request(sql_sandbox: RoleSandbox) -> None:
    missing = sql_sandbox.role_name("never-created")
    connector = sql_sandbox.connector(attributes=ALL, group_roles=[missing])
    with pytest.raises(BadRequestError, match="do not exist"):
        connector.create_account({"userName": "ann", "memberOf": missing})
    assert sql_sandbox.accounts() == {}  # the create is one transaction: nothing half-made
