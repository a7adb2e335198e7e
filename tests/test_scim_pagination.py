"""SCIM listing: the paginator on literal pages, then whole listings from scim2-server
and from deliberately broken apps (httpx.MockTransport)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from connectors.base import Account
from connectors.errors import InvalidResponseError
from connectors.scim import ScimConnector
from connectors.scim.pagination import ScimPaginator
from directory.config import DEFAULT_MAPPING
from tests.scim_apps import TOKEN, InProcessScim

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEEDED = 2345

# -- the paginator alone ------------------------------------------------------------


def test_pages_advance_by_what_was_received() -> None:
    paginator = ScimPaginator(page_size=1000)
    assert paginator.first_request() == {"startIndex": 1, "count": 1000}
    assert paginator.update(total_results=5, start_index=1, ids=["a", "b"]) == [True, True]
    assert paginator.next_request() == {"startIndex": 3, "count": 1000}
    assert paginator.update(total_results=5, start_index=3, ids=["c", "d", "e"]) == [True] * 3
    assert paginator.next_request() is None


def test_an_empty_listing_is_complete_at_once() -> None:
    paginator = ScimPaginator(page_size=10)
    assert paginator.update(total_results=0, start_index=1, ids=[]) == []
    assert paginator.next_request() is None


def test_repeated_ids_are_not_fresh() -> None:
    paginator = ScimPaginator(page_size=2)
    paginator.update(total_results=3, start_index=1, ids=["a", "b"])
    assert paginator.update(total_results=3, start_index=3, ids=["b", "c"]) == [False, True]
    assert paginator.next_request() is None


def test_an_empty_page_before_total_results_is_an_error() -> None:
    paginator = ScimPaginator(page_size=2)
    paginator.update(total_results=5, start_index=1, ids=["a", "b"])
    with pytest.raises(InvalidResponseError, match="empty page at startIndex 3 of totalResults 5"):
        paginator.update(total_results=5, start_index=3, ids=[])


def test_a_changing_total_is_an_error() -> None:
    paginator = ScimPaginator(page_size=2)
    paginator.update(total_results=5, start_index=1, ids=["a", "b"])
    with pytest.raises(InvalidResponseError, match="totalResults went from 5 to 4"):
        paginator.update(total_results=4, start_index=3, ids=["c", "d"])


def test_a_page_from_the_wrong_index_is_an_error() -> None:
    paginator = ScimPaginator(page_size=2)
    paginator.update(total_results=5, start_index=1, ids=["a", "b"])
    with pytest.raises(InvalidResponseError, match="asked for startIndex 3"):
        paginator.update(total_results=5, start_index=1, ids=["a", "b"])


def test_too_few_distinct_accounts_is_an_error() -> None:
    paginator = ScimPaginator(page_size=2)
    paginator.update(total_results=4, start_index=None, ids=["a", "b"])
    paginator.update(total_results=4, start_index=None, ids=["b", "c"])
    with pytest.raises(InvalidResponseError, match="3 distinct accounts of totalResults 4"):
        paginator.next_request()


def test_a_page_of_only_repeated_accounts_is_an_error() -> None:
    """Else an app answering the same page to every startIndex, with a huge totalResults,
    would be paged forever."""
    paginator = ScimPaginator(page_size=2)
    paginator.update(total_results=10**12, start_index=1, ids=["a", "b"])
    with pytest.raises(InvalidResponseError, match="startIndex 3 repeats only accounts"):
        paginator.update(total_results=10**12, start_index=3, ids=["b", "a"])


def test_unreadable_ids_still_count_towards_the_total() -> None:
    paginator = ScimPaginator(page_size=5)
    assert paginator.update(total_results=2, start_index=1, ids=["a", None]) == [True, True]
    assert paginator.next_request() is None


# -- whole listings from scim2-server --------------------------------------------------


@pytest.fixture(scope="module")
def seeded() -> InProcessScim:
    """One server holding 2,345 users, shared by the listing tests (seeding takes seconds)."""
    scim = InProcessScim()
    with scim.client("big") as client:
        for n in range(SEEDED):
            body = {"schemas": [USER], "userName": f"user{n:05d}", "externalId": f"e{n}"}
            assert client.post("/Users", json=body).status_code == 201
    return scim


def _recording_client(scim: InProcessScim, tenant: str, seen: list[httpx.Request]) -> httpx.Client:
    inner = scim.transport()

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return inner.handle_request(request)

    return httpx.Client(
        transport=httpx.MockTransport(handle),
        base_url=scim.base_url(tenant),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


@pytest.mark.parametrize(("page_size", "requests"), [(1000, 3), (100, 24), (5000, 3)])
def test_every_account_comes_back_exactly_once(
    seeded: InProcessScim, page_size: int, requests: int
) -> None:
    """5000 shows why one page is never trusted: scim2-server caps count at 1000."""
    seen: list[httpx.Request] = []
    connector = ScimConnector(
        "big",
        _recording_client(seeded, "big", seen),
        paths=list(DEFAULT_MAPPING),
        page_size=page_size,
    )
    pages = list(connector.list_accounts())
    accounts = [account for page in pages for account in page.accounts]

    assert all(page.errors == [] for page in pages)
    assert len(accounts) == SEEDED
    assert len({a.id for a in accounts}) == SEEDED
    names = Counter(a.attributes["userName"] for a in accounts)
    assert names == Counter(f"user{n:05d}" for n in range(SEEDED))
    assert len(seen) == requests
    assert connector.last_attempts == requests
    assert [int(r.url.params["startIndex"]) for r in seen][:2] == [1, 1 + min(page_size, 1000)]


def test_the_listing_reads_configured_paths(seeded: InProcessScim) -> None:
    connector = ScimConnector("big", seeded.client("big"), paths=["userName", "externalId"])
    first = next(iter(connector.list_accounts())).accounts[0]
    assert set(first.attributes) == {"userName", "externalId"}


# -- broken apps ------------------------------------------------------------------------


def _user(remote_id: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "id": remote_id, "userName": f"name-{remote_id}", **extra}


def _listing(total: int, start: int, resources: list[Any]) -> dict[str, Any]:
    return {
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def _app(pages: Callable[[int], Any]) -> ScimConnector:
    """A connector whose app answers GET /Users with ``pages(startIndex)``; anything
    else fails the test."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET" and request.url.path == "/v2/Users", request
        body = pages(int(request.url.params["startIndex"]))
        if isinstance(body, bytes):
            return httpx.Response(200, content=body)
        return httpx.Response(200, json=body)

    client = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://app.test/v2")
    return ScimConnector("broken", client, paths=["userName", "active"], page_size=2)


