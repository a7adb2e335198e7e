"""From an app's configuration to a ready connector: the one place that wires the
HTTP client, the app's rate budget and the connector class together."""

from __future__ import annotations

import ssl

import httpx
from pydantic import SecretStr

from connectors.base import Connector
from connectors.http import build_client
from connectors.ratelimit import RateLimiter
from connectors.scim import ScimConnector
from connectors.scim.paths import check_paths
from directory.config import AppConfig, ConfigError


def check_mapping(app: AppConfig, where: str | None = None) -> None:
    """The app's mapping against its connector's schema, so a typo is a ConfigError before
    anything starts, never a crash in the middle of a run. ``where`` names the key
    (``roster.yaml: apps[0].mapping``)."""
    try:
        check_paths(app.effective_mapping)
    except ValueError as exc:
        raise ConfigError(f"{where or f'app {app.name!r}: mapping'}: {exc}") from None


def build_connector(
    app: AppConfig,
    token: SecretStr,
    *,
    dry_run: bool,
    transport: httpx.BaseTransport | None = None,
) -> Connector:
    """A connector for ``app``, sending ``token`` (``tasks.tokens.resolve_token`` reads
    it from the app's variable or Secret block). ``transport`` replaces the network
    (tests pass ``InProcessScim.transport()``)."""
    check_mapping(app)
    try:
        client = build_client(
            str(app.base_url),
            token,
            timeout=app.timeout,
            verify_tls=app.tls_verify,
            ca_bundle=app.ca_bundle,
            concurrency=app.concurrency,
            app_name=app.name,
            transport=transport,
        )
    except ssl.SSLError as exc:  # the file exists (the config checked), but holds no CA
        raise ConfigError(
            f"app {app.name!r}: ca_bundle {app.ca_bundle} is not a PEM file of CA"
            f" certificates ({exc.reason or exc})"
        ) from exc
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
        client.close()  # do not leak the pool
        raise
