"""ScimConnector against a real scim2-server (in-process); MockTransport only where the
app must send something scim2-server never would."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connectors.base import Connector
from connectors.build import build_connector
from connectors.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    DryRunError,
    InvalidResponseError,
    NotFoundError,
)
from connectors.http import build_client
from connectors.scim import ScimConnector
from directory.config import (
    DEFAULT_MAPPING,
    ENTERPRISE,
    WORK_EMAIL,
    ScimAppConfig,
    UpdateMethod,
)
from tasks.tokens import resolve_token
from tests.scim_apps import TOKEN, InProcessScim

PATHS = list(DEFAULT_MAPPING)
DEPARTMENT = f"{ENTERPRISE}:department"
MANAGER = f"{ENTERPRISE}:manager.value"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def person(user_name: str, **overrides: str | bool | None) -> dict[str, str | bool | None]:
    values: dict[str, str | bool | None] = {
        "userName": user_name,
        "externalId": f"ext-{user_name}",
        "name.givenName": "Given",
        "name.familyName": "Family",
        "displayName": f"Display {user_name}",
        WORK_EMAIL: f"{user_name}@example.com",
        "title": "Engineer",
        "active": True,
        DEPARTMENT: "R&D",
        f"{ENTERPRISE}:employeeNumber": "42",
        MANAGER: "manager-id",
    }
    return values | overrides


class Recorder:
    """WSGI middleware noting (method, path) of every request that reaches the server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        return self.app(environ, start_response)

    def methods(self) -> list[str]:
        return [method for method, _ in self.seen]


def connect(
    scim: InProcessScim, tenant: str = "acme", *, recorder: Recorder | None = None, **options: Any
) -> ScimConnector:
    transport = httpx.WSGITransport(app=recorder) if recorder else scim.transport()
    client = build_client(
        scim.base_url(tenant),
        scim.token,
        timeout=5,
        verify_tls=True,
        concurrency=4,
        transport=transport,
    )
    return ScimConnector(tenant, client, paths=PATHS, **options)


def test_it_satisfies_the_connector_protocol(scim: InProcessScim) -> None:
    assert isinstance(connect(scim), Connector)


def test_create_get_and_find_return_every_mapped_attribute(scim: InProcessScim) -> None:
    connector = connect(scim)
    created = connector.create_account(person("bjensen"))
    assert created.attributes == person("bjensen")
    assert connector.get_account(created.id) == created
    assert connector.find_account("userName", "bjensen") == created
    assert connector.find_account(WORK_EMAIL, "bjensen@example.com") == created
    assert connector.find_account("userName", "nobody") is None


def test_a_duplicate_user_name_is_a_conflict(scim: InProcessScim) -> None:
    connector = connect(scim)
    connector.create_account(person("dup"))
    with pytest.raises(ConflictError) as caught:
        connector.create_account(person("dup", displayName="Secret Display"))
    assert caught.value.status == 409
    assert str(caught.value).startswith("POST /Users: 409 uniqueness")
    assert "Secret Display" not in str(caught.value)  # never the request body
    assert len(scim.users("acme")) == 1


def test_find_account_with_several_matches_is_a_conflict(scim: InProcessScim) -> None:
    connector = connect(scim)
    connector.create_account(person("a1"))
    connector.create_account(person("a2"))
    with pytest.raises(ConflictError, match="2 accounts match title"):
        connector.find_account("title", "Engineer")


@pytest.mark.parametrize("user_name", ['o"brien', "back\\slash", 'both\\"', 'x" or userName pr'])
def test_find_account_escapes_quotes_and_backslashes(scim: InProcessScim, user_name: str) -> None:
    connector = connect(scim)
    decoy = connector.create_account(person("decoy", **{WORK_EMAIL: "decoy@example.com"}))
    wanted = connector.create_account(person(user_name, **{WORK_EMAIL: "w@example.com"}))
    assert connector.find_account("userName", user_name) == wanted
    assert connector.find_account("userName", "decoy") == decoy


def test_missing_accounts_are_not_found(scim: InProcessScim) -> None:
    connector = connect(scim)
    with pytest.raises(NotFoundError, match="GET /Users/gone: 404"):
        connector.get_account("gone")
    with pytest.raises(NotFoundError):
        connector.update_account("gone", {"title": "x"}, person("gone"))
    with pytest.raises(NotFoundError):
        connector.delete_account("gone")


