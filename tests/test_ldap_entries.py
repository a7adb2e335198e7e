"""LDAP entries to flat accounts and back: pure functions, literal inputs."""

from __future__ import annotations

from ldap3 import MODIFY_REPLACE

from connectors.ldap.entries import (
    Deactivation,
    EntryShape,
    is_under,
    normal_dn,
    parent_dn,
    rdn_of,
    rdn_value,
)

SHAPE = EntryShape(
    ("uid", "cn", "sn", "mail", "active"),
    "uid",
    Deactivation(attribute="pwdAccountLockedTime", disabled_value="000001010000Z"),
)


def test_dns_compare_without_case_spacing_or_escaping_style() -> None:
    assert normal_dn("UID=J\\2cDoe , OU=People,dc=Example") == "uid=j\\,doe,ou=people,dc=example"
    assert normal_dn("uid=j\\,doe,ou=people,dc=example") == "uid=j\\,doe,ou=people,dc=example"
    assert is_under("uid=a,ou=Disabled,dc=x", "ou=disabled, dc=x")
    assert not is_under("uid=a,ou=people,dc=x", "ou=disabled,dc=x")
    assert not is_under("uid=a,ou=xdisabled,dc=x", "ou=disabled,dc=x")


def test_rdn_and_parent() -> None:
    dn = "uid=a\\,b,ou=people,dc=x"
    assert (rdn_of(dn), rdn_value(dn), parent_dn(dn)) == ("uid=a\\,b", "a,b", "ou=people,dc=x")
    assert rdn_value("uid=caf\\c3\\a9,dc=x") == "café"


def test_flatten_reads_the_rdn_joins_several_values_and_blanks_as_none() -> None:
    raw = {"uid": ["other", "a,b"], "CN": [" "], "sn": ["B"], "mail": ["x@y", "z@y"]}
    flat = SHAPE.flatten("uid=a\\,b,ou=people,dc=x", raw, active=False)
    assert flat == {"uid": "a,b", "cn": None, "sn": "B", "mail": "x@y; z@y", "active": False}


def test_writes_keep_required_attributes_and_drop_empty_ones() -> None:
    assert SHAPE.for_add({"uid": "a", "cn": "", "mail": None, "active": True}) == {
        "uid": ["a"],
        "cn": [" "],
        "sn": [" "],
    }
    assert SHAPE.for_modify({"sn": None, "mail": "", "cn": "C", "uid": "new", "active": False}) == {
        "sn": [(MODIFY_REPLACE, [" "])],
        "mail": [(MODIFY_REPLACE, [])],
        "cn": [(MODIFY_REPLACE, ["C"])],
    }


def test_the_lock_attribute_reads_only_its_own_value_as_disabled() -> None:
    rule = SHAPE.deactivation
    assert rule.is_disabled("uid=a,dc=x", {"pwdAccountLockedTime": ["000001010000Z"]})
    assert not rule.is_disabled("uid=a,dc=x", {"pwdAccountLockedTime": ["20260101000000Z"]})
    assert not rule.is_disabled("uid=a,dc=x", {})
    assert rule.lock(False) == {"pwdAccountLockedTime": [(MODIFY_REPLACE, [])]}
    flag = Deactivation(attribute="nsAccountLock", disabled_value="TRUE", enabled_value="FALSE")
    assert flag.is_disabled("uid=a,dc=x", {"nsaccountlock": ["true"]})
    assert flag.lock(False) == {"nsAccountLock": [(MODIFY_REPLACE, ["FALSE"])]}
    assert SHAPE.requested == ["uid", "cn", "sn", "mail", "entryUUID", "pwdAccountLockedTime"]
