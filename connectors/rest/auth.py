"""The ways a REST app takes Roster's secret, each an ``httpx.Auth``.

Every secret (and every header value built from it) is registered for redaction
(``connectors.redact``) when the auth is built, and no repr shows it. OAuth 2.0 client
credentials (RFC 6749 §4.4) keep the access token until it expires and fetch a new one,
once, when the app answers 401 to a token that looked valid.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Generator
from urllib.parse import quote_plus

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from connectors.errors import AuthError, InvalidResponseError
from connectors.http import raise_for_status
from connectors.redact import protect, redact
from directory.appkinds.rest_parts import (
    ApiKeyAuthConfig,
    AuthConfig,
    BasicAuthConfig,
    BearerAuthConfig,
    ClientAuthMethod,
    OAuth2ClientCredentialsConfig,
)

Flow = Generator[httpx.Request, httpx.Response, None]
#: a token is fetched again this long before the app would reject it
EXPIRY_MARGIN = 30.0


class HeaderAuth(httpx.Auth):
    """One fixed header built from the secret: Basic credentials or an API key."""

    def __init__(self, header: str, value: str, label: str) -> None:
        self._header = header
        self._value = SecretStr(value)
        self._label = label
        protect(value)

    def auth_flow(self, request: httpx.Request) -> Flow:
        request.headers[self._header] = self._value.get_secret_value()
        yield request

    def __repr__(self) -> str:
        return f"{self._label}(***)"

    __str__ = __repr__


def basic_auth(username: str, password: str) -> HeaderAuth:
    """RFC 7617: the password is the app's secret."""
    protect(password)
    pair = f"{username}:{password}"
    protect(pair)  # its base64 form is what goes on the wire
    encoded = base64.b64encode(pair.encode()).decode()
    return HeaderAuth("Authorization", f"Basic {encoded}", "BasicAuth")


def api_key_auth(header: str, prefix: str, secret: str) -> HeaderAuth:
    protect(secret)
    return HeaderAuth(header, f"{prefix}{secret}", "ApiKeyAuth")


class TokenResponse(BaseModel):
    """RFC 6749 §5.1."""

    model_config = ConfigDict(extra="ignore")
    access_token: str
    token_type: str
    expires_in: float | None = None


class OAuth2ClientCredentials(httpx.Auth):
    """RFC 6749 §4.4, thread-safe: one token per app, shared by the worker threads; one
    thread fetches while the others wait for it."""

    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        client_auth: ClientAuthMethod = ClientAuthMethod.BASIC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._secret = SecretStr(client_secret)
        self._scope = scope
        self._client_auth = client_auth
        self._clock = clock
        self._token: SecretStr | None = None
        self._expires_at = float("inf")
        self._lock = threading.Lock()
        self.fetches = 0
        protect(client_secret)
        protect(f"{quote_plus(client_id)}:{quote_plus(client_secret)}")

    def auth_flow(self, request: httpx.Request) -> Flow:
        token = self._current()
        fresh = token is None
        if token is None:
            token = yield from self._fetch(None)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and not fresh:
            # The app dropped a token we thought valid (revoked, clock skew): once more.
            token = yield from self._fetch(token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def _current(self) -> str | None:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                return None
            return self._token.get_secret_value()

    def _fetch(self, stale: str | None) -> Generator[httpx.Request, httpx.Response, str]:
        """A new token, unless another thread fetched one since ``stale`` was read."""
        with self._lock:
            current = self._token.get_secret_value() if self._token is not None else None
            if current is not None and current != stale and self._clock() < self._expires_at:
                return current
            response = yield self._token_request()
            token = self._read(response)
            self.fetches += 1
            return token

    def _token_request(self) -> httpx.Request:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        headers = {"Accept": "application/json"}
        secret = self._secret.get_secret_value()
        if self._client_auth is ClientAuthMethod.BASIC:
            # RFC 6749 §2.3.1: each part form-encoded before the Basic encoding
            pair = f"{quote_plus(self._client_id)}:{quote_plus(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": self._client_id, "client_secret": secret}
        return httpx.Request("POST", self._token_url, data=form, headers=headers)

    def _read(self, response: httpx.Response) -> str:
        """Keep the token (caller holds the lock). RFC 6749 §5.2: a refused client is
        400 ``invalid_client`` (or 401): the app's credentials are wrong, so AuthError."""
        where = f"token endpoint {httpx.URL(self._token_url).path}"
        if response.status_code in (400, 401, 403):
            raise AuthError(
                redact(f"POST {where}: {response.status_code} {_oauth_error(response)}"),
                status=response.status_code,
            )
        raise_for_status("POST", where, response)
        try:
            parsed = TokenResponse.model_validate_json(response.content)
        except ValidationError:
            raise InvalidResponseError(f"POST {where}: not a token response") from None
        if parsed.token_type.lower() != "bearer" or not parsed.access_token:
            raise InvalidResponseError(f"POST {where}: token_type {parsed.token_type!r}")
        protect(parsed.access_token)
        self._token = SecretStr(parsed.access_token)
        expires_in = parsed.expires_in
        self._expires_at = (
            float("inf")
            if expires_in is None
            else self._clock() + max(0.0, expires_in - min(EXPIRY_MARGIN, expires_in / 2))
        )
        return parsed.access_token

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(client_id={self._client_id!r}, secret='***')"

    __str__ = __repr__


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    return str(error)[:100] if error else response.reason_phrase


def auth_for(config: AuthConfig, secret: str) -> httpx.Auth | None:
    """The ``httpx.Auth`` for an app's ``auth`` settings; None for bearer, which
    ``connectors.http.build_client`` sets from the token itself."""
    if isinstance(config, BearerAuthConfig):
        return None
    if isinstance(config, BasicAuthConfig):
        return basic_auth(config.username, secret)
    if isinstance(config, ApiKeyAuthConfig):
        return api_key_auth(config.header, config.prefix, secret)
    assert isinstance(config, OAuth2ClientCredentialsConfig)
    return OAuth2ClientCredentials(
        str(config.token_url),
        config.client_id,
        secret,
        scope=config.scope,
        client_auth=config.client_auth,
    )
