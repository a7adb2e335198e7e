"""How an LDAP app deactivates, against the real slapd: the password policy lock really
stops binds, ``disabled_ou`` moves entries out and back, and ``groups`` follow every
account's state, its renames and its deletion."""

from __future__ import annotations

import ldap3
import pytest

from connectors.base import Connector
from connectors.errors import BadRequestError
from tests.harnesses.ldap import LdapHarness
from tests.ldap_server import SERVICE_DN, SERVICE_PASSWORD, Slapd

PASSWORD = "user-password-5e8b"


def set_password(slapd: Slapd, dn: str) -> None:
    with slapd.admin() as admin:
        admin.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [PASSWORD])]})


def reactivate(connector: Connector, remote_id: str) -> None:
    connector.update_account(remote_id, {"active": True}, {"active": True})


def test_a_deactivated_account_cannot_bind_until_reactivated(
    ldap: LdapHarness, slapd: Slapd
) -> None:
    connector = ldap.connector()
    created = connector.create_account(ldap.attributes(1))
    dn = ldap.entries()["suite001"]["dn"]
    set_password(slapd, dn)
    assert slapd.can_bind(dn, PASSWORD)

    connector.deactivate_account(created.id)
    assert not slapd.can_bind(dn, PASSWORD)  # ppolicy: invalidCredentials while locked
    assert ldap.entries()["suite001"]["active"] is False
    assert connector.get_account(created.id).attributes["active"] is False

    reactivate(connector, created.id)
    assert slapd.can_bind(dn, PASSWORD)
    assert connector.get_account(created.id).attributes["active"] is True


def test_a_lockout_roster_did_not_set_is_not_read_as_deactivated(
    ldap: LdapHarness, slapd: Slapd
) -> None:
    """A temporary lockout (failed binds) carries a real time, not LOCKED: the account
    stays active for the plan, so a sync never unlocks it by "reactivating" it."""
    remote_id = ldap.seed(ldap.attributes(1))
    dn = ldap.entries()["suite001"]["dn"]
    with slapd.admin() as admin:
        admin.modify(dn, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["20260101000000Z"])]})
    assert ldap.connector().get_account(remote_id).attributes["active"] is True


def test_disabled_ou_moves_the_entry_out_and_back_with_its_id(ldap: LdapHarness) -> None:
    connector = ldap.build(SERVICE_PASSWORD, disabled_ou=ldap.tree.disabled)
    created = connector.create_account(ldap.attributes(1))
    other = connector.create_account(ldap.attributes(2))

    connector.deactivate_account(created.id)
    entry = ldap.entries()["suite001"]
    assert entry["dn"] == f"uid=suite001,{ldap.tree.disabled}"
    assert entry["entryUUID"] == created.id
    assert entry["active"] is True  # no lock attribute in this mode
    # still listed (the disabled OU is searched too), as inactive
    listed = {a.id: a for page in connector.list_accounts() for a in page.accounts}
    assert set(listed) == {created.id, other.id}
    assert listed[created.id].attributes["active"] is False
    assert listed[other.id].attributes["active"] is True
    connector.deactivate_account(created.id)  # again: already there, nothing moves

    connector.update_account(created.id, {"cn": "Back Again", "active": True}, {})
    entry = ldap.entries()["suite001"]
    assert entry["dn"] == f"uid=suite001,{ldap.tree.people}"
    assert entry["cn"] == "Back Again"
    assert connector.get_account(created.id).attributes["active"] is True


# -- groups ---------------------------------------------------------------------------------


def make_group(slapd: Slapd, groups_dn: str, name: str, *members: str) -> str:
    dn = f"cn={name},{groups_dn}"
    with slapd.admin() as admin:
        admin.add(dn, ["groupOfNames"], {"member": list(members)})
    return dn


def members(slapd: Slapd, group: str) -> set[str]:
    with slapd.admin() as admin:
        admin.search(group, "(objectClass=*)", ldap3.BASE, attributes=["member"])
        return {str(m).lower() for m in admin.response[0]["attributes"]["member"]}


def test_group_membership_follows_the_account(ldap: LdapHarness, slapd: Slapd) -> None:
    # a member Roster does not manage: groupOfNames cannot be empty
    group = make_group(slapd, ldap.tree.groups, "app-users", SERVICE_DN)
    connector = ldap.build(SERVICE_PASSWORD, groups_dn=ldap.tree.groups, groups=["app-users"])
    people = ldap.tree.people.lower()

    created = connector.create_account(ldap.attributes(1))
    assert members(slapd, group) == {SERVICE_DN, f"uid=suite001,{people}"}

    with slapd.admin() as admin:  # someone takes the account out of the group
        admin.modify(group, {"member": [(ldap3.MODIFY_DELETE, [f"uid=suite001,{people}"])]})
    assert connector.get_account(created.id).attributes["active"] is False
    listed = [a for page in connector.list_accounts() for a in page.accounts]
    assert [a.attributes["active"] for a in listed] == [False]
    reactivate(connector, created.id)  # what the next sync does
    assert f"uid=suite001,{people}" in members(slapd, group)

    connector.update_account(created.id, {"uid": "renamed"}, {})
    assert members(slapd, group) == {SERVICE_DN, f"uid=renamed,{people}"}

    connector.deactivate_account(created.id)
    assert members(slapd, group) == {SERVICE_DN}
    assert ldap.entries()["renamed"]["active"] is False
    reactivate(connector, created.id)
    assert members(slapd, group) == {SERVICE_DN, f"uid=renamed,{people}"}

    connector.delete_account(created.id)
    assert members(slapd, group) == {SERVICE_DN}
    assert ldap.entries() == {}


def test_a_missing_group_stops_the_listing_with_its_name(ldap: LdapHarness) -> None:
    connector = ldap.build(SERVICE_PASSWORD, groups_dn=ldap.tree.groups, groups=["nowhere"])
    with pytest.raises(BadRequestError, match=f"cn=nowhere,{ldap.tree.groups}"):
        list(connector.list_accounts())


def test_removing_a_groups_last_member_says_what_to_do(ldap: LdapHarness, slapd: Slapd) -> None:
    connector = ldap.build(SERVICE_PASSWORD, groups_dn=ldap.tree.groups, groups=["solo"])
    remote_id = ldap.seed(ldap.attributes(1))
    make_group(slapd, ldap.tree.groups, "solo", ldap.entries()["suite001"]["dn"])
    with pytest.raises(BadRequestError, match=r"keep one in .* that Roster does not manage"):
        connector.deactivate_account(remote_id)
    assert ldap.entries()["suite001"]["active"] is False  # locked all the same
