"""The LDAP connector against a real OpenLDAP slapd (tests/ldap_server.py), checked on the
server with the rootdn's own connection: paging past the size limit, the account
lifecycle with renames, adoption, filter escaping, credentials, dry run, required and
multi-valued attributes, and a server that goes away and comes back."""

from __future__ import annotations

import logging
from pathlib import Path

import ldap3
import pytest
from pydantic import SecretStr

from connectors.build import ldap_connections
from connectors.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    DryRunError,
    NotFoundError,
    TransientError,
)
from connectors.ldap import Deactivation, LdapConnector
from directory.config import LdapAppConfig
from tests import ldap_server
from tests.harnesses.ldap import LdapHarness
from tests.ldap_server import (
    SERVICE_DN,
    SERVICE_PASSWORD,
    SIZE_LIMIT,
    Slapd,
    running_slapd,
)


def service_search(slapd: Slapd, base: str, where: str) -> tuple[int, int]:
    """(result code, entries) of a plain search as Roster's service account."""
    with ldap3.Connection(
        ldap3.Server(slapd.url, get_info=ldap3.NONE), SERVICE_DN, SERVICE_PASSWORD
    ) as connection:
        connection.search(base, where)
        return connection.result["result"], len(connection.entries)


# -- listing ------------------------------------------------------------------------------


def test_listing_pages_past_the_server_size_limit(ldap: LdapHarness, slapd: Slapd) -> None:
    seeded = {ldap.seed(ldap.attributes(i)) for i in range(12)}
    # the limit is real: a plain search stops at SIZE_LIMIT with sizeLimitExceeded (4)
    assert service_search(slapd, ldap.tree.people, "(objectClass=inetOrgPerson)") == (
        4,
        SIZE_LIMIT,
    )
    connector = ldap.connector(page_size=4)
    pages = list(connector.list_accounts())
    assert connector.last_attempts == len(pages)
    assert [len(p.accounts) for p in pages][:3] == [4, 4, 4]
    assert {a.id for p in pages for a in p.accounts} == seeded
    # one page larger than the limit: the paged-results control lifts it (RFC 2696)
    whole = list(ldap.connector(page_size=500).list_accounts())
    assert [len(p.accounts) for p in whole] == [12]


def test_listed_accounts_carry_the_mapped_attributes(ldap: LdapHarness) -> None:
    remote_id = ldap.seed(
        {"uid": "jdoe", "cn": "Jane Doe", "sn": "Doe", "mail": "Jane@Example.com"}
    )
    (page,) = list(ldap.connector(page_size=10).list_accounts())
    (account,) = page.accounts
    assert account.id == remote_id
    assert account.attributes == {
        "uid": "jdoe",
        "cn": "Jane Doe",
        "givenName": None,
        "sn": "Doe",
        "mail": "Jane@Example.com",
        "title": None,
        "employeeNumber": None,
        "departmentNumber": None,
        "active": True,
    }


# -- writing -----------------------------------------------------------------------------


def test_create_reads_back_the_entry_uuid_and_writes_every_attribute(ldap: LdapHarness) -> None:
    connector = ldap.connector()
    created = connector.create_account(
        {**ldap.attributes(1), "mail": "s1@example.com", "title": "Engineer"}
    )
    assert connector.last_attempts == 2  # add, then read back
    entry = ldap.entries()["suite001"]
    assert entry["entryUUID"] == created.id
    assert entry["dn"] == f"uid=suite001,{ldap.tree.people}"
    assert (entry["cn"], entry["mail"], entry["title"]) == (
        "Suite User 1",
        ["s1@example.com"],
        ["Engineer"],
    )
    assert created.attributes["active"] is True


def test_a_new_uid_renames_the_entry_and_keeps_its_id(ldap: LdapHarness) -> None:
    connector = ldap.connector()
    wanted = ldap.attributes(1)
    created = connector.create_account(wanted)
    renamed = {**wanted, "uid": "renamed", "title": "Boss"}
    connector.update_account(created.id, {"uid": "renamed", "title": "Boss"}, renamed)
    entries = ldap.entries()
    assert set(entries) == {"renamed"}
    entry = entries["renamed"]
    assert entry["dn"] == f"uid=renamed,{ldap.tree.people}"
    assert entry["entryUUID"] == created.id
    assert entry["uid"] == ["renamed"]  # the old naming value is gone (deleteoldrdn)
    assert entry["title"] == ["Boss"]
    assert connector.get_account(created.id).attributes["uid"] == "renamed"


