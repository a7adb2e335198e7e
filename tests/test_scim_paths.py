"""connectors.scim.paths: literal JSON in and out, then round trips on a real scim2-server."""

from __future__ import annotations

import httpx
import pytest

from connectors.scim.paths import (
    CORE_USER,
    ENTERPRISE_USER,
    AttributePath,
    check_paths,
    flatten,
    merge_for_put,
    parse_path,
    to_patch_ops,
    to_resource,
)
from directory.config import DEFAULT_MAPPING, WORK_EMAIL
from tests.scim_apps import InProcessScim

DEPARTMENT = f"{ENTERPRISE_USER}:department"
EMPLOYEE_NUMBER = f"{ENTERPRISE_USER}:employeeNumber"
MANAGER = f"{ENTERPRISE_USER}:manager.value"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

ALL_VALUES: dict[str, str | bool | None] = {
    "userName": "bjensen",
    "externalId": "u-1",
    "name.givenName": "Barbara",
    "name.familyName": "Jensen",
    "displayName": "Babs Jensen",
    WORK_EMAIL: "bjensen@example.com",
    "title": "Engineer",
    "active": True,
    DEPARTMENT: "R&D",
    EMPLOYEE_NUMBER: "701984",
    MANAGER: "26118915-6090-4610-87e4-49d8ca9f808d",
}


def test_all_values_cover_the_default_mapping() -> None:
    assert set(ALL_VALUES) == set(DEFAULT_MAPPING)


# -- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("userName", AttributePath(None, "userName", None, None)),
        ("name.givenName", AttributePath(None, "name", None, "givenName")),
        (WORK_EMAIL, AttributePath(None, "emails", ("type", "work"), "value")),
        (
            "emails[primary eq true].value",
            AttributePath(None, "emails", ("primary", True), "value"),
        ),
        (DEPARTMENT, AttributePath(ENTERPRISE_USER, "department", None, None)),
        (MANAGER, AttributePath(ENTERPRISE_USER, "manager", None, "value")),
        (f"{CORE_USER}:userName", AttributePath(None, "userName", None, None)),
    ],
)
def test_parse_path(text: str, expected: AttributePath) -> None:
    assert parse_path(text) == expected


def test_paths_render_back_canonically() -> None:
    assert str(parse_path('emails[type  EQ "work"].value')) == WORK_EMAIL
    assert str(parse_path(MANAGER)) == MANAGER
    assert parse_path(WORK_EMAIL).entry_path == 'emails[type eq "work"]'
    assert parse_path(MANAGER).attribute_path == f"{ENTERPRISE_USER}:manager"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "name..givenName",
        'emails[type eq "work"]',  # a filter must pick a sub-attribute
        'emails[type co "work"].value',
        'emails[type eq "work" or type eq "home"].value',
        "urn:example:",
    ],
)
def test_parse_path_rejects_unsupported_forms(text: str) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        parse_path(text)


def test_check_paths_accepts_the_default_mapping() -> None:
    check_paths(DEFAULT_MAPPING)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nmae.givenName", "no such attribute"),
        ("name", "complex attribute"),
        (f"{ENTERPRISE_USER}:manager", "complex attribute"),
        ("emails.value", "multi-valued"),
        ("urn:example:custom:1.0:User:shoeSize", "no such attribute"),
    ],
)
def test_check_paths_rejects_paths_that_name_no_single_value(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_paths(["userName", text])


# -- flatten --------------------------------------------------------------------------

RESOURCE = {
    "schemas": [CORE_USER, ENTERPRISE_USER],
    "id": "2819c223",
    "userName": "bjensen",
    "externalId": "u-1",
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "displayName": "Babs Jensen",
    "emails": [
        {"value": "babs@home.example", "type": "home", "primary": True},
        {"value": "bjensen@example.com", "type": "work"},
    ],
    "title": "Engineer",
    "active": True,
    ENTERPRISE_USER: {
        "department": "R&D",
        "employeeNumber": "701984",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "$ref": "../Users/2611"},
    },
}


def test_flatten_reads_every_default_path() -> None:
    assert flatten(RESOURCE, DEFAULT_MAPPING) == ALL_VALUES


def test_flatten_reports_missing_values_as_none() -> None:
    sparse = {"schemas": [CORE_USER], "id": "1", "userName": "x", "emails": []}
    expected = dict.fromkeys(DEFAULT_MAPPING) | {"userName": "x"}
    assert flatten(sparse, DEFAULT_MAPPING) == expected


