"""An LDAP directory (RFC 4511) as an app: ``inetOrgPerson`` entries under a base DN.

What to send, not how: every operation goes through ``LdapWire.send``
(``connectors.ldap.wire``), which owns the connections, retries, dry run and error
mapping.

The remote id is the entry's ``entryUUID`` (RFC 4530): it survives renames and moves,
which the DN does not. Each operation on an id first finds the entry by it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.utils.conv import escape_filter_chars

from connectors.base import Account, AccountPage, Attributes, Connector
from connectors.errors import (
    BadRequestError,
    ConflictError,
    InvalidResponseError,
    NotFoundError,
)
from connectors.ldap.entries import (
    ACTIVE,
    ID_ATTRIBUTE,
    OBJECT_CLASS,
    Changes,
    Deactivation,
    EntryShape,
    is_entry_uuid,
    is_under,
    normal_dn,
    parent_dn,
    rdn_of,
    text,
    values_of,
)
from connectors.ldap.results import (
    ATTRIBUTE_OR_VALUE_EXISTS,
    NO_SUCH_ATTRIBUTE,
    OBJECT_CLASS_VIOLATION,
    SIZE_LIMIT_EXCEEDED,
)
from connectors.ldap.wire import ConnectionFactory, LdapWire, OperationStats, Pin, Reply
from connectors.ratelimit import RateLimiter

PERSON_FILTER = f"(objectClass={OBJECT_CLASS})"


@dataclass(frozen=True)
class Entry:
    dn: str
    uuid: str
    attributes: Mapping[str, Sequence[Any]]


class LdapConnector:
    """Accounts of one LDAP directory, as flat maps keyed by attribute names."""

    def __init__(
        self,
        name: str,
        connect: ConnectionFactory,
        *,
        base_dn: str,
        attributes: Sequence[str],
        deactivation: Deactivation,
        rdn_attribute: str = "uid",
        groups: Sequence[str] = (),
        page_size: int = 500,
        start_tls: bool = False,
        dry_run: bool = False,
        rate_limiter: RateLimiter | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``groups``: DNs of ``groupOfNames`` entries every active account is a member of."""
        self.name = name
        self.dry_run = dry_run
        self._base_dn = base_dn
        self._shape = EntryShape(tuple(attributes), rdn_attribute, deactivation)
        self._deactivation = deactivation
        self._groups = list(groups)
        self._page_size = page_size
        self._wire = LdapWire(
            name,
            connect,
            start_tls=start_tls,
            dry_run=dry_run,
            rate_limiter=rate_limiter,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            sleep=sleep,
        )

    @property
    def last_operation(self) -> OperationStats:
        return self._wire.last_operation

    @property
    def last_attempts(self) -> int:
        """LDAP operations sent by this thread's most recent public call, retries included."""
        return self._wire.last_operation.attempts

    # -- operations (connectors.base.Connector) -------------------------------------

    def list_accounts(self) -> Iterator[AccountPage]:
        """Each base (``base_dn``, and ``disabled_ou`` when it lies outside) page by page
        with the paged-results control, which servers honour past their size limit."""
        self._wire.begin()
        members = self._all_members()
        seen: set[str] = set()
        pin = Pin()
        try:
            for base in self._bases():
                cookie: bytes | None = None
                first = True
                while first or cookie:
                    first = False
                    reply = self._search(base, PERSON_FILTER, page=cookie, pin=pin)
                    cookie = reply.cookie
                    yield self._page(reply.entries, members, seen)
        finally:
            self._wire.release(pin)

    def find_account(self, attribute: str, value: str) -> Account | None:
        """RFC 4515 §3: the value is escaped, so ``*)(uid=*`` matches itself only."""
        self._wire.begin()
        if attribute == ACTIVE or attribute not in self._shape.attributes:
            raise BadRequestError(f"find: {attribute!r} is not a mapped attribute of {self.name}")
        where = f"({attribute}={escape_filter_chars(value)})"
        found = [
            entry
            for base in self._bases()
            for entry in self._search(base, f"(&{PERSON_FILTER}{where})", limit=2).entries
        ]
        if len(found) > 1:
            raise ConflictError(f"find {attribute}: several entries match", status=None)
        if not found:
            return None
        return self._account(self._entry(found[0]), self._memberships(found[0]["dn"]))

    def get_account(self, remote_id: str) -> Account:
        self._wire.begin()
        entry = self._resolve(remote_id)
        return self._account(entry, self._memberships(entry.dn))

    def create_account(self, attributes: Attributes) -> Account:
        """entryAlreadyExists raises ConflictError: the caller finds the entry and adopts it."""
        self._wire.begin()
        rdn = text(attributes.get(self._shape.rdn_attribute))
        if rdn is None:
            raise BadRequestError(f"add: no {self._shape.rdn_attribute} to name the entry")
        dn = f"{self._shape.rdn_for(rdn)},{self._base_dn}"
        values = self._shape.for_add(attributes)
        try:
            self._wire.send("add", dn, lambda c: c.add(dn, [OBJECT_CLASS], values), write=True)
        except NotFoundError as exc:
            raise _missing_base(exc) from exc
        if attributes.get(ACTIVE) is False:
            self._disable(dn)
        else:
            self._join_groups(dn)
        entry = self._read(dn)
        return self._account(entry, self._memberships(entry.dn))

    def update_account(self, remote_id: str, changes: Attributes, current: Attributes) -> None:
        """A new RDN value (``uid``) is a modify DN; the rest one modify; ``active``
        last. ``current`` is not needed: LDAP modifies attribute by attribute."""
        self._wire.begin()
        if not changes:
            return
        entry = self._resolve(remote_id)
        dn = entry.dn
        rdn = self._shape.rdn_attribute
        if rdn in changes:
            dn = self._rename(entry, changes[rdn])
        modify = self._shape.for_modify(changes)
        if modify:
            self._wire.send("modify", dn, lambda c: c.modify(dn, modify), write=True)
        if changes.get(ACTIVE) is True:
            self._enable(dn)
        elif changes.get(ACTIVE) is False:
            self._disable(dn)

    def deactivate_account(self, remote_id: str) -> None:
        self._wire.begin()
        self._disable(self._resolve(remote_id).dn)

    def delete_account(self, remote_id: str) -> None:
        self._wire.begin()
        dn = self._resolve(remote_id).dn
        self._leave_groups(dn)
        self._wire.send("delete", dn, lambda c: c.delete(dn), write=True)

    def close(self) -> None:
        self._wire.close()

    # -- reading --------------------------------------------------------------------

    def _bases(self) -> list[str]:
        ou = self._deactivation.ou
        if ou is None or is_under(ou, self._base_dn):
            return [self._base_dn]
        return [self._base_dn, ou]

    def _resolve(self, remote_id: str) -> Entry:
        """The entry whose entryUUID is ``remote_id``, wherever it moved. NotFoundError."""
        if not is_entry_uuid(remote_id):
            raise NotFoundError(f"{remote_id!r} is not an entryUUID", status=None)
        where = f"(&{PERSON_FILTER}({ID_ATTRIBUTE}={escape_filter_chars(remote_id)}))"
        for base in self._bases():
            entries = self._search(base, where, limit=2).entries
            if entries:
                return self._entry(entries[0])
        raise NotFoundError(f"search {self._base_dn}: no entry has entryUUID {remote_id}")

    def _read(self, dn: str) -> Entry:
        entries = self._search(dn, PERSON_FILTER, scope=ldap3.BASE).entries
        if not entries:
            raise InvalidResponseError(f"search {dn}: the entry just written is not there")
        return self._entry(entries[0])

    def _search(
        self,
        base: str,
        where: str,
        *,
        scope: str = ldap3.SUBTREE,
        limit: int = 0,
        page: bytes | None = None,
        pin: Pin | None = None,
    ) -> Reply:
        """``pin``: a paged search, on the pinned connection; ``page``: the cookie of the
        page to read, None for the first."""
        attributes = self._shape.requested

        def search(c: ldap3.Connection) -> Any:
            return c.search(
                base,
                where,
                scope,
                attributes=attributes,
                size_limit=limit,
                paged_size=self._page_size if pin is not None else None,
                paged_cookie=page,
            )

        # a size limit of our own (limit) is not an error: "several match" is the answer
        ok = frozenset({SIZE_LIMIT_EXCEEDED}) if limit else frozenset()
        # a cookie belongs to its connection: a later page cannot be retried on another
        retry = page is None
        try:
            return self._wire.send("search", base, search, ok=ok, retry=retry, pin=pin)
        except NotFoundError as exc:
            raise _missing_base(exc) from exc
        except BadRequestError as exc:
            if pin is None or exc.status != SIZE_LIMIT_EXCEEDED:
                raise
            # A listing cut short must fail: read as complete, it would look like
            # accounts deleted from the app, and the plan would create them again.
            raise BadRequestError(
                f"{exc}: the server limits paged searches too; let the bind DN page past"
                " its size limit (OpenLDAP: size.prtotal=unlimited in its limits)",
                status=exc.status,
            ) from exc

    def _entry(self, raw: Mapping[str, Any]) -> Entry:
        dn = str(raw.get("dn") or "")
        attributes: Mapping[str, Sequence[Any]] = raw.get("attributes") or {}
        uuids = [str(v) for v in values_of(attributes, ID_ATTRIBUTE)]
        if not dn or len(uuids) != 1 or not is_entry_uuid(uuids[0]):
            raise InvalidResponseError(f"search: entry {dn or '(no DN)'} has no valid entryUUID")
        return Entry(dn, uuids[0].lower(), attributes)

    def _page(
        self, raw: list[dict[str, Any]], members: list[set[str]] | None, seen: set[str]
    ) -> AccountPage:
        accounts: list[Account] = []
        errors: list[str] = []
        for item in raw:
            try:
                entry = self._entry(item)
            except InvalidResponseError as exc:
                errors.append(str(exc))
                continue
            if entry.uuid in seen:  # a base below another is listed once
                continue
            seen.add(entry.uuid)
            key = normal_dn(entry.dn)
            joined = None if members is None else all(key in group for group in members)
            accounts.append(self._account(entry, joined))
        return AccountPage(accounts=accounts, errors=errors)

    def _account(self, entry: Entry, in_groups: bool | None) -> Account:
        """``in_groups``: member of every group (None: the app has no groups)."""
        disabled = self._deactivation.is_disabled(entry.dn, entry.attributes)
        active = not disabled and in_groups is not False
        return Account(entry.uuid, self._shape.flatten(entry.dn, entry.attributes, active))

    # -- groups ----------------------------------------------------------------------

    def _all_members(self) -> list[set[str]] | None:
        """Each group's members, as normalised DNs; None when the app has no groups."""
        if not self._groups:
            return None
        members = []
        for group in self._groups:
            entries = self._read_group(group, "(objectClass=groupOfNames)", "member")
            if not entries:
                raise BadRequestError(f"search {group}: not a groupOfNames entry")
            values = entries[0].get("attributes", {}).get("member") or []
            members.append({normal_dn(str(v)) for v in values})
        return members

    def _memberships(self, dn: str) -> bool | None:
        """Whether ``dn`` is a member of every group; None when the app has no groups."""
        if not self._groups:
            return None
        where = f"(&(objectClass=groupOfNames)(member={escape_filter_chars(dn)}))"
        return all(self._read_group(group, where, "cn") for group in self._groups)

    def _read_group(self, group: str, where: str, attribute: str) -> list[dict[str, Any]]:
        def search(c: ldap3.Connection) -> Any:
            return c.search(group, where, ldap3.BASE, attributes=[attribute])

        try:
            return self._wire.send("search", group, search).entries
        except NotFoundError as exc:
            raise _missing_base(exc) from exc

    def _join_groups(self, dn: str) -> None:
        for group in self._groups:
            change = {"member": [(ldap3.MODIFY_ADD, [dn])]}
            self._modify_group(group, change, ok=ATTRIBUTE_OR_VALUE_EXISTS)

    def _leave_groups(self, dn: str) -> None:
        for group in self._groups:
            change = {"member": [(ldap3.MODIFY_DELETE, [dn])]}
            self._modify_group(group, change, ok=NO_SUCH_ATTRIBUTE)

    def _modify_group(self, group: str, change: Changes, *, ok: int) -> None:
        try:
            self._wire.send(
                "modify", group, lambda c: c.modify(group, change), write=True, ok=frozenset({ok})
            )
        except BadRequestError as exc:
            if exc.status == OBJECT_CLASS_VIOLATION:
                raise BadRequestError(
                    f"{exc}: groupOfNames needs a member, so keep one in {group} that"
                    " Roster does not manage",
                    status=exc.status,
                ) from exc
            raise
        except NotFoundError as exc:  # the group is gone, not the account
            raise BadRequestError(f"{exc} (a group of app {self.name})", status=exc.status) from exc

    # -- writing ---------------------------------------------------------------------

    def _rename(self, entry: Entry, value: object) -> str:
        """Modify DN to the new RDN value; group memberships follow the entry."""
        new = text(value if isinstance(value, str) else None)
        if new is None:
            raise BadRequestError(f"modify DN {entry.dn}: {self._shape.rdn_attribute} is empty")
        rdn = self._shape.rdn_for(new)
        if rdn == rdn_of(entry.dn):
            return entry.dn
        # not retried in place: a rename that landed would come back noSuchObject
        self._wire.send(
            "modify DN",
            entry.dn,
            lambda c: c.modify_dn(entry.dn, rdn, delete_old_dn=True),
            write=True,
            retry=False,
        )
        dn = f"{rdn},{parent_dn(entry.dn)}"
        for group in self._groups:
            follow = {"member": [(ldap3.MODIFY_DELETE, [entry.dn]), (ldap3.MODIFY_ADD, [dn])]}
            # noSuchAttribute: not a member (an inactive account), nothing to follow
            self._modify_group(group, follow, ok=NO_SUCH_ATTRIBUTE)
        return dn

    def _disable(self, dn: str) -> None:
        """Disable first, then leave the groups: an interruption leaves the account
        disabled (still a member), never enabled outside the groups."""
        rule = self._deactivation
        if rule.ou is None:
            lock = rule.lock(True)
            self._wire.send("modify", dn, lambda c: c.modify(dn, lock), write=True)
        elif not is_under(dn, rule.ou):
            self._move(dn, rule.ou)
        self._leave_groups(dn)

    def _enable(self, dn: str) -> None:
        rule = self._deactivation
        if rule.ou is None:
            unlock = rule.lock(False)
            self._wire.send("modify", dn, lambda c: c.modify(dn, unlock), write=True)
        elif is_under(dn, rule.ou):
            dn = self._move(dn, self._base_dn)
        self._join_groups(dn)

    def _move(self, dn: str, superior: str) -> str:
        """Modify DN to a new parent; the new DN. Not retried in place (see _rename)."""
        rdn = rdn_of(dn)
        self._wire.send(
            "modify DN",
            dn,
            lambda c: c.modify_dn(dn, rdn, new_superior=superior),
            write=True,
            retry=False,
        )
        return f"{rdn},{superior}"

    # -- the wire ----------------------------------------------------------------------


def _missing_base(exc: NotFoundError) -> BadRequestError:
    """noSuchObject on a search base, a group or a new entry's parent: the app's
    configuration names an entry that does not exist. Not the account's absence, which
    the apply layer would answer by creating it again."""
    return BadRequestError(
        f"{exc} (the app's configuration names an entry that does not exist:"
        " check base_dn, disabled_ou, groups_dn and groups)",
        status=exc.status,
    )


_: type[Connector] = LdapConnector
