"""ScimConnector against answers no real server sends: hypothesis-generated bodies over
``httpx.MockTransport`` (scim2-server cannot be made to send them).

Whatever the app answers, a call returns valid accounts (a listing: plus one error per
account it could not read) or raises a ConnectorError; no KeyError, TypeError,
ValidationError, JSONDecodeError or RecursionError gets out, a listing always ends, one
malformed resource fails alone, and no message repeats the bearer token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Account, AccountPage
from connectors.errors import ConnectorError, InvalidResponseError
from connectors.http import build_client
from connectors.scim import ScimConnector
from connectors.scim.pagination import ANONYMOUS_GRACE
from directory.config import DEFAULT_MAPPING, ENTERPRISE, UpdateMethod

PATHS = list(DEFAULT_MAPPING)
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
TOKEN = "fuzz-token-4e1f0a"
#: a listing answered alike for every startIndex ends within this many requests
MAX_REQUESTS = ANONYMOUS_GRACE + 8

# -- strategies ---------------------------------------------------------------------------

#: text as JSON can carry it: lone surrogates (``"\ud800"``) and NUL included
any_text = st.text(max_size=12) | st.sampled_from(["\ud800", "a\x00b", "x" * 5000])
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
#: what a field of a User may be in a broken answer: right, wrong type, or strange
ATTRIBUTE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": st.uuids().map(str) | st.just("") | any_text | json_values,
    "userName": st.from_regex(r"\A[a-z]{1,8}\Z") | json_values,
    "schemas": st.just([USER])
    | st.just([USER, ENTERPRISE])
    | st.just([USER, "urn:example:unknown:2.0:Thing"])
    | json_values,
    "name": st.fixed_dictionaries({"givenName": st.text(max_size=5)}) | json_values,
    "emails": st.just([{"value": "a@example.com", "type": "work", "primary": True}])
    | st.lists(st.fixed_dictionaries({"value": json_values, "type": json_values}), max_size=2)
    | json_values,
    "active": st.booleans() | json_values,
    "title": st.text(max_size=8) | json_values,
    ENTERPRISE: st.fixed_dictionaries({"department": st.text(max_size=5)})
    | st.fixed_dictionaries({"manager": json_values})
    | json_values,
    "meta": st.just({"resourceType": "User"}) | json_values,
    "urn:example:unknown:2.0:Thing": json_values,
}
resources = (
    st.fixed_dictionaries({}, optional={key: values for key, values in ATTRIBUTE_VALUES.items()})
    | json_values
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "schemas": st.just([LIST]) | json_values,
        "totalResults": st.integers(-2, 5) | st.just(10**12) | json_values,
        "startIndex": st.integers(0, 3) | json_values,
        "itemsPerPage": st.integers(-1, 5) | json_values,
        "Resources": st.lists(resources, max_size=4) | json_values,
        "resources": st.lists(resources, max_size=2),
    },
)
NOT_JSON = [
    b"",
    b"<html>maintenance</html>",
    b'{"schemas": ["' + LIST.encode() + b'"], "totalResults": 1, "Resources": [',
    b"[" * 50_000 + b"]" * 50_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff\xfe\x00{",
    b"NaN",
    b'{"totalResults": 1' + b"0" * 5000 + b"}",
]
bodies = envelopes | resources | json_values | st.sampled_from(NOT_JSON)


def _content(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode("utf-8", "surrogatepass")


@dataclass
class App:
    """A MockTransport app: GET /Users answers from ``pages`` (the last one for every
    later request); any other request answers ``single``."""

    pages: list[Any] = field(default_factory=list)
    single: Any = None
    status: int = 200
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        listing = request.method == "GET" and request.url.path == "/v2/Users"
        if listing and self.pages:
            body = self.pages[min(len(self.requests), len(self.pages)) - 1]
        else:
            body = self.single
        headers = {"Content-Type": "application/scim+json"}
        return httpx.Response(self.status, content=_content(body), headers=headers)

    def connector(self, **options: Any) -> ScimConnector:
        client = build_client(
            "http://app.test/v2",
            TOKEN,
            timeout=5,
            verify_tls=True,
            concurrency=1,
            transport=httpx.MockTransport(self.handle),
        )
        return ScimConnector(
            "fuzz", client, paths=PATHS, max_retries=0, **{"page_size": 2} | options
        )


def _outcome(call: Callable[[], Any]) -> Any:
    """The call's result, or the ConnectorError it raised; any other exception fails."""
    try:
        return call()
    except ConnectorError as exc:
        assert TOKEN not in str(exc)
        assert len(str(exc)) < 2000, "a message is for a person to read"
        return exc


