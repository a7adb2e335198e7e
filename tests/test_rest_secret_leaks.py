"""A REST app's secret, in every auth style, never reaches a log line (at DEBUG, httpx's
and httpcore's included) or an error, even from an app that quotes every request header
back in its error body and headers."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from connectors.build import build_connector
from connectors.errors import BadRequestError, ConnectorError
from directory.config import RestAppConfig, parse_config
from tests.leak_support import ExceptionSpy, debug_logs, hits
from tests.rest_server import SECRET, USERNAME, ToyRestApp, toy_entry
from tests.socket_server import serve_wsgi


@pytest.fixture
def toy() -> Iterator[tuple[ToyRestApp, str]]:
    app = ToyRestApp(style="none")
    with serve_wsgi(app) as (url, _):
        yield app, url


@pytest.mark.parametrize("auth", ["bearer", "basic", "api_key", "oauth2"])
def test_no_secret_in_logs_or_errors_from_an_echoing_app(
    toy: tuple[ToyRestApp, str], auth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, url = toy
    app.auth = auth
    remote_id = app.seed("victim")
    spy = ExceptionSpy(monkeypatch, [ConnectorError, httpx.HTTPError])
    config = parse_config({"apps": [toy_entry(url, style="none", auth=auth)]}).apps[0]
    assert isinstance(config, RestAppConfig)
    with debug_logs() as logs:
        connector = build_connector(config, SecretStr(SECRET), dry_run=False)
        assert len(next(iter(connector.list_accounts())).accounts) == 1  # authenticated
        app.quirk = "echo"
        with pytest.raises(BadRequestError):
            list(connector.list_accounts())
        with pytest.raises(BadRequestError):
            connector.update_account(remote_id, {"displayName": "x"}, {})
        connector.close()
    basic = base64.b64encode(f"{USERNAME}:{SECRET}".encode()).decode()
    secrets = [SECRET, basic, *app.issued]
    texts = [*logs.lines, *spy.texts()]
    assert len(logs.lines) > 3 and len(spy.texts()) >= 2  # the capture saw the run
    assert hits(texts, secrets) == []
    assert any("***" in text for text in texts)  # the echo was there, and redacted
