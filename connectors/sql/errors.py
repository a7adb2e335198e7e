"""PostgreSQL's errors as ``connectors.errors``, by SQLSTATE (PostgreSQL manual, Appendix A).

Errors raised while connecting carry no SQLSTATE (libpq reports them as text), so they
are told apart by the server's ``FATAL:`` line: a refusal that is not one of the known
passing conditions (starting up, too many clients) is an AuthError. Those texts are
English unless the server's ``lc_messages`` says otherwise; a translated one falls back
to AuthError too, which stops the app for this run rather than retrying in vain.

Messages carry the server's primary message only (never DETAIL, which can quote data),
redacted; libpq never puts the password in its messages, and the password is registered
for redaction anyway (``connectors.sql.engine``).
"""

from __future__ import annotations

import psycopg
from sqlalchemy import exc as sa_exc

from connectors.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    TransientError,
)
from connectors.redact import redact

#: what a database driver or pool may raise, for the one place that catches them
DATABASE_ERRORS = (psycopg.Error, sa_exc.DBAPIError, sa_exc.TimeoutError)

_BY_SQLSTATE: dict[str, type[ConnectorError]] = {
    "28000": AuthError,  # invalid_authorization_specification
    "28P01": AuthError,  # invalid_password
    "42501": AuthError,  # insufficient_privilege: every account would fail alike
    "3D000": AuthError,  # invalid_catalog_name: the database does not exist
    "42710": ConflictError,  # duplicate_object: CREATE ROLE of an existing name
    "23505": ConflictError,  # unique_violation: two CREATE ROLE racing on pg_authid
    "42704": NotFoundError,  # undefined_object: the role is gone
    "40001": TransientError,  # serialization_failure
    "40P01": TransientError,  # deadlock_detected
    "55P03": TransientError,  # lock_not_available
    "57014": TransientError,  # query_canceled: statement_timeout
    "57P01": TransientError,  # admin_shutdown
    "57P02": TransientError,  # crash_shutdown
    "57P03": TransientError,  # cannot_connect_now
    "2BP01": BadRequestError,  # dependent_objects_still_exist: DROP ROLE of an owner
}
_BY_CLASS: dict[str, type[ConnectorError]] = {
    "08": TransientError,  # connection exception
    "53": TransientError,  # insufficient resources: too many connections, disk full
    "58": TransientError,  # system error (I/O)
    "22": BadRequestError,  # data exception
    "42": BadRequestError,  # syntax error or access rule violation: reserved names...
    "0L": BadRequestError,  # invalid grantor
    "0P": BadRequestError,  # invalid role specification
}
#: FATAL messages at connection time that pass by themselves
_PASSING = (
    "starting up",
    "shutting down",
    "in recovery",
    "too many clients",
    "connection slots",
    "not accepting connections",
    "not currently accepting connections",
)
#: XX000 is "internal error", but this one is a race on a catalog row: a DBA's ALTER ROLE
#: committed while ours waited for it; ours is fine to repeat
_CONCURRENT_UPDATE = "tuple concurrently updated"
_HINTS: dict[str, str] = {
    "2BP01": "the role owns objects or holds privileges; set reassign_owned_to to move"
    " them, or clear them by hand",
}
MAX_DETAIL = 200


def map_error(what: str, exc: BaseException) -> ConnectorError:
    """The connector error for a failed ``what`` ("create role", "list roles")."""
    if isinstance(exc, sa_exc.TimeoutError):  # every pooled connection is busy
        return TransientError(f"{what}: no free database connection ({exc})")
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if not isinstance(cause, psycopg.Error):
        return ConnectorError(f"{what}: {type(cause).__name__}")
    state = cause.sqlstate
    if state is None:
        return _without_sqlstate(what, cause)
    primary = cause.diag.message_primary or type(cause).__name__
    kind = _BY_SQLSTATE.get(state) or _BY_CLASS.get(state[:2], ConnectorError)
    if state == "XX000" and primary == _CONCURRENT_UPDATE:
        kind = TransientError
    message = f"{what}: {state} {_clean(primary)}"
    if state in _HINTS:
        message += f" ({_HINTS[state]})"
    return kind(message)


def _without_sqlstate(what: str, cause: psycopg.Error) -> ConnectorError:
    """Connection failures (libpq's text), and psycopg's own client-side errors."""
    text = str(cause)
    if isinstance(cause, psycopg.DataError):  # e.g. a NUL character psycopg will not send
        return BadRequestError(f"{what}: {_clean(text)}")
    if not isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError):
        return ConnectorError(f"{what}: {type(cause).__name__}: {_clean(text)}")
    _, fatal, refusal = text.partition("FATAL:")
    if not fatal:  # refused, timed out, reset: the server may be back in a moment
        return TransientError(f"{what}: cannot reach the database: {_clean(text)}")
    refusal = _clean(refusal)
    if any(marker in refusal for marker in _PASSING):
        return TransientError(f"{what}: the database is not accepting connections: {refusal}")
    return AuthError(f"{what}: the database refused Roster's connection: {refusal}")


def _clean(text: str) -> str:
    """One line, redacted, cut short."""
    line = " ".join(redact(text).split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"
