"""The parts of a REST app's settings (``directory.appkinds.rest``): auth, listing and
pagination, lookups, requests and body templates, fields, the active flag and the
deprovisioning strategies. Each is a small strict model; unions are told apart by a
``type``, ``style`` or ``strategy`` key, so an error names the branch the user meant.
"""

from __future__ import annotations

import re
import string
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

#: a dotted JSON path: ``name``, ``profile.email``, ``emails.0.value``
DOTTED = r"^[^.\s{}]+(\.[^.\s{}]+)*$"
_HEADER = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"  # an RFC 9110 token


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- auth --------------------------------------------------------------------------------------


class BearerAuthConfig(_Strict):
    """``Authorization: Bearer <secret>`` (RFC 6750)."""

    type: Literal["bearer"]


class BasicAuthConfig(_Strict):
    """RFC 7617: ``username`` from here, the password is the app's secret."""

    type: Literal["basic"]
    username: str = Field(min_length=1, pattern=r"^[^:\x00-\x1f]+$")


class ApiKeyAuthConfig(_Strict):
    """The secret in a header of the app's choosing, after an optional ``prefix``."""

    type: Literal["api_key"]
    header: str = Field(pattern=_HEADER)
    prefix: str = ""


class ClientAuthMethod(StrEnum):
    """RFC 6749 §2.3.1: client credentials in a Basic header, or in the form body."""

    BASIC = "basic"
    BODY = "body"


class OAuth2ClientCredentialsConfig(_Strict):
    """RFC 6749 §4.4: an access token from ``token_url`` for ``client_id`` and the app's
    secret as client secret; cached until it expires, fetched again on a 401 once."""

    type: Literal["oauth2_client_credentials"]
    token_url: HttpUrl
    client_id: str = Field(min_length=1)
    scope: str | None = None
    client_auth: ClientAuthMethod = ClientAuthMethod.BASIC


AuthConfig: TypeAlias = Annotated[
    BearerAuthConfig | BasicAuthConfig | ApiKeyAuthConfig | OAuth2ClientCredentialsConfig,
    Field(discriminator="type"),
]


# -- listing ----------------------------------------------------------------------------------


class NoPagination(_Strict):
    """One request returns every account."""

    style: Literal["none"]