def _drain(connector: ScimConnector) -> Iterator[Account]:
    for page in connector.list_accounts():
        yield from page.accounts


def test_an_empty_page_before_total_results_fails_the_listing() -> None:
    connector = _app(
        lambda start: _listing(5, start, [_user("a"), _user("b")] if start == 1 else [])
    )
    with pytest.raises(InvalidResponseError, match="empty page at startIndex 3"):
        list(_drain(connector))


def test_an_app_ignoring_start_index_fails_the_listing() -> None:
    connector = _app(
        lambda start: {**_listing(4, start, [_user("a"), _user("b")]), "startIndex": 1}
    )
    with pytest.raises(InvalidResponseError, match="asked for startIndex 3"):
        list(_drain(connector))


def test_repeated_accounts_across_pages_are_returned_once() -> None:
    pages = {1: [_user("a"), _user("b")], 3: [_user("b"), _user("c")]}
    connector = _app(lambda start: _listing(3, start, pages[start]))
    assert [a.id for a in _drain(connector)] == ["a", "b", "c"]


def test_one_malformed_account_lands_in_errors_and_the_page_goes_on() -> None:
    resources = [
        _user("a"),
        _user("b", active="perhaps"),
        {"schemas": [USER], "userName": "no-id"},
        _user("c"),
    ]
    connector = _app(lambda start: _listing(4, start, resources))
    [page] = list(connector.list_accounts())
    assert [a.id for a in page.accounts] == ["a", "c"]
    assert len(page.errors) == 2
    assert page.errors[0].startswith("id b: ") and "active" in page.errors[0]
    assert page.errors[1].startswith("resource #3 of the page: ") and "id" in page.errors[1]
    assert "perhaps" not in " ".join(page.errors)  # messages name fields, never values


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>oops</html>", "not JSON"),
        ([1, 2], "not a ListResponse"),
        ({"schemas": [LIST], "Resources": []}, "totalResults"),
        ({"schemas": [LIST], "totalResults": 3}, "Resources"),
        ({"schemas": [LIST], "totalResults": 1, "Resources": {"id": "a"}}, "not a list"),
    ],
)
def test_a_broken_envelope_fails_the_listing(body: Any, why: str) -> None:
    connector = _app(lambda start: body)
    with pytest.raises(InvalidResponseError, match=why):
        list(_drain(connector))
