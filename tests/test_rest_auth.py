"""Auth styles of REST apps against a real socket: bearer, basic, API key, and OAuth 2.0
client credentials with a token endpoint (cached token, one refresh on 401). Secrets
never reach an error message."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from connectors.build import build_connector
from connectors.errors import AuthError, BadRequestError, TransientError
from connectors.rest import RestConnector
from connectors.rest.auth import OAuth2ClientCredentials
from directory.appkinds.rest_parts import ClientAuthMethod
from directory.config import RestAppConfig, parse_config
from tests.rest_server import CLIENT_ID, SECRET, USERNAME, ToyRestApp, toy_entry
from tests.socket_server import serve_wsgi

WRONG = "wrong-secret-4f9a7e"


@pytest.fixture
def toy() -> Iterator[tuple[ToyRestApp, str]]:
    app = ToyRestApp(style="none")
    app.seed("alice")
    with serve_wsgi(app) as (url, _):
        yield app, url
    assert app.unexpected == []


def connect(url: str, secret: str, **entry: object) -> RestConnector:
    app = parse_config({"apps": [toy_entry(url, style="none", **entry)]}).apps[0]  # type: ignore[arg-type]
    assert isinstance(app, RestAppConfig)
    connector = build_connector(app, SecretStr(secret), dry_run=False)
    assert isinstance(connector, RestConnector)
    return connector


def names(connector: RestConnector) -> list[object]:
    return [a.attributes["userName"] for p in connector.list_accounts() for a in p.accounts]


@pytest.mark.parametrize("auth", ["bearer", "basic", "api_key", "oauth2"])
def test_each_auth_style_is_accepted_and_a_wrong_secret_is_an_auth_error(
    toy: tuple[ToyRestApp, str], auth: str
) -> None:
    app, url = toy
    app.auth = auth
    assert names(connect(url, SECRET, auth=auth)) == ["alice"]
    with pytest.raises(AuthError) as refused:
        names(connect(url, WRONG, auth=auth))
    assert refused.value.status == 401
    encoded = base64.b64encode(f"{USERNAME}:{WRONG}".encode()).decode()
    assert WRONG not in str(refused.value) and encoded not in str(refused.value)


def test_an_app_echoing_the_credentials_has_them_redacted(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.auth = "basic"
    connector = connect(url, SECRET, auth="basic")
    app.faults.append((400, None))
    echo = base64.b64encode(f"{USERNAME}:{SECRET}".encode()).decode()
    response = httpx.Response(400, json={"error": "bad", "message": f"you sent Basic {echo}"})
    from connectors.rest.connector import _check

    with pytest.raises(BadRequestError) as caught:
        _check("GET", "/users", response)
    assert echo not in str(caught.value) and str(caught.value).endswith("you sent ***")
    with pytest.raises(BadRequestError, match="400 injected"):
        names(connector)


def test_oauth2_fetches_one_token_and_reuses_it(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.auth = "oauth2"
    connector = connect(url, SECRET, auth="oauth2")
    for _ in range(3):
        assert names(connector) == ["alice"]
    assert app.token_requests == 1
    assert connector.last_attempts == 1  # the token request is the auth's, not a retry


def test_oauth2_client_secret_in_the_form_body(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.auth = "oauth2"
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": f"{url}/oauth/token",
        "client_id": CLIENT_ID,
        "client_auth": "body",
        "scope": "users:write",
    }
    assert names(connect(url, SECRET, auth=auth)) == ["alice"]
    assert app.token_requests == 1


def test_oauth2_refreshes_once_on_401_then_gives_up(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.auth = "oauth2"
    connector = connect(url, SECRET, auth="oauth2")
    names(connector)
    app.revoke_tokens()  # the app forgets the token: the next request gets 401
    assert names(connector) == ["alice"]
    assert app.token_requests == 2
    # refused again with the fresh token: no second refresh, AuthError
    app.faults += [(401, None), (401, None)]
    with pytest.raises(AuthError):
        names(connector)
    assert app.token_requests == 3


def test_oauth2_token_is_fetched_again_after_it_expires(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.auth, app.token_ttl = "oauth2", 120
    now = [1000.0]
    auth = OAuth2ClientCredentials(
        f"{url}/oauth/token",
        CLIENT_ID,
        SECRET,
        client_auth=ClientAuthMethod.BASIC,
        clock=lambda: now[0],
    )
    with httpx.Client(base_url=url, auth=auth) as client:
        assert client.get("/users").status_code == 200
        now[0] += 60  # within 120 s less the margin
        assert client.get("/users").status_code == 200
        assert app.token_requests == 1
        now[0] += 31  # past expires_in - 30 s
        assert client.get("/users").status_code == 200
        assert app.token_requests == 2
    assert SECRET not in repr(auth)


def test_oauth2_refused_client_and_broken_token_endpoint(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.auth = "oauth2"
    with pytest.raises(AuthError, match="token endpoint /oauth/token: 401 invalid_client") as e:
        names(connect(url, WRONG, auth="oauth2"))
    assert WRONG not in str(e.value)
    # a token endpoint nobody answers: transient (retried, then the run's retry policy)
    down = {
        "type": "oauth2_client_credentials",
        "token_url": "http://127.0.0.1:9/t",
        "client_id": "x",
    }
    with pytest.raises(TransientError, match="GET /users: ConnectError"):
        names(connect(url, SECRET, auth=down, max_retries=0))
