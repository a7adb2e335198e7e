"""A PostgreSQL database whose login roles are the accounts (``connector: sql``).

An account is a role that is a direct member of the app's managed role and whose name
starts with the app's prefix; nothing else is ever listed, found or changed, so a
directory user called ``postgres`` can never reach the superuser. Its remote id is the
role's **oid**, not its name: a rename (a changed userName) keeps the oid, so the link
Roster keeps survives it, where a name would leave the link pointing at nothing and the
next run would re-create the account.

Attributes: ``userName`` (the name without the prefix), ``active`` (LOGIN/NOLOGIN),
``comment`` (COMMENT ON ROLE) and ``memberOf`` (the account's group roles among
``group_roles``, sorted, comma-separated).

Every statement goes through ``SqlConnector._run``, the one method that talks to the
database: it refuses writes in dry-run mode (and runs reads in READ ONLY transactions,
so a misfiled write fails in the server too), spends the app's rate budget, runs one
transaction per attempt, retries transient failures with tenacity, maps errors to
``connectors.errors`` and logs what it did, never values. Each public call is one
transaction where it can be (a create is atomic: the role exists fully managed, or not
at all); ``last_attempts`` counts its transactions, retries included.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar, cast

import psycopg
from psycopg.rows import dict_row
from sqlalchemy.engine import Engine
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from connectors.base import Account, AccountPage, Attributes, Connector, Value
from connectors.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    DryRunError,
    NotFoundError,
    TransientError,
)
from connectors.ratelimit import RateLimiter
from connectors.redact import scrub
from connectors.sql import statements as q
from connectors.sql.errors import DATABASE_ERRORS, map_error
from connectors.wire import PerThreadAttempts
from directory.appkinds.sql import (
    ACTIVE,
    COMMENT,
    MEMBER_OF,
    MEMBER_SEPARATOR,
    SQL_ATTRIBUTES,
    USER_NAME,
    check_role_name,
    split_members,
)

logger = logging.getLogger("roster.connectors.sql")

Cursor: TypeAlias = psycopg.Cursor[dict[str, Any]]
Row: TypeAlias = dict[str, Any]
T = TypeVar("T")
#: oids are unsigned 32-bit integers
MAX_OID = 2**32 - 1


class SqlConnector(PerThreadAttempts):
    """The login roles of one PostgreSQL cluster that Roster manages for one app."""

    def __init__(
        self,
        name: str,
        engine: Engine,
        *,
        attributes: Sequence[str],
        managed_role: str = "roster_managed",
        name_prefix: str = "",
        group_roles: Sequence[str] = (),
        reassign_owned_to: str | None = None,
        terminate_sessions: bool = True,
        page_size: int = 500,
        dry_run: bool = False,
        rate_limiter: RateLimiter | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        unknown = [a for a in attributes if a not in SQL_ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown role attributes: {', '.join(unknown)}")
        self.name = name
        self.dry_run = dry_run
        self._engine = engine
        self._attributes = list(attributes)
        self._managed = managed_role
        self._prefix = name_prefix
        self._groups = sorted(group_roles)
        self._reassign_to = reassign_owned_to
        self._terminate = terminate_sessions
        self._page_size = page_size
        self._limiter = rate_limiter
        self._retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(max_retries + 1),
            wait=wait_random_exponential(multiplier=backoff_base, max=backoff_cap),
            sleep=sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        self._local = threading.local()
        self._managed_lock = threading.Lock()
        self._managed_exists = False

    # -- attempt accounting -------------------------------------------------------

    @property
    def last_attempts(self) -> int:
        """Transactions of the calling thread's most recent public call, retries included."""
        return self.last_operation.attempts

    # -- operations (connectors.base.Connector) -------------------------------------

    def list_accounts(self) -> Iterator[AccountPage]:
        self.begin()
        after, first = 0, True
        while True:
            params = {**self._scope(), "after": after, "limit": self._page_size}
            rows = self._run("list roles", _fetch_all(q.LIST_PAGE, params), write=False)
            if rows or first:
                yield AccountPage(accounts=[self._account(row) for row in rows])
            if len(rows) < self._page_size:
                return
            after, first = rows[-1]["oid"], False

    def find_account(self, attribute: str, value: str) -> Account | None:
        self.begin()
        if attribute == USER_NAME:
            if check_role_name(value, prefix=self._prefix):
                return None  # no role can have this name
            params = {**self._scope(), "name": self._prefix + value}
            rows = self._run("find role", _fetch_all(q.BY_NAME, params), write=False)
        elif attribute == COMMENT:
            params = {**self._scope(), "comment": value}
            rows = self._run("find role", _fetch_all(q.BY_COMMENT, params), write=False)
        else:
            raise BadRequestError(f"find role: roles cannot be searched by {attribute!r}")
        if len(rows) > 1:  # the same meaning as several SCIM matches: disputed, do not guess
            raise ConflictError(f"find role: {len(rows)} roles match {attribute}")
        return self._account(rows[0]) if rows else None

    def get_account(self, remote_id: str) -> Account:
        self.begin()
        oid = _oid(remote_id)
        row = self._run("get role", lambda cur: self._managed_row(cur, oid), write=False)
        return self._account(row)

    def create_account(self, attributes: Attributes) -> Account:
        """An existing name raises ConflictError: the caller finds the account and adopts
        it, which works only for roles Roster manages (never a DBA's role of that name)."""
        self.begin()
        user_name = attributes.get(USER_NAME)
        name = self._role_name(user_name)
        groups = self._member_of(attributes) if MEMBER_OF in attributes else []

        def create(cur: Cursor) -> Row:
            self._require_roles(cur, groups)
            cur.execute(q.create_role(name, login=_active(attributes.get(ACTIVE, True))))
            cur.execute(q.grant_role(self._managed, name))
            comment = _text(attributes.get(COMMENT))
            if comment:
                cur.execute(q.comment_on_role(name, comment))
            for group in groups:
                cur.execute(q.grant_role(group, name))
            return _one(cur, q.BY_NAME, {**self._scope(), "name": name}, "create role")

        self._ensure_managed_role()
        return self._account(self._run("create role", create, write=True))

    def update_account(self, remote_id: str, changes: Attributes, current: Attributes) -> None:
        """Only ``changes`` are written; ``current`` is not needed (no PUT in SQL)."""
        self.begin()
        if not changes:
            return
        oid = _oid(remote_id)
        new_name = self._role_name(changes[USER_NAME]) if USER_NAME in changes else None
        groups = self._member_of(changes) if MEMBER_OF in changes else None

        def update(cur: Cursor) -> None:
            row = self._managed_row(cur, oid)
            name = row["rolname"]
            if new_name is not None and new_name != name:
                cur.execute(q.rename_role(name, new_name))
                name = new_name
            if ACTIVE in changes:
                cur.execute(q.set_login(name, login=_active(changes[ACTIVE])))
            if COMMENT in changes:
                cur.execute(q.comment_on_role(name, _text(changes[COMMENT])))
            if groups is not None:
                self._set_groups(cur, name, row["member_of"], groups)

        self._run("update role", update, write=True)
        if ACTIVE in changes and not _active(changes[ACTIVE]):
            self._end_sessions(oid)

    def deactivate_account(self, remote_id: str) -> None:
        """NOLOGIN stops new sessions; the open ones are ended after the commit (before
        it, a new session could still start)."""
        self.begin()
        oid = _oid(remote_id)

        def deactivate(cur: Cursor) -> None:
            name = self._managed_row(cur, oid)["rolname"]
            cur.execute(q.set_login(name, login=False))

        self._run("deactivate role", deactivate, write=True)
        self._end_sessions(oid)

    def delete_account(self, remote_id: str) -> None:
        """REASSIGN OWNED and DROP OWNED (when ``reassign_owned_to`` is set), then DROP
        ROLE, in one transaction. Both OWNED commands act on the connected database only:
        objects in other databases make DROP ROLE fail, and nothing is dropped."""
        self.begin()
        oid = _oid(remote_id)

        def delete(cur: Cursor) -> None:
            name = self._managed_row(cur, oid)["rolname"]
            if self._reassign_to is not None:
                self._require_roles(cur, [self._reassign_to])
                cur.execute(q.reassign_owned(name, self._reassign_to))
                cur.execute(q.drop_owned(name))
            cur.execute(q.drop_role(name))

        self._run("delete role", delete, write=True)
        self._end_sessions(oid)

    def close(self) -> None:
        self._engine.dispose()

    # -- pieces ---------------------------------------------------------------------------

    def _scope(self) -> dict[str, Any]:
        """The parameters of every query over managed roles."""
        return {"managed": self._managed, "prefix": self._prefix, "groups": self._groups}

    def _managed_row(self, cur: Cursor, oid: int) -> Row:
        rows = _fetch_all(q.BY_OID, {**self._scope(), "oid": oid})(cur)
        if not rows:
            raise NotFoundError(f"role {oid}: no such role among those Roster manages")
        return rows[0]

    def _account(self, row: Row) -> Account:
        values: dict[str, Value] = {
            USER_NAME: row["rolname"][len(self._prefix) :],
            ACTIVE: bool(row["rolcanlogin"]),
            COMMENT: row["comment"],
            MEMBER_OF: MEMBER_SEPARATOR.join(row["member_of"]) or None,
        }
        return Account(id=str(row["oid"]), attributes={a: values[a] for a in self._attributes})

    def _role_name(self, user_name: Value) -> str:
        if not isinstance(user_name, str):
            raise BadRequestError("role: userName must be text")
        problem = check_role_name(user_name, prefix=self._prefix)
        if problem:
            raise BadRequestError(f"role: the role name {problem}")
        return self._prefix + user_name

    def _member_of(self, attributes: Attributes) -> list[str]:
        """memberOf as role names, each one of ``group_roles``: the directory never
        decides which roles exist to be granted."""
        value = attributes.get(MEMBER_OF)
        wanted = split_members(value if isinstance(value, str) else None)
        outside = [role for role in wanted if role not in self._groups]
        if outside:
            raise BadRequestError(f"role: memberOf names roles outside group_roles: {outside}")
        return wanted

    def _set_groups(self, cur: Cursor, name: str, has: list[str], wanted: list[str]) -> None:
        self._require_roles(cur, wanted)
        for group in sorted(set(wanted) - set(has)):
            cur.execute(q.grant_role(group, name))
        for group in sorted(set(has) - set(wanted)):
            cur.execute(q.revoke_role(group, name))

    def _require_roles(self, cur: Cursor, names: Sequence[str]) -> None:
        """A configured role that does not exist is the app's problem, not the account's:
        said plainly here rather than as a NotFoundError that would read "account gone"."""
        if not names:
            return
        rows = _fetch_all(q.EXISTING_ROLES, {"names": list(names)})(cur)
        found = {row["rolname"] for row in rows}
        missing = sorted(set(names) - found)
        if missing:
            raise BadRequestError(f"role: configured role(s) {missing} do not exist")

    def _ensure_managed_role(self) -> None:
        """Create the managed role on the first write, once per connector."""
        with self._managed_lock:
            if self._managed_exists:
                return

            def ensure(cur: Cursor) -> None:
                if _fetch_all(q.EXISTING_ROLES, {"names": [self._managed]})(cur):
                    return
                cur.execute(q.create_role(self._managed, login=False))
                cur.execute(
                    q.comment_on_role(self._managed, "Roster: its members are Roster's accounts")
                )

            with contextlib.suppress(ConflictError):  # another process was first
                self._run("create managed role", ensure, write=True)
            self._managed_exists = True

    def _end_sessions(self, oid: int) -> None:
        if not self._terminate:
            return
        try:
            rows = self._run("end sessions", _fetch_all(q.END_SESSIONS, {"oid": oid}), write=True)
        except AuthError as exc:  # the role change is done; only the clean-up was refused
            logger.warning("app %s: open sessions of role %s not ended: %s", self.name, oid, exc)
            return
        if rows and rows[0]["ended"]:
            logger.info("app %s: ended %d session(s) of role %s", self.name, rows[0]["ended"], oid)

    # -- the database -------------------------------------------------------------------

    def _run(self, what: str, work: Callable[[Cursor], T], *, write: bool) -> T:
        """The one place that talks to the database: ``work`` runs in one transaction per
        attempt. Raises the typed errors of connectors.errors.

        Retries cover writes too: a CREATE ROLE whose commit was lost comes back as
        duplicate_object on the retry, which the caller handles like any conflict."""
        if write and self.dry_run:
            raise DryRunError(f"{what}: refused, app {self.name} is in dry-run mode")
        stats = self._stats()
        stats.requests += 1
        for attempt in self._retrying:
            with attempt:
                stats.attempts += 1
                if self._limiter is not None:
                    self._limiter.acquire()
                started = time.perf_counter()
                try:
                    result = self._transaction(work, read_only=not write)
                except DATABASE_ERRORS as exc:
                    raise map_error(what, exc) from scrub(exc)
                elapsed = (time.perf_counter() - started) * 1000
                logger.debug("app %s: %s (%.1f ms)", self.name, what, elapsed)
                return result
        raise AssertionError("tenacity returned without a result")  # pragma: no cover

    def _transaction(self, work: Callable[[Cursor], T], *, read_only: bool) -> T:
        pooled = self._engine.raw_connection()
        try:
            connection = cast(psycopg.Connection[Any], pooled.driver_connection)
            try:
                with connection.cursor(row_factory=dict_row) as cur:
                    if read_only:
                        cur.execute(q.READ_ONLY)
                    result = work(cur)
                connection.commit()
                return result
            except BaseException:
                _roll_back(connection, pooled)
                raise
        finally:
            pooled.close()  # back to the pool (or away, if invalidated)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.info("app %s: %s; retry %d in %.2fs", self.name, exc, state.attempt_number, wait)