def test_deleting_twice_is_not_found(ldap: LdapHarness) -> None:
    connector = ldap.connector()
    created = connector.create_account(ldap.attributes(1))
    connector.delete_account(created.id)
    assert ldap.entries() == {}
    with pytest.raises(NotFoundError):
        connector.delete_account(created.id)
    with pytest.raises(NotFoundError):
        connector.get_account("not-a-uuid")


def test_empty_cn_and_sn_are_written_blank_and_read_as_empty(ldap: LdapHarness) -> None:
    """inetOrgPerson requires cn and sn, and LDAP has no empty values."""
    connector = ldap.connector()
    created = connector.create_account({"uid": "solo", "cn": None, "sn": "", "active": True})
    entry = ldap.entries()["solo"]
    assert (entry["cn"], entry["sn"]) == (" ", " ")
    read = connector.get_account(created.id).attributes
    assert (read["cn"], read["sn"]) == (None, None)
    connector.update_account(created.id, {"sn": "Solo"}, {"uid": "solo", "sn": "Solo"})
    assert ldap.entries()["solo"]["sn"] == "Solo"
    connector.update_account(created.id, {"sn": None, "title": None}, {"uid": "solo"})
    assert ldap.entries()["solo"]["sn"] == " "


def test_several_values_read_as_drift_and_an_update_leaves_one(
    ldap: LdapHarness, slapd: Slapd
) -> None:
    remote_id = ldap.seed({"uid": "multi", "cn": "M", "sn": "M"})
    dn = ldap.entries()["multi"]["dn"]
    with slapd.admin() as admin:
        admin.modify(dn, {"mail": [(ldap3.MODIFY_ADD, ["a@example.com", "b@example.com"])]})
    connector = ldap.connector()
    assert connector.get_account(remote_id).attributes["mail"] == "a@example.com; b@example.com"
    connector.update_account(remote_id, {"mail": "a@example.com"}, {"mail": "a@example.com"})
    assert ldap.entries()["multi"]["mail"] == ["a@example.com"]


# -- finding and adopting -------------------------------------------------------------------


def test_creating_an_existing_uid_conflicts_and_find_adopts_it(ldap: LdapHarness) -> None:
    remote_id = ldap.seed({**ldap.attributes(3), "mail": "three@example.com"})
    connector = ldap.connector()
    with pytest.raises(ConflictError, match="68 entryAlreadyExists"):
        connector.create_account(ldap.attributes(3))
    by_uid = connector.find_account("uid", "SUITE003")  # caseIgnoreMatch
    by_mail = connector.find_account("mail", "three@example.com")
    assert by_uid is not None and by_mail is not None
    assert by_uid.id == by_mail.id == remote_id
    assert connector.find_account("uid", "nobody") is None


def test_find_refuses_to_guess_between_two_entries(ldap: LdapHarness) -> None:
    for i in (1, 2):
        ldap.seed({**ldap.attributes(i), "mail": "shared@example.com"})
    with pytest.raises(ConflictError, match="several entries"):
        ldap.connector().find_account("mail", "shared@example.com")


def test_filter_values_are_escaped(ldap: LdapHarness, slapd: Slapd) -> None:
    for uid in ("alice", "bob", "a*(b)\\c"):
        ldap.seed({"uid": uid})
    # unescaped, the value would turn the filter into "everyone"
    injected = "(&(objectClass=inetOrgPerson)(uid=*)(uid=*))"
    assert service_search(slapd, ldap.tree.people, injected) == (0, 3)
    connector = ldap.connector()
    assert connector.find_account("uid", "*)(uid=*") is None
    assert connector.find_account("uid", "*") is None
    found = connector.find_account("uid", "a*(b)\\c")
    assert found is not None and found.attributes["uid"] == "a*(b)\\c"


