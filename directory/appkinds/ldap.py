"""An LDAP directory as an app (RFC 4511): accounts are ``inetOrgPerson`` entries under
``base_dn``, attributes are LDAP attribute names, and the app's secret is the password
Roster binds with as ``bind_dn``.

LDAP has no standard "disabled" flag, so deactivation is one of two real mechanisms:

- ``disable_attribute`` (the default): write ``disabled_value`` into one attribute, and
  on reactivation write ``enabled_value`` (or remove the attribute when it is null). The
  default is OpenLDAP's password policy overlay (slapo-ppolicy): ``pwdAccountLockedTime:
  000001010000Z`` locks the account until an administrator unlocks it, and slapd refuses
  its binds (the default policy needs ``pwdLockout: TRUE``). For 389 Directory Server use
  ``nsAccountLock: "TRUE"``; any attribute an application checks works the same way.
- ``disabled_ou``: move the entry into that OU (modify DN); reactivation moves it back
  under ``base_dn``. For directories where applications search one OU only.

``groups`` (``groupOfNames`` entries under ``groups_dn``) hold every active account as a
``member``: deactivation removes it, reactivation adds it back, a rename updates it. An
account missing from one of them reads as inactive, so the next sync puts it back.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn
from pydantic import AliasChoices, AnyUrl, Field, FilePath, field_validator, model_validator

from directory.appbase import AppConfig

#: RFC 4512 §2.5: an attribute description's name (a descriptor), as a mapping key
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")

#: inetOrgPerson (RFC 2798) and its superclasses' attribute names
LDAP_DEFAULT_MAPPING: dict[str, str] = {
    "uid": "user_name",
    "cn": "display_name",
    "givenName": "given_name",
    "sn": "family_name",
    "mail": "email",
    "title": "title",
    "employeeNumber": "employee_number",
    "departmentNumber": "department",
    "active": "active",
}


class LdapAppConfig(AppConfig):
    """``url``, ``bind_dn`` (with its password in ``token_env``/``token_secret``) and
    ``base_dn``; see the module docstring for deactivation and groups."""

    default_mapping: ClassVar[dict[str, str]] = LDAP_DEFAULT_MAPPING
    default_match_on: ClassVar[tuple[str, ...]] = ("uid", "mail")
    #: RFC 4519 §2.39 uid: caseIgnoreMatch; RFC 4524 §2.16 mail: caseIgnoreIA5Match
    case_insensitive: ClassVar[frozenset[str]] = frozenset({"uid", "mail"})
    login_attribute: ClassVar[str] = "uid"

    connector: Literal["ldap"]
    #: ``ldap://host:389`` or ``ldaps://host:636``; no user, path or query
    url: AnyUrl
    #: upgrade an ``ldap://`` connection to TLS before binding (RFC 4511 §4.14)
    start_tls: bool = False
    #: TLS certificate verification (ldaps:// and start_tls); ``verify_tls`` works too
    tls_verify: bool = Field(True, validation_alias=AliasChoices("tls_verify", "verify_tls"))
    #: PEM file of the CA certificate(s) to trust for this server instead of the system's
    ca_bundle: FilePath | None = None
    bind_dn: str
    #: where accounts are created, and searched (subtree)
    base_dn: str
    #: the attribute that names an entry under ``base_dn`` (``uid=jdoe,<base_dn>``)
    rdn_attribute: str = "uid"
    disable_attribute: str | None = "pwdAccountLockedTime"
    disabled_value: str = "000001010000Z"
    #: null: reactivation removes ``disable_attribute``
    enabled_value: str | None = None
    #: instead of ``disable_attribute``: deactivation moves the entry here
    disabled_ou: str | None = None
    #: where ``groups`` are; required with ``groups``
    groups_dn: str | None = None
    #: ``cn`` of ``groupOfNames`` entries under ``groups_dn`` that every active account
    #: is a member of
    groups: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, url: AnyUrl) -> AnyUrl:
        if url.scheme not in ("ldap", "ldaps"):
            raise ValueError(f"must start with ldap:// or ldaps://, not {url.scheme}://")
        if not url.host:
            raise ValueError("names no server")
        if url.username or url.password:
            raise ValueError(
                "must not contain a user name or password: set bind_dn, and put the"
                " password in the environment variable that token_env names"
            )
        if url.path not in (None, "", "/") or url.query or url.fragment:
            raise ValueError("must be only ldap[s]://host[:port]: set base_dn for the base")
        return url

    @field_validator("bind_dn", "base_dn", "disabled_ou", "groups_dn")
    @classmethod
    def _distinguished_name(cls, dn: str | None) -> str | None:
        if dn is None:
            return dn
        try:
            if not dn.strip() or not parse_dn(dn):
                raise ValueError("is empty")
        except LDAPInvalidDnError:
            raise ValueError(f"{dn!r} is not a distinguished name (RFC 4514)") from None
        return dn

    @field_validator("rdn_attribute", "disable_attribute")
    @classmethod
    def _attribute_name(cls, name: str | None) -> str | None:
        if name is not None and not ATTRIBUTE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an LDAP attribute name")
        return name

    @field_validator("groups")
    @classmethod
    def _group_names(cls, groups: list[str]) -> list[str]:
        for name in groups:
            if not name.strip():
                raise ValueError("a group name is empty")
        return groups

    @model_validator(mode="after")
    def _consistent(self) -> LdapAppConfig:
        if self.ca_bundle is not None and not self.tls_verify:
            raise ValueError("ca_bundle is set but tls_verify is false: keep one")
        if self.start_tls and self.url.scheme == "ldaps":
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS already")
        if self.disabled_ou is not None:
            if "disable_attribute" in self.model_fields_set and self.disable_attribute:
                raise ValueError("set one of disable_attribute and disabled_ou, not both")
            self.disable_attribute = None
        if self.groups and self.groups_dn is None:
            raise ValueError("groups needs groups_dn (where the groups are)")
        mapping = self.effective_mapping
        if self.rdn_attribute not in mapping:
            raise ValueError(
                f"rdn_attribute {self.rdn_attribute!r} is not mapped: every entry is named by it"
            )
        bad = [name for name in mapping if not ATTRIBUTE_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"mapping: not LDAP attribute names: {', '.join(bad)}")
        return self