def test_ids_cannot_escape_the_users_path(scim: InProcessScim) -> None:
    """Unquoted, this id would fetch /ServiceProviderConfig (200) instead of a 404."""
    with pytest.raises(NotFoundError, match=r"GET /Users/..%2FServiceProviderConfig: 404"):
        connect(scim).get_account("../ServiceProviderConfig")


def test_a_bad_token_is_an_auth_error_that_does_not_show_the_token(scim: InProcessScim) -> None:
    secret = "not-the-token-8c1d7e"
    client = build_client(
        scim.base_url("acme"),
        secret,
        timeout=5,
        verify_tls=True,
        concurrency=1,
        transport=scim.transport(),
    )
    connector = ScimConnector("acme", client, paths=PATHS)
    with pytest.raises(AuthError) as caught:
        next(iter(connector.list_accounts()))
    assert caught.value.status == 401
    assert secret not in str(caught.value) and secret not in repr(caught.value)
    assert secret not in repr(client.auth)


def test_logs_name_method_path_and_status_only(
    scim: InProcessScim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="roster.connectors.scim")
    connector = connect(scim)
    connector.create_account(person("logged", displayName="Private Name"))
    messages = [r.getMessage() for r in caplog.records if r.name == "roster.connectors.scim"]
    assert messages == ["POST /Users -> 201"]
    assert TOKEN not in caplog.text and "Private Name" not in caplog.text


# -- updates: PATCH or PUT ------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch_supported", "method", "verb"),
    [
        (True, UpdateMethod.AUTO, "PATCH"),
        (False, UpdateMethod.AUTO, "PUT"),
        (True, UpdateMethod.PUT, "PUT"),
        (True, UpdateMethod.PATCH, "PATCH"),
    ],
)
def test_updates_converge_with_patch_or_put(
    patch_supported: bool, method: UpdateMethod, verb: str
) -> None:
    scim = InProcessScim(patch=patch_supported)
    recorder = Recorder(scim.app)
    connector = connect(scim, recorder=recorder, update_method=method)
    account = connector.create_account(person("conv", **{WORK_EMAIL: None}))
    desired = person("conv", title="Boss", **{WORK_EMAIL: "first@example.com", DEPARTMENT: None})
    changes = {"title": "Boss", WORK_EMAIL: "first@example.com", DEPARTMENT: None}

    connector.update_account(account.id, changes, desired)
    connector.update_account(
        account.id, {"displayName": "Renamed"}, desired | {"displayName": "Renamed"}
    )

    assert connector.get_account(account.id).attributes == desired | {"displayName": "Renamed"}
    writes = [m for m in recorder.methods() if m not in ("GET", "POST")]
    assert set(writes) == {verb}
    spc_reads = recorder.seen.count(("GET", "/acme/v2/ServiceProviderConfig"))
    assert spc_reads == (1 if method is UpdateMethod.AUTO else 0)


def test_patch_on_an_app_without_patch_is_a_bad_request() -> None:
    scim = InProcessScim(patch=False)
    connector = connect(scim, update_method=UpdateMethod.PATCH)
    account = connector.create_account(person("nopatch"))
    with pytest.raises(BadRequestError, match="501"):
        connector.update_account(account.id, {"title": "x"}, person("nopatch", title="x"))


def test_a_first_work_email_is_added_when_the_filtered_replace_finds_no_target(
    scim: InProcessScim,
) -> None:
    recorder = Recorder(scim.app)
    connector = connect(scim, recorder=recorder, update_method=UpdateMethod.PATCH)
    account = connector.create_account(person("late", **{WORK_EMAIL: None}))
    connector.update_account(account.id, {WORK_EMAIL: "late@example.com"}, person("late"))
    assert recorder.methods()[1:] == ["PATCH", "GET", "PATCH"]
    assert connector.last_operation.requests == 3
    [stored] = scim.users("acme")
    assert stored["emails"] == [{"value": "late@example.com", "type": "work", "primary": True}]


def test_put_keeps_attributes_roster_does_not_map() -> None:
    scim = InProcessScim(patch=False)
    connector = connect(scim)
    account = connector.create_account(person("nick"))
    with scim.client("acme") as client:
        held = client.get(f"/Users/{account.id}").json()
        assert (
            client.put(f"/Users/{account.id}", json={**held, "nickName": "Nicky"}).status_code
            == 200
        )
    connector.update_account(account.id, {"title": "Boss"}, person("nick", title="Boss"))
    [stored] = scim.users("acme")
    assert stored["nickName"] == "Nicky" and stored["title"] == "Boss"