# -- credentials, secrets, dry run -----------------------------------------------------------


def test_bad_credentials_are_an_auth_error_naming_the_bind_dn_not_the_password(
    ldap: LdapHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-password-91d3"
    connector = ldap.bad_credentials()
    with pytest.raises(AuthError) as caught:
        connector.get_account("00000000-0000-0000-0000-000000000000")
    message = str(caught.value)
    assert message.startswith(f"bind as {SERVICE_DN}: 49 invalidCredentials")
    assert "check the app's secret" in message
    bad = ldap.build(wrong)
    with pytest.raises(AuthError):
        list(bad.list_accounts())
    good = ldap.connector()
    good.create_account(ldap.attributes(1))
    list(good.list_accounts())
    for text in (message, caplog.text, repr(good), repr(bad)):
        assert wrong not in text and SERVICE_PASSWORD not in text


def test_dry_run_refuses_every_write_and_the_server_sees_none(
    ldap: LdapHarness, slapd: Slapd
) -> None:
    remote_id = ldap.seed(ldap.attributes(1))
    connector = ldap.connector(dry_run=True)
    before = slapd.writes()
    assert connector.get_account(remote_id).attributes["uid"] == "suite001"
    writes = [
        lambda: connector.create_account(ldap.attributes(2)),
        lambda: connector.update_account(remote_id, {"cn": "X"}, {"cn": "X"}),
        lambda: connector.update_account(remote_id, {"uid": "other"}, {"uid": "other"}),
        lambda: connector.deactivate_account(remote_id),
        lambda: connector.delete_account(remote_id),
    ]
    for write in writes:
        with pytest.raises(DryRunError, match="dry-run"):
            write()
    assert slapd.writes() == before
    assert set(ldap.entries()) == {"suite001"}


# -- a server that goes away ----------------------------------------------------------------


def test_a_server_down_is_transient_and_the_connector_reconnects(tmp_path: Path) -> None:
    with running_slapd(tmp_path) as own:
        tree = own.fresh_tree()
        app = LdapAppConfig.model_validate(
            {
                "name": "flaky",
                "connector": "ldap",
                "url": own.url,
                "bind_dn": SERVICE_DN,
                "base_dn": tree.people,
                "token_env": "UNUSED",
            }
        )
        slept: list[float] = []
        connector = LdapConnector(
            "flaky",
            ldap_connections(app, SecretStr(SERVICE_PASSWORD)),
            base_dn=tree.people,
            attributes=list(app.effective_mapping),
            deactivation=Deactivation(attribute="pwdAccountLockedTime", disabled_value="x"),
            max_retries=2,
            sleep=slept.append,
        )
        created = connector.create_account({"uid": "steady", "cn": "S", "sn": "S"})
        own.stop()
        with pytest.raises(TransientError):
            connector.get_account(created.id)
        assert connector.last_attempts == 3 and len(slept) == 2
        own.start()
        # the dead pooled connection was dropped: a new one binds
        assert connector.get_account(created.id).attributes["uid"] == "steady"
        connector.close()


def test_without_slapd_the_tests_skip_or_fail_as_ci_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ldap_server, "SLAPD", "/nonexistent/slapd")
    monkeypatch.delenv(ldap_server.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install slapd"):
        ldap_server.slapd_or_skip()
    monkeypatch.setenv(ldap_server.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="ROSTER_REQUIRE_LDAP is set but"):
        ldap_server.slapd_or_skip()


def test_a_listing_the_server_cuts_short_fails_instead_of_looking_complete(
    tmp_path: Path,
) -> None:
    """slapd's default limits paged searches to the hard size limit too: half a listing
    read as whole would look like deleted accounts, and the plan would re-create them."""
    with running_slapd(tmp_path, paged_total="") as strict:
        harness = LdapHarness(strict, strict.fresh_tree())
        for i in range(SIZE_LIMIT + 3):
            harness.seed(harness.attributes(i))
        connector = harness.connector(page_size=3)
        with pytest.raises(BadRequestError, match=r"4 sizeLimitExceeded.*size\.prtotal"):
            list(connector.list_accounts())
        connector.close()