def test_flatten_ignores_attribute_name_case_and_filter_value_case() -> None:
    shouting = {
        "USERNAME": "x",
        "Name": {"GivenName": "G"},
        "emails": [{"Value": "w@example.com", "Type": "Work"}],
        ENTERPRISE_USER.upper(): {"Manager": {"VALUE": "m"}},
    }
    got = flatten(shouting, ["userName", "name.givenName", WORK_EMAIL, MANAGER])
    assert got == {
        "userName": "x",
        "name.givenName": "G",
        WORK_EMAIL: "w@example.com",
        MANAGER: "m",
    }


def test_flatten_prefers_the_primary_entry_when_a_filter_matches_several() -> None:
    two_work = {
        "emails": [
            {"value": "old@example.com", "type": "work"},
            {"value": "new@example.com", "type": "work", "primary": True},
        ]
    }
    assert flatten(two_work, [WORK_EMAIL]) == {WORK_EMAIL: "new@example.com"}


def test_flatten_keeps_booleans_boolean() -> None:
    assert flatten({"active": False}, ["active"]) == {"active": False}


def test_flatten_refuses_a_complex_value_where_a_scalar_belongs() -> None:
    with pytest.raises(ValueError, match="single value"):
        flatten({"title": {"nested": "x"}}, ["title"])


# -- writing --------------------------------------------------------------------------


def test_to_resource_builds_a_post_body() -> None:
    assert to_resource(ALL_VALUES) == {
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "userName": "bjensen",
        "externalId": "u-1",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "displayName": "Babs Jensen",
        "emails": [{"type": "work", "primary": True, "value": "bjensen@example.com"}],
        "title": "Engineer",
        "active": True,
        ENTERPRISE_USER: {
            "department": "R&D",
            "employeeNumber": "701984",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"},
        },
    }


def test_to_resource_omits_none_and_unused_extensions() -> None:
    attrs: dict[str, str | bool | None] = {
        "userName": "x",
        "active": False,
        DEPARTMENT: None,
        WORK_EMAIL: None,
    }
    assert to_resource(attrs) == {"schemas": [CORE_USER], "userName": "x", "active": False}


def test_to_patch_ops_replaces_values_and_removes_nones() -> None:
    changes: dict[str, str | bool | None] = {
        "title": "Boss",
        "active": False,
        WORK_EMAIL: "new@example.com",
        MANAGER: None,
    }
    assert to_patch_ops(changes) == [
        {"op": "replace", "path": "title", "value": "Boss"},
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "path": WORK_EMAIL, "value": "new@example.com"},
        {"op": "remove", "path": f"{ENTERPRISE_USER}:manager"},
    ]


def test_clearing_a_filtered_value_removes_the_whole_entry() -> None:
    assert to_patch_ops({WORK_EMAIL: None}) == [{"op": "remove", "path": 'emails[type eq "work"]'}]


def test_to_patch_ops_adds_an_entry_the_resource_lacks() -> None:
    no_email = {"schemas": [CORE_USER], "id": "1", "userName": "x"}
    assert to_patch_ops({WORK_EMAIL: "w@example.com"}, no_email) == [
        {
            "op": "add",
            "path": "emails",
            "value": [{"type": "work", "primary": True, "value": "w@example.com"}],
        }
    ]


def test_an_added_entry_does_not_steal_primary() -> None:
    home_primary = {"emails": [{"value": "h@example.com", "type": "home", "primary": True}]}
    assert to_patch_ops({WORK_EMAIL: "w@example.com"}, home_primary) == [
        {"op": "add", "path": "emails", "value": [{"type": "work", "value": "w@example.com"}]}
    ]


def test_to_patch_ops_replaces_an_entry_the_resource_has() -> None:
    assert to_patch_ops({WORK_EMAIL: "w@example.com"}, RESOURCE) == [
        {"op": "replace", "path": WORK_EMAIL, "value": "w@example.com"}
    ]


def test_merge_for_put_keeps_unmapped_attributes_and_drops_meta() -> None:
    held = {
        **RESOURCE,
        "nickName": "Babs",
        "meta": {"resourceType": "User", "version": 'W/"3"'},
    }
    body = merge_for_put(held, {"title": "Boss", DEPARTMENT: None, MANAGER: None})
    assert "meta" not in body
    assert body["nickName"] == "Babs"
    assert body["title"] == "Boss"
    assert body[ENTERPRISE_USER] == {"employeeNumber": "701984"}


