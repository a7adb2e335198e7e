"""The one way Roster talks to an LDAP server: ``LdapWire.send``.

It refuses writes in dry-run mode, spends the app's rate budget, lends a bound
connection from its pool, retries busy/unavailable servers and dead sockets with
tenacity on a fresh connection, maps result codes to ``connectors.errors``
(``connectors.ldap.results``) and logs the operation, the DN and the result only: a
bind request holds the password, so requests are never kept, logged or raised.

Connections come from a factory built outside (``connectors.build``): ldap3
``Connection`` objects with the ``SAFE_SYNC`` strategy, so each call returns its own
result instead of leaving it on the connection. The pool lends each connection to one
thread at a time and keeps as many as were ever needed at once (the app's concurrency).

Attempt counts, as in ``connectors.scim``: each public call of the connector starts a
fresh ``OperationStats`` for the calling thread (``begin``), and every send adds to it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from connectors.errors import BadRequestError, ConnectorError, DryRunError, TransientError
from connectors.ldap.results import COMMUNICATION_ERRORS, check_result, communication_error
from connectors.ratelimit import RateLimiter
from connectors.redact import scrub
from connectors.wire import OperationStats, PerThreadAttempts

logger = logging.getLogger("roster.connectors.ldap")

#: RFC 2696 simple paged results
PAGED_RESULTS = "1.2.840.113556.1.4.319"

ConnectionFactory = Callable[[], ldap3.Connection]
Request = Callable[[ldap3.Connection], Any]


@dataclass(frozen=True)
class Reply:
    """One operation's outcome: its result code and, for a search, the entries found
    and the paged-results cookie of the next page (None: the last page)."""

    code: int
    entries: list[dict[str, Any]] = field(default_factory=list)
    cookie: bytes | None = None


@dataclass
class Pin:
    """The one connection a paged search keeps across its pages (a cookie belongs to
    its connection); ``LdapWire.release`` gives it back."""

    connection: ldap3.Connection | None = None


class LdapWire(PerThreadAttempts):
    """Bound connections to one server, and the one method that uses them."""

    def __init__(
        self,
        app: str,
        connect: ConnectionFactory,
        *,
        start_tls: bool = False,
        dry_run: bool = False,
        rate_limiter: RateLimiter | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = app
        self.dry_run = dry_run
        self._connect = connect
        self._start_tls = start_tls
        self._limiter = rate_limiter
        self._idle: queue.SimpleQueue[ldap3.Connection] = queue.SimpleQueue()
        self._opened: list[ldap3.Connection] = []
        self._opened_lock = threading.Lock()
        self._local = threading.local()
        self._retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(max_retries + 1),
            wait=wait_random_exponential(multiplier=backoff_base, max=backoff_cap),
            sleep=sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def send(
        self,
        label: str,
        target: str,
        request: Request,
        *,
        write: bool = False,
        ok: frozenset[int] = frozenset(),
        retry: bool = True,
        pin: Pin | None = None,
    ) -> Reply:
        """The one place that talks to ldap3. Raises the typed errors of connectors.errors.

        ``pin``: keep one connection across calls (a paged search), instead of leasing
        one from the pool for this call alone.
        """
        if write and self.dry_run:
            raise DryRunError(f"{label} {target}: refused, app {self.name} is in dry-run mode")
        stats = self._stats()
        stats.requests += 1
        if not retry:
            return self._attempt(label, target, request, ok, pin, stats)
        for attempt in self._retrying:
            with attempt:
                return self._attempt(label, target, request, ok, pin, stats)
        raise AssertionError("tenacity returned without a result")  # pragma: no cover

    def _attempt(
        self,
        label: str,
        target: str,
        request: Request,
        ok: frozenset[int],
        pin: Pin | None,
        stats: OperationStats,
    ) -> Reply:
        stats.attempts += 1
        if self._limiter is not None:
            self._limiter.acquire()
        if pin is not None:
            if pin.connection is None or pin.connection.closed:
                pin.connection = self.checkout()
            connection = pin.connection
        else:
            connection = self.checkout()
        try:
            _, result, response, _ = request(connection)  # the 4th: the request, unread
        except COMMUNICATION_ERRORS as exc:
            self._discard(connection)
            raise communication_error(label, target, exc) from None
        except LDAPException as exc:  # ldap3 refused to build the request
            raise BadRequestError(f"{label} {target}: {type(exc).__name__}: {scrub(exc)}") from None
        finally:
            if pin is None:
                self.checkin(connection)
        logger.debug("%s %s -> %s", label, target, result.get("description"))
        code = check_result(label, target, result, ok)
        entries = [r for r in response or [] if r.get("type") == "searchResEntry"]
        control = (result.get("controls") or {}).get(PAGED_RESULTS) or {}
        cookie = (control.get("value") or {}).get("cookie") or None
        return Reply(code, entries, cookie)

    def checkout(self) -> ldap3.Connection:
        """A bound connection for the calling thread alone, from the pool or new."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._open()

    def checkin(self, connection: ldap3.Connection) -> None:
        """Back to the pool, unless its socket failed (``_discard`` closed it)."""
        if not connection.closed:
            self._idle.put(connection)

    def _open(self) -> ldap3.Connection:
        """A new connection, bound (after StartTLS when asked): the bind's result maps
        like any other (49: AuthError)."""
        connection = self._connect()
        if not connection.strategy.thread_safe:
            raise TypeError("the connection factory must use ldap3's SAFE_SYNC strategy")
        target = str(connection.server.host)
        try:
            connection.open(read_server_info=False)
            if self._start_tls:
                connection.start_tls(read_server_info=False)
            _, result, _, _ = connection.bind()
        except COMMUNICATION_ERRORS as exc:
            self._discard(connection)
            raise communication_error("bind", target, exc) from None
        except LDAPException as exc:
            self._discard(connection)
            raise ConnectorError(f"bind {target}: {type(exc).__name__}: {scrub(exc)}") from None
        try:
            check_result("bind", f"as {connection.user}", result)
        except Exception:
            self._discard(connection)
            raise
        with self._opened_lock:
            self._opened.append(connection)
        return connection

    def _discard(self, connection: ldap3.Connection) -> None:
        with contextlib.suppress(LDAPException, OSError):
            connection.unbind()
        with self._opened_lock:
            if connection in self._opened:
                self._opened.remove(connection)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.info("app %s: %s; retry %d in %.2fs", self.name, exc, state.attempt_number, wait)

    def release(self, pin: Pin) -> None:
        if pin.connection is not None:
            self.checkin(pin.connection)
            pin.connection = None

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            with contextlib.suppress(LDAPException, OSError):
                connection.unbind()