def _valid_account(account: Any) -> None:
    assert isinstance(account, Account)
    assert isinstance(account.id, str) and account.id
    assert set(account.attributes) == set(PATHS)
    for value in account.attributes.values():
        assert value is None or isinstance(value, bool | str)
        if isinstance(value, str):
            value.encode("utf-8")  # storable: no lone surrogate


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=150)
@given(pages=st.lists(bodies, min_size=1, max_size=3))
def test_a_listing_returns_accounts_and_errors_or_raises_a_connector_error(
    pages: list[Any],
) -> None:
    app = App(pages=pages)
    outcome = _outcome(lambda: list(app.connector().list_accounts()))
    assert len(app.requests) <= MAX_REQUESTS, "the listing must end"
    if isinstance(outcome, ConnectorError):
        return
    ids = []
    for page in outcome:
        assert isinstance(page, AccountPage)
        for account in page.accounts:
            _valid_account(account)
            ids.append(account.id)
        assert all(isinstance(error, str) and error for error in page.errors)
        assert len(page.unreadable_ids) <= len(page.errors)
        assert TOKEN not in " ".join(page.errors)
    assert len(ids) == len(set(ids)), "an account is listed once"


@st.composite
def malformed_resources(draw: st.DrawFn) -> tuple[Any, bool]:
    """A resource the connector must refuse, and whether it still has a usable id."""
    base = {"schemas": [USER], "id": "bad-1", "userName": "broken"}
    broken: dict[str, Any] = {
        "emails": "x@example.com",
        "active": draw(st.integers(2, 9)),
        "name": ["Ada"],
        "title": {"text": "CTO"},
        "meta": "yesterday",
        "schemas": USER,
        "userName": draw(st.integers()),
        ENTERPRISE: {"manager": "boss"},
        "displayName": "\ud800",
    }
    key = draw(st.sampled_from([*broken, "id:int", "id:missing", "id:long", "not-an-object"]))
    if key == "not-an-object":
        return draw(json_scalars | st.lists(json_scalars, max_size=2)), False
    if key == "id:int":
        return base | {"id": draw(st.integers())}, False
    if key == "id:missing":
        return {k: v for k, v in base.items() if k != "id"}, False
    if key == "id:long":
        return base | {"id": "x" * 256}, False
    return base | {key: broken[key]}, True


def _user(index: int) -> dict[str, Any]:
    return {
        "schemas": [USER, ENTERPRISE],
        "id": f"id-{index}",
        "userName": f"user{index}",
        "emails": [{"value": f"user{index}@example.com", "type": "work", "primary": True}],
        ENTERPRISE: {"department": "R&D"},
    }


@given(good=st.integers(0, 5), malformed=malformed_resources(), data=st.data())
def test_one_malformed_resource_fails_alone(
    good: int, malformed: tuple[Any, bool], data: st.DataObject
) -> None:
    resource, has_id = malformed
    page = [_user(i) for i in range(good)]
    page.insert(data.draw(st.integers(0, good)), resource)
    body = {"schemas": [LIST], "totalResults": good + 1, "startIndex": 1, "Resources": page}
    app = App(pages=[body])
    [listed] = list(app.connector(page_size=10).list_accounts())
    assert [a.id for a in listed.accounts] == [f"id-{i}" for i in range(good)]
    assert len(listed.errors) == 1
    assert listed.unreadable_ids == (["bad-1"] if has_id else [])


OPERATIONS: dict[str, Callable[[ScimConnector], Any]] = {
    "get": lambda c: c.get_account("1"),
    "create": lambda c: c.create_account({"userName": "ada"}),
    "find": lambda c: c.find_account("userName", "ada"),
    "patch": lambda c: c.update_account("1", {"title": "x"}, {"title": "x"}),
    "put": lambda c: c.update_account("1", {"title": "x"}, {"userName": "ada", "title": "x"}),
    "auto": lambda c: c.deactivate_account("1"),
}


@settings(max_examples=60)
@given(
    operation=st.sampled_from(sorted(OPERATIONS)),
    body=bodies,
    status=st.sampled_from([200, 201]),
)
def test_single_account_calls_return_an_account_or_raise_a_connector_error(
    operation: str, body: Any, status: int
) -> None:
    method = {"patch": UpdateMethod.PATCH, "put": UpdateMethod.PUT}.get(operation, "auto")
    app = App(single=body, status=status)
    outcome = _outcome(lambda: OPERATIONS[operation](app.connector(update_method=method)))
    if isinstance(outcome, ConnectorError):
        return
    if operation in ("get", "create") or (operation == "find" and outcome is not None):
        _valid_account(outcome)
    else:
        assert outcome is None