@pytest.mark.parametrize("patch_supported", [True, False])
def test_deactivate_then_delete(patch_supported: bool) -> None:
    scim = InProcessScim(patch=patch_supported)
    connector = connect(scim)
    account = connector.create_account(person("leaver"))
    connector.deactivate_account(account.id)
    assert connector.get_account(account.id).attributes == person("leaver", active=False)
    connector.delete_account(account.id)
    assert scim.users("acme") == []
    with pytest.raises(NotFoundError):
        connector.delete_account(account.id)


def test_an_update_without_changes_sends_nothing(scim: InProcessScim) -> None:
    recorder = Recorder(scim.app)
    connect(scim, recorder=recorder).update_account("any", {}, person("any"))
    assert recorder.seen == []


def test_patch_answered_with_200_and_the_resource_is_accepted() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.method == "PATCH"
        user = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "1",
            "userName": "x",
        }
        return httpx.Response(200, json=user)

    client = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://app.test")
    connector = ScimConnector("mock", client, paths=PATHS, update_method=UpdateMethod.PATCH)
    connector.update_account("1", {"title": "x"}, {"title": "x"})


# -- dry run --------------------------------------------------------------------------


@pytest.mark.parametrize("patch_supported", [True, False])
def test_dry_run_refuses_every_write_and_the_server_sees_none(patch_supported: bool) -> None:
    scim = InProcessScim(patch=patch_supported)
    existing = connect(scim).create_account(person("kept"))
    recorder = Recorder(scim.app)
    connector = connect(scim, recorder=recorder, dry_run=True)

    writes: list[Callable[[], object]] = [
        lambda: connector.create_account(person("new")),
        lambda: connector.update_account(existing.id, {"title": "x"}, person("kept", title="x")),
        lambda: connector.deactivate_account(existing.id),
        lambda: connector.delete_account(existing.id),
    ]
    for write in writes:
        with pytest.raises(DryRunError):
            write()

    assert set(recorder.methods()) <= {"GET"}
    assert connector.get_account(existing.id) == existing
    assert len(scim.users("acme")) == 1


# -- malformed answers ----------------------------------------------------------------


def mock_connector(body: bytes | dict[str, Any], status: int = 200) -> ScimConnector:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    client = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://app.test")
    return ScimConnector("mock", client, paths=PATHS)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>maintenance</html>", "body is not JSON"),
        (b"\xff\xfe\x00", "body is not JSON"),
        ({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x"}, "id"),
        ({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "1"}, "invalid SCIM"),
        (
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1", "emails": "x"},
            "emails",
        ),
    ],
)
def test_a_malformed_resource_is_an_invalid_response(
    body: bytes | dict[str, Any], why: str
) -> None:
    with pytest.raises(InvalidResponseError, match=why):
        mock_connector(body).get_account("1")


def test_an_error_without_a_scim_body_still_maps_by_status() -> None:
    with pytest.raises(ConflictError, match="POST /Users: 409 Conflict"):
        mock_connector(b"<html>conflict</html>", status=409).create_account(person("x"))


def test_an_unexpected_redirect_is_an_invalid_response() -> None:
    with pytest.raises(InvalidResponseError, match="302"):
        mock_connector(b"", status=302).get_account("1")


def test_a_mapping_path_the_user_schema_lacks_fails_at_construction(scim: InProcessScim) -> None:
    with pytest.raises(ValueError, match=r"nmae\.givenName"):
        ScimConnector("acme", scim.client("acme"), paths=["userName", "nmae.givenName"])


# -- building from configuration ------------------------------------------------------


def test_build_connector_from_app_config(
    scim: InProcessScim, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ACME_SCIM_TOKEN", scim.token)
    app = ScimAppConfig.model_validate(
        {
            "name": "acme",
            "connector": "scim",
            "base_url": scim.base_url("acme"),
            "token_env": "ACME_SCIM_TOKEN",
            "mapping": {"title": None},
            "rate_limit": 1000,
            "verify_tls": False,
        }
    )
    connector = build_connector(app, resolve_token(app), dry_run=False, transport=scim.transport())
    account = connector.create_account({"userName": "built", "title": "ignored"})
    assert account.attributes == dict.fromkeys(app.effective_mapping) | {"userName": "built"}
    assert connector.find_account("userName", "built") == account
    assert "TLS certificate verification is disabled for app acme" in caplog.text
    assert scim.token not in caplog.text
    connector.close()
