"""Each REST pagination style against a real HTTP socket (the toy app: the real apps here
page with a cursor, Synapse, or not at all, RabbitMQ)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from connectors.build import build_connector
from connectors.errors import InvalidResponseError
from connectors.rest import RestConnector
from directory.config import RestAppConfig, parse_config
from tests.rest_server import SECRET, ToyRestApp, toy_entry
from tests.socket_server import serve_wsgi

STYLES = ["none", "offset_limit", "page_number", "cursor", "link_header"]


def connect(url: str, **entry: object) -> RestConnector:
    app = parse_config({"apps": [toy_entry(url, **entry)]}).apps[0]  # type: ignore[arg-type]
    assert isinstance(app, RestAppConfig)
    connector = build_connector(app, SecretStr(SECRET), dry_run=False)
    assert isinstance(connector, RestConnector)
    return connector


@pytest.fixture
def toy() -> Iterator[tuple[ToyRestApp, str]]:
    app = ToyRestApp()
    with serve_wsgi(app) as (url, _):
        yield app, url
    assert app.unexpected == []


def seven(app: ToyRestApp) -> list[str]:
    return [app.seed(f"user{i}") for i in range(7)]


#: the listing requests each style sends for 7 accounts in pages of 3
EXPECTED_QUERIES = {
    "none": [{}],
    "offset_limit": [
        {"offset": "0", "limit": "3"},
        {"offset": "3", "limit": "3"},
        {"offset": "6", "limit": "3"},
    ],
    "page_number": [
        {"page": "1", "per_page": "3"},
        {"page": "2", "per_page": "3"},
        {"page": "3", "per_page": "3"},
    ],
    "cursor": [{"limit": "3"}, {"limit": "3", "cursor": "3"}, {"limit": "3", "cursor": "6"}],
    "link_header": [
        {"per_page": "3"},
        {"page": "2", "per_page": "3"},
        {"page": "3", "per_page": "3"},
    ],
}


@pytest.mark.parametrize("style", STYLES)
def test_every_style_lists_every_account_once_in_the_requests_it_declares(
    toy: tuple[ToyRestApp, str], style: str
) -> None:
    app, url = toy
    app.style = style
    ids = seven(app)
    connector = connect(url, style=style)
    pages = list(connector.list_accounts())
    accounts = [a for page in pages for a in page.accounts]
    assert [a.id for a in accounts] == ids
    assert accounts[4].attributes == {
        "userName": "user4",
        "email": "user4@example.com",
        "displayName": "User4",
        "active": True,
    }
    assert [query for _, _, query in app.requests] == EXPECTED_QUERIES[style]
    assert connector.last_attempts == len(EXPECTED_QUERIES[style])


def test_offset_paging_goes_on_past_pages_shorter_than_asked(toy: tuple[ToyRestApp, str]) -> None:
    """The app caps pages at 2 below the asked 3: a short page is not the end."""
    app, url = toy
    app.cap = 2
    ids = seven(app)
    listing = {"path": "/users", "items": "data", "pagination": {"style": "offset_limit"}}
    connector = connect(url, list=listing)  # no total: stops at the first empty page
    assert [a.id for p in connector.list_accounts() for a in p.accounts] == ids
    assert [q["offset"] for _, _, q in app.requests] == ["0", "2", "4", "6", "7"]


def test_an_app_ignoring_the_offset_fails_the_listing(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    seven(app)
    app.quirk = "ignore_offset"
    listing = {"path": "/users", "items": "data", "pagination": {"style": "offset_limit"}}
    with pytest.raises(InvalidResponseError, match="does not seem to honour"):
        list(connect(url, list=listing).list_accounts())


def test_a_cursor_sent_twice_fails_the_listing(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.style, app.quirk = "cursor", "repeat_cursor"
    seven(app)
    with pytest.raises(InvalidResponseError, match="same next cursor twice"):
        list(connect(url, style="cursor").list_accounts())


def test_a_next_link_to_another_origin_is_never_followed(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.style, app.quirk = "link_header", "foreign_link"
    seven(app)
    with pytest.raises(InvalidResponseError, match="away from the app's origin"):
        list(connect(url, style="link_header").list_accounts())
    assert len(app.requests) == 1


def test_one_malformed_account_is_a_per_account_error(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.style, app.quirk = "none", "bad_item"
    ids = seven(app)
    [page] = connect(url, style="none").list_accounts()
    assert [a.id for a in page.accounts] == ids
    assert page.unreadable_ids == ["broken"]
    assert page.errors == ["id broken: GET /users: login: expected a single value, found dict"]


def test_items_that_are_not_a_list_fail_the_listing(toy: tuple[ToyRestApp, str]) -> None:
    app, url = toy
    app.style = "none"
    seven(app)
    listing = {"path": "/users", "items": "total", "pagination": {"style": "none"}}
    with pytest.raises(InvalidResponseError, match="'total' is not a list of accounts"):
        list(connect(url, list=listing).list_accounts())
