"""TLS to an LDAP app is verified unless the app turns it off, against the session's
slapd and its self-signed certificate: ldaps:// and StartTLS."""

from __future__ import annotations

import logging

import pytest

from connectors.errors import TLSError
from tests.harnesses.ldap import LdapHarness
from tests.ldap_server import SERVICE_PASSWORD, Slapd


def test_ldaps_refuses_an_unknown_certificate_by_default(ldap: LdapHarness, slapd: Slapd) -> None:
    connector = ldap.build(SERVICE_PASSWORD, url=slapd.tls_url)
    with pytest.raises(
        TLSError, match=r"certificate verification failed .*set the app's ca_bundle"
    ):
        list(connector.list_accounts())
    assert connector.last_attempts == 1  # not retried: retrying cannot fix it


def test_ldaps_trusts_the_ca_bundle(ldap: LdapHarness, slapd: Slapd) -> None:
    ldap.seed(ldap.attributes(1))
    connector = ldap.build(SERVICE_PASSWORD, url=slapd.tls_url, ca_bundle=str(slapd.cert))
    accounts = [a for page in connector.list_accounts() for a in page.accounts]
    assert [a.attributes["uid"] for a in accounts] == ["suite001"]


def test_start_tls_is_verified_too(ldap: LdapHarness, slapd: Slapd) -> None:
    ldap.seed(ldap.attributes(1))
    refused = ldap.build(SERVICE_PASSWORD, start_tls=True)
    with pytest.raises(TLSError):
        list(refused.list_accounts())
    trusted = ldap.build(SERVICE_PASSWORD, start_tls=True, ca_bundle=str(slapd.cert))
    assert len([a for page in trusted.list_accounts() for a in page.accounts]) == 1


def test_tls_verify_false_connects_and_says_so(
    ldap: LdapHarness, slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    connector = ldap.build(SERVICE_PASSWORD, url=slapd.tls_url, tls_verify=False)
    assert [page.accounts for page in connector.list_accounts()] == [[]]
    assert "TLS certificate verification is disabled for app suite" in caplog.text
