"""The wire's two savings on httpx: collection URLs merged once, and no cookie jar."""

from __future__ import annotations

import logging

import httpx
import pytest

from connectors.http import build_client, raise_for_status
from connectors.wire import Wire


@pytest.mark.parametrize(
    "base",
    [
        "https://app.example.com/scim/v2",
        "https://app.example.com/scim/v2/",
        "https://app.example.com",
        "http://127.0.0.1:8080/tenant%20a/v2",
        "https://app.example.com/api?key=1",
    ],
)
@pytest.mark.parametrize("path", ["/Users", "/Groups", "/ServiceProviderConfig", "/a.b_c-d~"])
def test_collection_urls_are_the_ones_httpx_would_build(base: str, path: str) -> None:
    client = httpx.Client(base_url=base)
    wire = Wire("app", client, logger=logging.getLogger("test"))
    url = wire._url(path)
    assert isinstance(url, httpx.URL)
    assert url == client.build_request("GET", path).url
    assert wire._url(path) is url  # kept


@pytest.mark.parametrize(
    "path", ["/Users/2819c223", "/Users?x=1", "/Us%20ers", "Users", "https://x.org/Users", "/é"]
)
def test_other_paths_are_left_to_httpx(path: str) -> None:
    wire = Wire("app", httpx.Client(base_url="https://x.org/v2"), logger=logging.getLogger("t"))
    assert wire._url(path) == path


def test_cookies_an_app_sets_are_not_sent_back() -> None:
    """A server that sets a cookie on every answer and says which cookie it received:
    Roster's client never sends one (its jar keeps nothing)."""
    received: list[str | None] = []

    def app(environ: dict, start_response: object) -> list[bytes]:
        received.append(environ.get("HTTP_COOKIE"))
        start_response(  # type: ignore[operator]
            "200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "sid=abc; Path=/")]
        )
        return [b"{}"]

    client = build_client(
        "http://app.test/v2",
        "token",
        timeout=5,
        verify_tls=True,
        concurrency=1,
        transport=httpx.WSGITransport(app=app),
    )
    wire = Wire("app", client, logger=logging.getLogger("test"))
    for _ in range(3):
        wire.send("GET", "/Users", check=lambda m, p, r: raise_for_status(m, p, r))
    assert received == [None, None, None]
    assert len(client.cookies) == 0