@settings(max_examples=30)
@given(body=bodies, status=st.sampled_from([400, 404, 409, 422, 500, 501]))
def test_error_answers_map_by_status_whatever_their_body(body: Any, status: int) -> None:
    app = App(single=body, status=status)
    outcome = _outcome(lambda: app.connector().create_account({"userName": "ada"}))
    assert isinstance(outcome, ConnectorError)
    assert outcome.status == status
    assert str(outcome).startswith(f"POST /Users: {status}")


# -- the shapes fuzzing found, kept as examples -------------------------------------------


def test_a_huge_page_with_one_bad_resource_keeps_every_other_account() -> None:
    users: list[Any] = [_user(i) for i in range(3000)]
    users[1234] = {**users[1234], "emails": "not a list"}
    body = {"schemas": [LIST], "totalResults": 3000, "startIndex": 1, "Resources": users}
    [page] = list(App(pages=[body]).connector(page_size=5000).list_accounts())
    assert len(page.accounts) == 2999
    assert page.unreadable_ids == ["id-1234"]


@pytest.mark.parametrize("body", [NOT_JSON[3], NOT_JSON[4]])
def test_json_nested_past_the_recursion_limit_is_an_invalid_response(body: bytes) -> None:
    for call in (lambda c: c.get_account("1"), lambda c: list(c.list_accounts())):
        with pytest.raises(InvalidResponseError, match="body is not JSON"):
            call(App(pages=[body], single=body).connector())


def test_the_same_page_for_every_start_index_ends_the_listing() -> None:
    page = {"schemas": [LIST], "totalResults": 10**12, "Resources": [_user(1), _user(2)]}
    app = App(pages=[page])
    with pytest.raises(InvalidResponseError, match="repeats only accounts already listed"):
        list(app.connector().list_accounts())
    # page 2 repeats page 1 and ends it; page 3 was already asked for while page 2 was
    # being checked (the connector reads one page ahead), and nothing after it
    assert len(app.requests) == 3


def test_endless_pages_of_unreadable_resources_end_the_listing() -> None:
    page = {"schemas": [LIST], "totalResults": 10**12, "Resources": [{"userName": "x"}, 7]}
    app = App(pages=[page])
    with pytest.raises(InvalidResponseError, match="without a usable id"):
        list(app.connector().list_accounts())
    # plus the one page already asked for while the last was checked (read-ahead)
    assert len(app.requests) == ANONYMOUS_GRACE // 2 + 2


@pytest.mark.parametrize(
    ("envelope", "why"),
    [
        ({"totalResults": -1, "Resources": []}, "totalResults is -1"),
        ({"totalResults": -3, "Resources": [_user(1)]}, "totalResults is -3"),
    ],
)
def test_a_negative_total_fails_the_listing(envelope: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidResponseError, match=why):
        list(App(pages=[{"schemas": [LIST], **envelope}]).connector().list_accounts())


def test_resources_and_id_may_be_spelled_in_any_case() -> None:
    """RFC 7643 §2.1: attribute names are case-insensitive."""
    user = {k if k != "id" else "ID": v for k, v in _user(1).items()}
    page = {"schemas": [LIST], "totalResults": 1, "resources": [user, user]}
    [listed] = list(App(pages=[page]).connector().list_accounts())
    assert [a.id for a in listed.accounts] == ["id-1"]  # the repeat was recognised


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"id": "x" * 256}, "the User's id cannot be stored"),
        ({"id": "a\x00b"}, "the User's id cannot be stored"),
        ({"title": "\ud800"}, "a NUL or an unpaired surrogate in title"),
        ({"displayName": "a\x00b"}, "a NUL or an unpaired surrogate in displayName"),
    ],
)
def test_ids_and_values_roster_cannot_store_are_invalid(change: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidResponseError, match=why):
        App(single=_user(1) | change).connector().get_account("1")


def test_an_error_echoing_our_credentials_does_not_repeat_them() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        detail = f"rejected header {request.headers['Authorization']!r}"
        return httpx.Response(400, json={"schemas": [ERROR], "status": "400", "detail": detail})

    client = build_client(
        "http://app.test/v2",
        TOKEN,
        timeout=5,
        verify_tls=True,
        concurrency=1,
        transport=httpx.MockTransport(echo),
    )
    with pytest.raises(ConnectorError) as caught:
        ScimConnector("echo", client, paths=PATHS).create_account({"userName": "ada"})
    assert str(caught.value) == "POST /Users: 400 rejected header 'Bearer ***'"


def test_a_huge_scim_type_is_shortened() -> None:
    body = {"schemas": [ERROR], "status": "400", "scimType": "x" * 10_000, "detail": "y" * 10_000}
    with pytest.raises(ConnectorError) as caught:
        App(single=body, status=400).connector().create_account({"userName": "ada"})
    assert len(str(caught.value)) < 300
