"""From an app's configuration to a ready connector: the one place that wires clients,
the app's rate budget and the connector classes together, one builder per kind."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from connectors.base import Connector
from connectors.http import build_client
from connectors.ratelimit import RateLimiter
from connectors.rest import RestConnector
from connectors.rest.auth import auth_for
from connectors.scim import ScimConnector
from connectors.scim.paths import check_paths
from directory.config import AppConfig, ConfigError, HttpAppConfig, RestAppConfig, ScimAppConfig


def check_mapping(app: AppConfig, where: str | None = None) -> None:
    """The app's mapping against its connector's schema, so a typo is a ConfigError before
    anything starts, never a crash in the middle of a run. ``where`` names the key
    (``roster.yaml: apps[0].mapping``)."""
    if not isinstance(app, ScimAppConfig):
        return
    try:
        check_paths(app.effective_mapping)
    except ValueError as exc:
        raise ConfigError(f"{where or f'app {app.name!r}: mapping'}: {exc}") from None


def build_connector(
    app: AppConfig,
    token: SecretStr | None,
    *,
    dry_run: bool,
    transport: httpx.BaseTransport | None = None,
) -> Connector:
    """A connector for ``app``, using ``token`` (``tasks.tokens.resolve_token`` reads it
    from the app's variable or Secret block; None for an app configured without one).
    ``transport`` replaces the network of HTTP apps (tests pass an in-process server)."""
    check_mapping(app)
    builder = BUILDERS.get(type(app))
    if builder is None:
        raise ConfigError(f"app {app.name!r}: no connector for kind {app.connector!r}")
    return builder(app, token, dry_run, transport)


def http_client(
    app: HttpAppConfig, token: SecretStr | None, transport: httpx.BaseTransport | None
) -> httpx.Client:
    """The app's HTTP client: its TLS settings, timeout, pool size and bearer token."""
    try:
        return build_client(
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


def rate_limiter(app: AppConfig) -> RateLimiter | None:
    """One budget per app, shared by every worker thread; no bursts above the stated rate."""
    return RateLimiter(app.rate_limit) if app.rate_limit is not None else None


def _scim(
    app: AppConfig,
    token: SecretStr | None,
    dry_run: bool,
    transport: httpx.BaseTransport | None,
) -> Connector:
    assert isinstance(app, ScimAppConfig)
    client = http_client(app, token, transport)
    try:
        return ScimConnector(
            app.name,
            client,
            paths=list(app.effective_mapping),
            page_size=app.page_size,
            update_method=app.update_method,
            dry_run=dry_run,
            rate_limiter=rate_limiter(app),
            max_retries=app.max_retries,
        )
    except Exception:
        client.close()  # do not leak the pool
        raise


def _rest(
    app: AppConfig,
    token: SecretStr | None,
    dry_run: bool,
    transport: httpx.BaseTransport | None,
) -> Connector:
    """Bearer apps get the token from ``http_client``; other auth styles attach their own
    ``httpx.Auth`` built from the same secret."""
    assert isinstance(app, RestAppConfig)
    auth = auth_for(app.auth, token.get_secret_value()) if token is not None else None
    client = http_client(app, token if auth is None else None, transport)
    if auth is not None:
        client.auth = auth
    try:
        return RestConnector(client, app, dry_run=dry_run, rate_limiter=rate_limiter(app))
    except Exception:
        client.close()
        raise


Builder = Callable[[AppConfig, SecretStr | None, bool, httpx.BaseTransport | None], Connector]
#: each kind's builder; a new kind adds its own
BUILDERS: dict[type[AppConfig], Builder] = {ScimAppConfig: _scim, RestAppConfig: _rest}
