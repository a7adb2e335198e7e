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
import time
from collections.abc import Generator

import httpx

logger = logging.getLogger("roster.connectors.http")

#: RFC 7644 §3.1 names ``application/scim+json``; plain JSON is accepted everywhere.
ACCEPT = "application/scim+json, application/json"


class BearerAuth(httpx.Auth):
    """RFC 6750 bearer token. Its repr never shows the token, so neither do logs or
    tracebacks that print the client."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token='***')"

    __str__ = __repr__


def build_client(
    base_url: str,
    token: str,
    *,
    timeout: float,
    verify_tls: bool,
    concurrency: int,
    app_name: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A client for one app: one keep-alive connection per worker thread, no more.

    ``transport`` replaces the network (tests pass ``httpx.WSGITransport``); TLS and
    pool settings then belong to that transport.
    """
    if not verify_tls:
        logger.warning(
            "TLS certificate verification is disabled for app %s (%s)",
            app_name or "?",
            base_url,
        )
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.Client(
        base_url=base_url,
        auth=BearerAuth(token),
        headers={"Accept": ACCEPT},
        timeout=httpx.Timeout(timeout),
        verify=verify_tls,
        limits=limits,
        transport=transport,
    )


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