class OffsetLimitPagination(_Strict):
    """``?offset=0&limit=N``, then offset += items received, until a short page (or
    ``total``, a dotted path to the count in the body, is reached)."""

    style: Literal["offset_limit"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    total: str | None = Field(None, pattern=DOTTED)


class PageNumberPagination(_Strict):
    """``?page=1&per_page=N``, then the next page, until a short page (or the page
    count at ``total_pages`` is reached)."""

    style: Literal["page_number"]
    page_param: str = "page"
    size_param: str | None = "per_page"
    first_page: int = Field(1, ge=0)
    total_pages: str | None = Field(None, pattern=DOTTED)


class CursorPagination(_Strict):
    """The body says where the next page starts (``cursor``, a dotted path); that
    value goes back in ``cursor_param``; no cursor (null, absent or "") ends the listing."""

    style: Literal["cursor"]
    cursor: str = Field(pattern=DOTTED)
    cursor_param: str
    size_param: str | None = "limit"


class LinkHeaderPagination(_Strict):
    """RFC 8288: follow ``Link: <url>; rel="next"`` until there is none."""

    style: Literal["link_header"]
    size_param: str | None = None


Pagination: TypeAlias = Annotated[
    NoPagination
    | OffsetLimitPagination
    | PageNumberPagination
    | CursorPagination
    | LinkHeaderPagination,
    Field(discriminator="style"),
]


class ListConfig(_Strict):
    path: str = Field(pattern=r"^/")
    #: sent with every listing (and ``find`` query), e.g. ``deactivated: "true"`` for
    #: an app that leaves deactivated accounts out unless asked
    params: dict[str, str] = Field(default_factory=dict)
    #: where the accounts are in the body (dotted path); "" when the body is the list
    items: str = Field("", pattern=rf"^$|{DOTTED}")
    #: the remote id in each account (dotted path)
    id: str = Field("id", pattern=DOTTED)
    pagination: Pagination = Field(default_factory=lambda: NoPagination(style="none"))

    @field_validator("path")
    @classmethod
    def _no_placeholders(cls, path: str) -> str:
        if placeholders(path):
            raise ValueError("the listing path takes no {placeholders}")
        return path


class FindStyle(StrEnum):
    LIST = "list"  # list every account and pick
    QUERY = "query"  # the listing with a search parameter, e.g. ?username=alice
    PATH = "path"  # GET a path built from the value, e.g. /api/users/{value}; 404: none


class FindConfig(_Strict):
    """How to look one account up by an attribute; results are always compared with the
    value by Roster too (apps' searches are often substring or prefix matches)."""

    style: FindStyle = FindStyle.LIST
    #: the attribute this lookup can search; others fall back to listing. None: any.
    attribute: str | None = None
    param: str | None = None
    #: the query parameter's value, ``{value}`` standing for the value looked up (with
    #: ``"`` and ``\\`` backslash-escaped), e.g. ``userName eq "{value}"``
    template: str = "{value}"
    path: str | None = Field(None, pattern=r"^/")

    @model_validator(mode="after")
    def _style_needs(self) -> FindConfig:
        if self.style is FindStyle.QUERY and not self.param:
            raise ValueError("style query needs param (the query parameter to search with)")
        if self.style is FindStyle.QUERY and "{value}" not in self.template:
            raise ValueError("template must contain {value}")
        if self.style is FindStyle.PATH and (not self.path or "{value}" not in self.path):
            raise ValueError("style path needs path, with a {value} placeholder")
        if self.path is not None and set(placeholders(self.path)) - {"value"}:
            raise ValueError("path may only use the {value} placeholder")
        return self


# -- requests ----------------------------------------------------------------------------------


class BodyMode(StrEnum):
    #: the call's attributes as a JSON object, each at its field's path
    MAPPED = "mapped"
    #: the account as the app holds it (GET), with the call's attributes written over it:
    #: for apps whose update replaces the whole resource
    MERGED = "merged"


class RequestConfig(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str = Field(pattern=r"^/")
    #: ``mapped``, ``merged``, a JSON object template, or none
    body: BodyMode | dict[str, Any] | None = None
    #: statuses that mean success; empty: any 2xx. Others in 2xx are an invalid response.
    ok: list[Annotated[int, Field(ge=200, le=299)]] = Field(default_factory=list)
    #: create only: the app's create is an upsert (PUT to the account's own path), so
    #: GET it first and treat an existing account as a conflict (Roster adopts it)
    if_absent: bool = False


class Requests(_Strict):
    #: default: GET {list.path}/{id}
    get: RequestConfig | None = None
    create: RequestConfig | None = None
    update: RequestConfig | None = None
    #: a dedicated endpoint (``POST /users/{id}/deactivate``); without it, deactivation
    #: is an update of the active field (or of what ``deprovision_strategy`` names)
    deactivate: RequestConfig | None = None
    reactivate: RequestConfig | None = None
    delete: RequestConfig | None = None


# -- fields, active, deprovisioning -----------------------------------------------------------


class FieldConfig(_Strict):
    """Where an attribute lives in the app's JSON, and how its value is spelled there."""

    path: str = Field(pattern=DOTTED)
    #: written before/after the value, removed when read: ``@`` and ``:example.org``
    #: for a Matrix id, ``roster-`` to set Roster's accounts apart. On the ``key``
    #: attribute they also scope the app: accounts whose key lacks them are not
    #: Roster's, and are never listed, found or touched.
    prefix: str = ""
    suffix: str = ""
    #: the app holds a list of strings; Roster reads it joined with this separator
    #: (sorted) and writes it split
    join: str | None = Field(None, min_length=1)


class BooleanActive(_Strict):
    style: Literal["boolean"]
    path: str = Field("active", pattern=DOTTED)
    #: the field says "deactivated" (true means inactive)
    inverted: bool = False


class StatusActive(_Strict):
    style: Literal["status"]
    path: str = Field(pattern=DOTTED)
    #: the value of an active account; any other value reads as inactive
    active: str
    #: the value written to deactivate
    inactive: str

    @model_validator(mode="after")
    def _distinct(self) -> StatusActive:
        if self.active == self.inactive:
            raise ValueError("active and inactive must differ")
        return self


class AbsentActive(_Strict):
    """The app has no notion of an inactive account."""

    style: Literal["absent"]


ActiveConfig: TypeAlias = Annotated[
    BooleanActive | StatusActive | AbsentActive, Field(discriminator="style")
]


class DeactivateStrategy(_Strict):
    """The app can deactivate (``active``, or ``requests.deactivate``)."""

    strategy: Literal["deactivate"]


class DeleteStrategy(_Strict):
    """Deprovisioning deletes; the app-level ``deprovision`` must say ``delete`` too."""

    strategy: Literal["delete"]


class StripRolesStrategy(_Strict):
    """Deprovisioning writes ``value`` (empty by default) to a mapped ``attribute`` (roles,
    tags, groups); an account whose attribute holds it reads as inactive."""

    strategy: Literal["strip_roles"]
    attribute: str
    value: str = ""


class LockStrategy(_Strict):
    """Deprovisioning writes ``value`` at ``path`` (a status the app has); an account
    holding it reads as inactive; reactivation writes ``unlocked``."""

    strategy: Literal["lock"]
    path: str = Field(pattern=DOTTED)
    value: str
    unlocked: str

    @model_validator(mode="after")
    def _distinct(self) -> LockStrategy:
        if self.value == self.unlocked:
            raise ValueError("value and unlocked must differ")
        return self


Strategy: TypeAlias = Annotated[
    DeactivateStrategy | DeleteStrategy | StripRolesStrategy | LockStrategy,
    Field(discriminator="strategy"),
]


def placeholders(template: str) -> list[str]:
    """The ``{names}`` in a template (``{{`` is a literal brace); ValueError if malformed."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{template!r}: {exc}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or not re.fullmatch(r"[A-Za-z_][\w.-]*", name):
            raise ValueError(f"{template!r}: placeholders are plain names like {{id}}")
        names.append(name)
    return names


def body_placeholders(body: Any) -> list[str]:
    """Every placeholder in a body template's strings, nested objects and lists included."""
    if isinstance(body, str) and not isinstance(body, BodyMode):
        return placeholders(body)
    if isinstance(body, dict):
        return [name for value in body.values() for name in body_placeholders(value)]
    if isinstance(body, list):
        return [name for value in body for name in body_placeholders(value)]
    return []


def _tags(union: Any, key: str) -> frozenset[str]:
    """The tag values of a discriminated union (``Annotated[A | B, Field(...)]``)."""
    members = union.__origin__.__args__
    return frozenset(member.model_fields[key].annotation.__args__[0] for member in members)


#: the tagged unions of a REST app's settings: key -> its tags. pydantic puts the tag in
#: an error's location (``list.pagination.cursor.cursor_param``); messages leave it out.
UNION_TAGS: dict[str, frozenset[str]] = {
    "auth": _tags(AuthConfig, "type"),
    "pagination": _tags(Pagination, "style"),
    "active": _tags(ActiveConfig, "style"),
    "deprovision_strategy": _tags(Strategy, "strategy"),
}
