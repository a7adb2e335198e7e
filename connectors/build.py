"""From an app's configuration to a ready connector: the one place that wires the
HTTP client, the app's rate budget and the connector class together."""

from __future__ import annotations

import httpx

from connectors.base import Connector
from connectors.http import build_client
from connectors.ratelimit import RateLimiter
from connectors.scim import ScimConnector
from directory.config import AppConfig


def build_connector(
    app: AppConfig, *, dry_run: bool, transport: httpx.BaseTransport | None = None
) -> Connector:
    """A connector for ``app``. ``transport`` replaces the network (tests pass
    ``InProcessScim.transport()``). The token is read from the environment now."""
    client = build_client(
        str(app.base_url),
        app.token(),
        timeout=app.timeout,
        verify_tls=app.verify_tls,
        concurrency=app.concurrency,
        app_name=app.name,
        transport=transport,
    )
    # One budget per app, shared by every worker thread; no bursts above the stated rate.
    limiter = RateLimiter(app.rate_limit) if app.rate_limit is not None else None
    try:
        return ScimConnector(
            app.name,
            client,
            paths=list(app.effective_mapping),
            page_size=app.page_size,
            update_method=app.update_method,
            dry_run=dry_run,
            rate_limiter=limiter,
            max_retries=app.max_retries,
        )
    except Exception:
        client.close()  # a mapping path the User schema lacks: do not leak the pool
        raise
