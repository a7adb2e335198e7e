"""From LDAP entries to Roster's flat accounts and back; pure functions, no I/O.

An account's flat map is keyed by LDAP attribute names (``uid``, ``cn``, ``mail``) plus
``active``, which is no LDAP attribute: it is computed from how the app deactivates
(``Deactivation``) and from group membership.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ldap3 import MODIFY_REPLACE
from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import escape_rdn, parse_dn

from connectors.base import Attributes, Value

ACTIVE = "active"
ID_ATTRIBUTE = "entryUUID"
OBJECT_CLASS = "inetOrgPerson"
#: inetOrgPerson's MUST attributes besides objectClass (RFC 2798 via person, RFC 4519).
#: LDAP has no empty values (RFC 4512 §2.3), so an empty one is written as one space, as
#: Keycloak's LDAP federation does, and a blank value reads as empty.
REQUIRED = frozenset({"cn", "sn"})
BLANK = " "
#: several values of one attribute read as one string, so the plan sees them as drift
#: and an update leaves the one value the directory wants
JOIN = "; "
#: RFC 4530 §2.1 entryUUID: RFC 4122 text form
_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

Changes = dict[str, list[tuple[Any, list[str]]]]


def is_entry_uuid(value: str) -> bool:
    return bool(_UUID.fullmatch(value))


def normal_dn(dn: str) -> str:
    """A DN for comparison: escapes undone and redone one way, types and values
    case-folded, spaces around separators dropped (the naming attributes Roster deals
    with, uid, cn, ou, dc, all match case-insensitively)."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPInvalidDnError:
        return dn.strip().lower()
    return ",".join(
        f"{kind.lower()}={escape_rdn(unescape(value)).lower()}" for kind, value, _ in parts
    )


def is_under(dn: str, base: str) -> bool:
    """True when ``dn`` is ``base`` or below it."""
    child, parent = normal_dn(dn), normal_dn(base)
    return child == parent or child.endswith("," + parent)


def parent_dn(dn: str) -> str:
    """Everything after the RDN (``uid=a,ou=people,dc=x`` -> ``ou=people,dc=x``)."""
    parts = parse_dn(dn, escape=False, strip=True)
    return ",".join(f"{kind}={value}" for kind, value, _ in parts[1:])


def rdn_of(dn: str) -> str:
    """The entry's RDN as written (``uid=a\\,b``)."""
    kind, value, _ = parse_dn(dn, escape=False, strip=True)[0]
    return f"{kind}={value}"


def rdn_value(dn: str) -> str:
    """The value of the entry's naming attribute (``uid=a\\,b,...`` -> ``a,b``)."""
    return unescape(str(parse_dn(dn, escape=False, strip=True)[0][1]))


def unescape(value: str) -> str:
    """RFC 4514 §2.4 backwards: ``\\,`` is a comma, ``\\2C`` is the byte 0x2C."""
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in _HEX for c in pair):
                out += bytes.fromhex(pair)
                i += 3
                continue
            i += 1
        out += value[i].encode()
        i += 1
    return out.decode("utf-8", errors="replace")


_HEX = frozenset("0123456789abcdefABCDEF")


def text(value: Value) -> str | None:
    """A flat value as LDAP text; None for nothing (LDAP has no empty values)."""
    if value is None:
        return None
    if isinstance(value, bool):  # RFC 4517 §3.3.3 Boolean
        return "TRUE" if value else "FALSE"
    stripped = value.strip()
    return stripped or None


@dataclass(frozen=True)
class Deactivation:
    """How the app marks an account disabled: a value in ``attribute``, or the entry's
    place under ``ou``. Exactly one of the two is set."""

    attribute: str | None = None
    disabled_value: str = ""
    enabled_value: str | None = None
    ou: str | None = None

    def __post_init__(self) -> None:
        if (self.attribute is None) == (self.ou is None):
            raise ValueError("Deactivation needs exactly one of attribute and ou")

    def is_disabled(self, dn: str, attributes: Mapping[str, Sequence[Any]]) -> bool:
        if self.ou is not None:
            return is_under(dn, self.ou)
        assert self.attribute is not None
        wanted = self.disabled_value.lower()
        return any(str(v).lower() == wanted for v in values_of(attributes, self.attribute))

    def lock(self, disabled: bool) -> Changes:
        """The modification that disables (or enables) the account in attribute mode."""
        assert self.attribute is not None
        if disabled:
            return {self.attribute: [(MODIFY_REPLACE, [self.disabled_value])]}
        value = self.enabled_value
        return {self.attribute: [(MODIFY_REPLACE, [value] if value is not None else [])]}


@dataclass(frozen=True)
class EntryShape:
    """Which attributes Roster reads and writes, and how an entry is named."""

    attributes: tuple[str, ...]
    rdn_attribute: str
    deactivation: Deactivation

    @property
    def requested(self) -> list[str]:
        """Attributes to ask for: the mapped ones, the id and the disable attribute, which
        may be operational (pwdAccountLockedTime) and so is only sent when named."""
        names = [a for a in self.attributes if a != ACTIVE]
        extra = [ID_ATTRIBUTE, self.rdn_attribute, self.deactivation.attribute]
        for name in extra:
            if name is not None and name not in names:
                names.append(name)
        return names

    def rdn_for(self, value: str) -> str:
        return f"{self.rdn_attribute}={escape_rdn(value)}"

    def flatten(self, dn: str, raw: Mapping[str, Sequence[Any]], active: bool) -> dict[str, Value]:
        """The flat account of one entry; ``active`` comes from the caller (it may need
        the groups)."""
        flat: dict[str, Value] = {}
        for name in self.attributes:
            if name == ACTIVE:
                flat[name] = active
            elif name == self.rdn_attribute:
                flat[name] = rdn_value(dn)
            else:
                flat[name] = _read(values_of(raw, name))
        return flat

    def for_add(self, attributes: Attributes) -> dict[str, Any]:
        """The attributes of a new entry (objectClass apart): required ones never empty."""
        entry: dict[str, Any] = {}
        for name in self.attributes:
            if name == ACTIVE:
                continue
            value = text(attributes.get(name))
            if value is not None:
                entry[name] = [value]
            elif name in REQUIRED:
                entry[name] = [BLANK]
        return entry

    def for_modify(self, changes: Attributes) -> Changes:
        """One replace per changed attribute (``active`` and the RDN are not modified
        here); a required attribute set to nothing keeps a blank value."""
        modify: Changes = {}
        for name, value in changes.items():
            if name in (ACTIVE, self.rdn_attribute) or name not in self.attributes:
                continue
            new = text(value)
            if new is None:
                modify[name] = [(MODIFY_REPLACE, [BLANK] if name in REQUIRED else [])]
            else:
                modify[name] = [(MODIFY_REPLACE, [new])]
        return modify


def values_of(raw: Mapping[str, Sequence[Any]], name: str) -> list[Any]:
    """An attribute's values, whatever case the server spelt its name in (RFC 4512
    §2.5: attribute names are case-insensitive)."""
    if name in raw:
        return list(raw[name] or [])
    folded = name.lower()
    for key, values in raw.items():
        if key.lower() == folded:
            return list(values or [])
    return []


def _read(values: Iterable[Any]) -> str | None:
    kept = [s for s in (str(v).strip() for v in values) if s]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else JOIN.join(kept)