def _roll_back(connection: psycopg.Connection[Any], pooled: Any) -> None:
    """Leave nothing half-done; a broken connection is thrown away, not pooled again."""
    if not connection.broken:
        try:
            connection.rollback()
            return
        except psycopg.Error:
            pass
    pooled.invalidate()


def _fetch_all(query: str, params: Mapping[str, Any]) -> Callable[[Cursor], list[Row]]:
    def fetch(cur: Cursor) -> list[Row]:
        cur.execute(query, params)
        return cur.fetchall()

    return fetch


def _one(cur: Cursor, query: str, params: Mapping[str, Any], what: str) -> Row:
    rows = _fetch_all(query, params)(cur)
    if len(rows) != 1:
        raise NotFoundError(f"{what}: the role is not visible after the write")
    return rows[0]


def _oid(remote_id: str) -> int:
    """A remote id is a role's oid; anything else names no role."""
    if not remote_id.isascii() or not remote_id.isdigit() or not 0 < int(remote_id) <= MAX_OID:
        raise NotFoundError(f"role {remote_id!r}: not a role oid")
    return int(remote_id)


def _active(value: Value) -> bool:
    """The plan's reading of ``active``: only False (or "false") is inactive."""
    return not (value is False or (isinstance(value, str) and value.lower() == "false"))


def _text(value: Value) -> str | None:
    return None if value is None or value == "" else str(value)


_: type[Connector] = SqlConnector