def test_merge_for_put_drops_an_emptied_extension_from_schemas() -> None:
    body = merge_for_put(RESOURCE, {DEPARTMENT: None, EMPLOYEE_NUMBER: None, MANAGER: None})
    assert ENTERPRISE_USER not in body
    assert body["schemas"] == [CORE_USER]


def test_merge_for_put_removes_only_the_filtered_entry() -> None:
    body = merge_for_put(RESOURCE, {WORK_EMAIL: None})
    assert body["emails"] == [{"value": "babs@home.example", "type": "home", "primary": True}]


def test_merge_for_put_respects_existing_key_spelling() -> None:
    body = merge_for_put({"schemas": [CORE_USER], "id": "1", "UserName": "x"}, {"userName": "y"})
    assert body == {"schemas": [CORE_USER], "id": "1", "UserName": "y"}


def test_writers_do_not_mutate_their_input() -> None:
    before = repr(RESOURCE)
    merge_for_put(RESOURCE, {"title": None, WORK_EMAIL: "z@example.com"})
    to_patch_ops({WORK_EMAIL: "z@example.com"}, RESOURCE)
    assert repr(RESOURCE) == before


# -- against scim2-server -------------------------------------------------------------


@pytest.fixture
def client(scim: InProcessScim) -> httpx.Client:
    return scim.client("paths")


def _read(client: httpx.Client, remote_id: str) -> dict[str, str | bool | None]:
    response = client.get(f"/Users/{remote_id}")
    assert response.status_code == 200
    return flatten(response.json(), DEFAULT_MAPPING)


def _patch(client: httpx.Client, remote_id: str, ops: list[dict[str, object]]) -> None:
    response = client.patch(f"/Users/{remote_id}", json={"schemas": [PATCH_OP], "Operations": ops})
    assert response.status_code in (200, 204), response.text


def test_round_trip_through_post_and_patch_for_every_default_path(client: httpx.Client) -> None:
    created = client.post("/Users", json=to_resource(ALL_VALUES))
    assert created.status_code == 201, created.text
    remote_id = created.json()["id"]
    assert flatten(created.json(), DEFAULT_MAPPING) == ALL_VALUES
    assert _read(client, remote_id) == ALL_VALUES

    expected = dict(ALL_VALUES)
    for path, value in ALL_VALUES.items():
        new_value = (not value) if isinstance(value, bool) else f"{value}-2"
        if path == WORK_EMAIL:
            new_value = "second@example.com"
        _patch(client, remote_id, to_patch_ops({path: new_value}))
        expected[path] = new_value
        assert _read(client, remote_id) == expected, path

    for path in ("title", WORK_EMAIL, DEPARTMENT, MANAGER, "name.givenName"):
        _patch(client, remote_id, to_patch_ops({path: None}))
        expected[path] = None
        assert _read(client, remote_id) == expected, path


def test_scim2_server_rejects_a_filtered_replace_without_a_matching_entry(
    client: httpx.Client,
) -> None:
    """Why to_patch_ops takes the resource: replace (and add) on an unmatched filter
    is 400 noTarget (RFC 7644 §3.5.2.3), so a first work email must be added whole."""
    remote_id = client.post("/Users", json=to_resource({"userName": "nomail"})).json()["id"]
    response = client.patch(
        f"/Users/{remote_id}",
        json={"schemas": [PATCH_OP], "Operations": to_patch_ops({WORK_EMAIL: "w@example.com"})},
    )
    assert response.status_code == 400
    assert response.json()["scimType"] == "noTarget"

    held = client.get(f"/Users/{remote_id}").json()
    _patch(client, remote_id, to_patch_ops({WORK_EMAIL: "w@example.com"}, held))
    assert _read(client, remote_id)[WORK_EMAIL] == "w@example.com"


def test_round_trip_through_put(client: httpx.Client) -> None:
    remote_id = client.post("/Users", json=to_resource(ALL_VALUES)).json()["id"]
    client.patch(
        f"/Users/{remote_id}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "nickName", "value": "Babs"}],
        },
    )
    changes = {"title": "Boss", DEPARTMENT: None, WORK_EMAIL: "w2@example.com", "active": False}
    held = client.get(f"/Users/{remote_id}").json()
    response = client.put(f"/Users/{remote_id}", json=merge_for_put(held, changes))
    assert response.status_code == 200, response.text
    assert _read(client, remote_id) == {**ALL_VALUES, **changes}
    assert client.get(f"/Users/{remote_id}").json()["nickName"] == "Babs"
