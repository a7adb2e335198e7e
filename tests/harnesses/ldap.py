"""The LDAP harness: the session's real slapd (tests/ldap_server.py), a fresh subtree per
test, read back as the rootdn with its own ldap3 connection (not Roster's connector).

The app deactivates with OpenLDAP's password policy (``pwdAccountLockedTime``), the
kind's default, so ``active`` on the server is "not locked by an administrator".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ldap3
from ldap3.utils.dn import escape_rdn
from pydantic import SecretStr

from connectors.base import Connector, Value
from connectors.build import build_connector
from directory.config import LdapAppConfig
from tests.ldap_server import LOCKED, SERVICE_DN, SERVICE_PASSWORD, Slapd, Tree

APP = "suite"
SECRET_ENV = "ROSTER_SUITE_SECRET"


class LdapHarness:
    kind = "ldap"
    key = "uid"
    updatable = "cn"

    def __init__(self, slapd: Slapd, tree: Tree, **settings: Any) -> None:
        self.slapd = slapd
        self.tree = tree
        self.settings = settings

    def app_config(self) -> dict[str, Any]:
        return {
            "name": APP,
            "connector": "ldap",
            "url": self.slapd.url,
            "bind_dn": SERVICE_DN,
            "base_dn": self.tree.people,
            "token_env": SECRET_ENV,
            **self.settings,
        }

    def environment(self) -> dict[str, str]:
        return {SECRET_ENV: SERVICE_PASSWORD}

    def connector(self, *, page_size: int = 2, dry_run: bool = False) -> Connector:
        return self.build(SERVICE_PASSWORD, page_size=page_size, dry_run=dry_run)

    def bad_credentials(self) -> Connector:
        return self.build("not-the-password-4b1d")

    def build(
        self, password: str, *, page_size: int = 2, dry_run: bool = False, **settings: Any
    ) -> Connector:
        config = {**self.app_config(), "page_size": page_size, **settings}
        app = LdapAppConfig.model_validate(config)
        return build_connector(app, SecretStr(password), dry_run=dry_run)

    def attributes(self, i: int) -> dict[str, Value]:
        return {
            "uid": f"suite{i:03d}",
            "cn": f"Suite User {i}",
            "givenName": f"Suite{i}",
            "sn": "User",
            "active": True,
        }

    def seed(self, attributes: Mapping[str, Value]) -> str:
        """An inetOrgPerson under the people OU, added as the rootdn; its entryUUID."""
        dn = f"uid={escape_rdn(str(attributes['uid']))},{self.tree.people}"
        values = {
            k: str(v)
            for k, v in attributes.items()
            if k not in ("uid", "active") and v is not None and v != ""
        }
        values.setdefault("cn", str(attributes["uid"]))
        values.setdefault("sn", str(attributes["uid"]))
        with self.slapd.admin() as admin:
            admin.add(dn, ["inetOrgPerson"], values)
            if attributes.get("active") is False:
                admin.modify(dn, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [LOCKED])]})
            admin.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["entryUUID"])
            return str(admin.entries[0].entryUUID.value)

    def server_accounts(self) -> dict[str, dict[str, Any]]:
        return {
            uid: {"uid": uid, "cn": entry["cn"], "active": entry["active"]}
            for uid, entry in self.entries().items()
        }

    def entries(self, base: str | None = None) -> dict[str, dict[str, Any]]:
        """Every inetOrgPerson under ``base`` (the test's subtree), by uid: its DN,
        entryUUID, cn, sn, mail, and ``active`` (not locked)."""
        wanted = ["uid", "cn", "sn", "mail", "title", "entryUUID", "pwdAccountLockedTime"]
        with self.slapd.admin() as admin:
            admin.search(base or self.tree.base, "(objectClass=inetOrgPerson)", attributes=wanted)
            found = {}
            for item in admin.response:
                raw = item["attributes"]
                found[raw["uid"][0]] = {
                    "dn": item["dn"],
                    "entryUUID": raw["entryUUID"][0],
                    "uid": raw["uid"],
                    "cn": raw["cn"][0] if raw["cn"] else None,
                    "sn": raw["sn"][0] if raw["sn"] else None,
                    "mail": raw["mail"],
                    "title": raw["title"],
                    "active": LOCKED not in raw["pwdAccountLockedTime"],
                }
            return found


@contextlib.contextmanager
def harness(request: Any, tmp_path: Path) -> Iterator[LdapHarness]:
    slapd: Slapd = request.getfixturevalue("slapd")
    yield LdapHarness(slapd, slapd.fresh_tree())
