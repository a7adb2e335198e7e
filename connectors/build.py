"""From an app's configuration to a ready connector: the one place that wires clients,
the app's rate budget and the connector classes together, one builder per kind."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable

import httpx
import ldap3
from ldap3.utils.dn import escape_rdn
from pydantic import SecretStr

from connectors.base import Connector
from connectors.concurrency import AimdLimit
from connectors.http import build_client
from connectors.ldap import ConnectionFactory, Deactivation, LdapConnector
from connectors.learnedrate import RateLearner
from connectors.ratelimit import RateLimiter, Traffic
from connectors.redact import protect
from connectors.rest import RestConnector
from connectors.rest.auth import auth_for
from connectors.scim import ScimConnector
from connectors.scim.paths import check_paths
from connectors.sql import SqlConnector, sql_engine
from directory.appbase import Budget
from directory.config import (
    AppConfig,
    ConfigError,
    HttpAppConfig,
    LdapAppConfig,
    RestAppConfig,
    ScimAppConfig,
    SqlAppConfig,
)

logger = logging.getLogger("roster.connectors.build")


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


def traffic(app: HttpAppConfig) -> Traffic:
    """An HTTP app's traffic control, shared by every worker thread: its read and write
    budgets (or the older ``rate_limit``, one budget for both), the app-wide pause, the
    adaptive in-flight limit under ``concurrency``, and (``adaptive.learn_rate``) a
    budget learned from 429s for a kind that has none."""
    if app.rate_limits is not None:
        reads, writes = bucket(app.rate_limits.reads), bucket(app.rate_limits.writes)
    else:
        reads = writes = rate_limiter(app)
    adaptive = None
    if app.adaptive.enabled:
        adaptive = AimdLimit(
            ceiling=app.concurrency,
            floor=app.adaptive.min,
            latency_factor=app.adaptive.latency_factor,
        )
    learner = RateLearner if app.adaptive.learns_rate else None
    return Traffic(app.name, reads=reads, writes=writes, adaptive=adaptive, learner=learner)


def bucket(budget: Budget | None) -> RateLimiter | None:
    """The budget's token bucket, keeping one token of a burst in hand: the app's bucket
    starts refilling when a burst's first request arrives, ours when it leaves, so when
    that first request travels slower than a later one (a new connection, a busy
    machine), a burst spent to its last token meets a 429."""
    if budget is None:
        return None
    return RateLimiter(budget.rate_per_second, max(1, budget.burst - 1))


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
            rate_limiter=traffic(app),
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
        return RestConnector(client, app, dry_run=dry_run, rate_limiter=traffic(app))
    except Exception:
        client.close()
        raise


def _ldap(
    app: AppConfig,
    token: SecretStr | None,
    dry_run: bool,
    transport: httpx.BaseTransport | None,  # LDAP is no HTTP: tests use a real slapd
) -> Connector:
    assert isinstance(app, LdapAppConfig)
    if token is None or not token.get_secret_value():
        # RFC 4513 §5.1.2: a simple bind with an empty password is anonymous, not refused
        raise ConfigError(f"app {app.name!r}: an LDAP app needs its bind password")
    deactivation = (
        Deactivation(ou=app.disabled_ou)
        if app.disabled_ou is not None
        else Deactivation(
            attribute=app.disable_attribute,
            disabled_value=app.disabled_value,
            enabled_value=app.enabled_value,
        )
    )
    groups = [f"cn={escape_rdn(g)},{app.groups_dn}" for g in app.groups]
    return LdapConnector(
        app.name,
        ldap_connections(app, token),
        base_dn=app.base_dn,
        attributes=list(app.effective_mapping),
        deactivation=deactivation,
        rdn_attribute=app.rdn_attribute,
        groups=groups,
        page_size=app.page_size,
        start_tls=app.start_tls,
        dry_run=dry_run,
        rate_limiter=rate_limiter(app),
        max_retries=app.max_retries,
    )


def ldap_connections(app: LdapAppConfig, password: SecretStr) -> ConnectionFactory:
    """New unbound ``SAFE_SYNC`` connections to the app's server; the connector opens
    and binds them. The password is registered for redaction, and ldap3's own logging
    (off unless enabled) hides it by default."""
    secret = password.get_secret_value()
    protect(secret)
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED if app.tls_verify else ssl.CERT_NONE,
        ca_certs_file=str(app.ca_bundle) if app.ca_bundle else None,
    )
    secure = app.url.scheme == "ldaps" or app.start_tls
    host = str(app.url.host)
    if not app.tls_verify and secure:
        logger.warning(
            "TLS certificate verification is disabled for app %s (%s): tls_verify is false",
            app.name,
            app.url,
        )
    elif not secure and not _loopback(host):
        logger.warning(
            "app %s binds over plain %s: its password crosses the network unencrypted;"
            " use ldaps:// or start_tls",
            app.name,
            app.url,
        )

    def connect() -> ldap3.Connection:
        # A Server per connection: ldap3 marks a Server's address unavailable for minutes
        # after one failed connect, so a shared one would outlive a server restart.
        server = ldap3.Server(
            host,
            port=app.url.port or (636 if app.url.scheme == "ldaps" else 389),
            use_ssl=app.url.scheme == "ldaps",
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=app.timeout,
        )
        return ldap3.Connection(
            server,
            user=app.bind_dn,
            password=secret,
            client_strategy=ldap3.SAFE_SYNC,
            raise_exceptions=False,
            receive_timeout=int(max(1, app.timeout)),
            auto_referrals=False,
            check_names=False,
        )

    return connect


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _sql(
    app: AppConfig,
    token: SecretStr | None,
    dry_run: bool,
    transport: httpx.BaseTransport | None,
) -> Connector:
    """The secret, when the app names one, is the database password; ``transport`` is
    for HTTP apps and has no meaning here."""
    assert isinstance(app, SqlAppConfig)
    engine = sql_engine(
        app.url, token, app_name=app.name, pool_size=app.concurrency, timeout=app.timeout
    )
    try:
        return SqlConnector(
            app.name,
            engine,
            attributes=list(app.effective_mapping),
            managed_role=app.managed_role,
            name_prefix=app.name_prefix,
            group_roles=app.group_roles,
            reassign_owned_to=app.reassign_owned_to,
            terminate_sessions=app.terminate_sessions,
            page_size=app.page_size,
            dry_run=dry_run,
            rate_limiter=rate_limiter(app),
            max_retries=app.max_retries,
        )
    except Exception:
        engine.dispose()
        raise


Builder = Callable[[AppConfig, SecretStr | None, bool, httpx.BaseTransport | None], Connector]
#: each kind's builder; a new kind adds its own
BUILDERS: dict[type[AppConfig], Builder] = {
    ScimAppConfig: _scim,
    RestAppConfig: _rest,
    LdapAppConfig: _ldap,
    SqlAppConfig: _sql,
}
