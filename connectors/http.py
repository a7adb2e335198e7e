"""The HTTP plumbing every connector shares: bearer auth, a configured client, Retry-After.

Connectors take an ``httpx.Client`` built here (or by a test) rather than building one,
so tests can hand in a client over ``httpx.WSGITransport``. The client is synchronous:
httpx's sync client costs less CPU per request than the async one, and the apply layer
gets its concurrency from a thread pool sharing one client (httpx clients are
thread-safe; the connection pool is sized from the app's ``concurrency``).
"""

from __future__ import annotations

import email.utils
import logging
import os
import ssl
import time
from collections.abc import Generator
from http.cookiejar import CookieJar
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    InvalidResponseError,
    NotFoundError,
    TransientError,
)
from connectors.redact import protect, redact

logger = logging.getLogger("roster.connectors.http")

#: RFC 7644 §3.1 names ``application/scim+json``; plain JSON is accepted everywhere.
ACCEPT = "application/scim+json, application/json"
#: Worth retrying in place; other 5xx are raised as TransientError at once, for the
#: caller's (Prefect's) retry policy to judge.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Failures where the request may not have reached the app, or its answer was lost.
NETWORK_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class BearerAuth(httpx.Auth):
    """RFC 6750 bearer token, held as a ``SecretStr``: its repr never shows the token, so
    neither do logs or tracebacks that print the client. The token is registered for
    redaction (``connectors.redact``) in case an app echoes it back."""

    def __init__(self, token: str | SecretStr) -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        protect(self._token.get_secret_value())

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token='***')"

    __str__ = __repr__


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing. Apps are reached with a header (a bearer token,
    basic or an API key), never a session cookie, and a cookie an app or its load
    balancer sets is not sent back. httpx reads every answer into its jar otherwise:
    about 20 µs of CPU per request, more than the rest of Roster's wire."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any) -> None:
        return None


def build_client(
    base_url: str,
    token: str | SecretStr | None,
    *,
    timeout: float,
    verify_tls: bool,
    concurrency: int,
    ca_bundle: str | os.PathLike[str] | None = None,
    app_name: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A client for one app: one keep-alive connection per worker thread, no more.

    Certificates are verified against the public CAs, or only against ``ca_bundle``
    when given; ``verify_tls=False`` turns verification off and says so in a WARNING,
    once per client. ``transport`` replaces the network (tests pass
    ``httpx.WSGITransport``); TLS and pool settings then belong to that transport.
    Without ``token`` no Authorization header is sent (the caller sets its own auth).
    """
    if not verify_tls:
        logger.warning(
            "TLS certificate verification is disabled for app %s (%s): tls_verify is false",
            app_name or "?",
            base_url,
        )
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.Client(
        base_url=base_url,
        auth=BearerAuth(token) if token is not None else None,
        headers={"Accept": ACCEPT},
        timeout=httpx.Timeout(timeout),
        verify=tls_verification(verify_tls, ca_bundle),
        limits=limits,
        transport=transport,
        cookies=NoCookies(),
    )


def tls_verification(
    verify_tls: bool, ca_bundle: str | os.PathLike[str] | None
) -> bool | ssl.SSLContext:
    """httpx's ``verify``: True (public CAs), False, or a context trusting only the app's
    CA file (httpx 0.28 deprecated passing a path)."""
    if ca_bundle is None or not verify_tls:
        return verify_tls
    return ssl.create_default_context(cafile=os.fspath(ca_bundle))


def certificate_problem(exc: BaseException) -> str | None:
    """Why certificate verification failed, when that is what ``exc`` (an httpx
    ConnectError, caused by httpcore's, caused by ssl's) comes down to; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or "certificate verify failed")
        current = current.__cause__ or current.__context__
    return None


def parse_retry_after(header: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3): either
    delay-seconds or an HTTP-date. None when absent or unreadable; never negative."""
    if header is None:
        return None
    value = header.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as GMT too
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def raise_for_status(
    method: str, path: str, response: httpx.Response, *, reason: str | None = None
) -> None:
    """Map a status to connectors.errors: "POST /Users: 409 uniqueness: ...". ``reason``
    comes from the app's error body; messages never carry request bodies or headers, nor
    a token the app echoed back."""
    status = response.status_code
    if 200 <= status < 300:
        return
    # The reason phrase is the app's text too, so it is redacted like an error detail.
    message = redact(f"{method} {path}: {status} {reason or response.reason_phrase}".rstrip())
    if status in (401, 403):
        raise AuthError(message, status=status)
    if status == 404:
        raise NotFoundError(message, status=status)
    if status == 409:
        raise ConflictError(message, status=status)
    if status in RETRY_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise TransientError(message, status=status, retry_after=retry_after)
    if status >= 500 and status != 501:  # 501: the app will never do it (e.g. PATCH)
        raise TransientError(message, status=status)
    if status >= 400:
        raise BadRequestError(message, status=status)
    raise InvalidResponseError(message, status=status)  # 1xx/3xx: redirects are not followed


def is_retryable(exc: BaseException) -> bool:
    """429, 502-504 and network failures (status None)."""
    return isinstance(exc, TransientError) and (exc.status is None or exc.status in RETRY_STATUSES)


def read_json(method: str, path: str, response: httpx.Response) -> Any:
    """The body as JSON, or InvalidResponseError (an HTML error page, a truncated body,
    arrays nested deeper than Python's recursion limit)."""
    try:
        return response.json()
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidResponseError(
            f"{method} {path}: {response.status_code} body is not JSON", status=response.status_code
        ) from exc
