"""REST pagination, declared once per style as a tiny object (after dlt's paginators):
``first()`` is the first request, ``next(...)`` the next one from the last response, or
None when the listing is complete.

A listing that cannot be trusted raises InvalidResponseError: an account missing from
a listing reads as "gone from the app" to the plan, so a cursor or Link that comes back
twice, or a page that only repeats accounts already seen (an app ignoring the offset),
fails the extract rather than looking like fewer accounts. Offset and page-number styles
stop at an empty page, or at the total the app states: a page shorter than asked is not
the end, because apps cap page sizes below what was asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from connectors.errors import InvalidResponseError
from connectors.rest.fields import MISSING, read_path
from directory.appkinds.rest_parts import (
    CursorPagination,
    LinkHeaderPagination,
    NoPagination,
    OffsetLimitPagination,
    PageNumberPagination,
    Pagination,
)


@dataclass(frozen=True)
class PageRequest:
    #: a path under the app's base URL, or an absolute URL (a Link header's)
    url: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """What the paginator needs to know about the page just read."""

    response: httpx.Response
    body: Any
    count: int
    #: every account on it was already listed
    all_repeated: bool


class Paginator(Protocol):
    def first(self) -> PageRequest: ...

    def next(self, page: Page) -> PageRequest | None: ...


class SinglePage:
    def __init__(self, path: str, params: Mapping[str, str]) -> None:
        self._request = PageRequest(path, dict(params))

    def first(self) -> PageRequest:
        return self._request

    def next(self, page: Page) -> PageRequest | None:
        return None


class OffsetLimit:
    def __init__(
        self, style: OffsetLimitPagination, path: str, params: Mapping[str, str], size: int
    ) -> None:
        self._style, self._path, self._params, self._size = style, path, dict(params), size
        self._offset = 0

    def first(self) -> PageRequest:
        return self._at(0)

    def next(self, page: Page) -> PageRequest | None:
        total = _number(page.body, self._style.total)
        self._offset += page.count
        if page.count == 0 or (total is not None and self._offset >= total):
            return None
        _check_progress(page, f"offset {self._offset}")
        return self._at(self._offset)

    def _at(self, offset: int) -> PageRequest:
        style = self._style
        extra = {style.offset_param: str(offset), style.limit_param: str(self._size)}
        return PageRequest(self._path, {**self._params, **extra})


class PageNumber:
    def __init__(
        self, style: PageNumberPagination, path: str, params: Mapping[str, str], size: int
    ) -> None:
        self._style, self._path, self._params, self._size = style, path, dict(params), size
        self._page = style.first_page

    def first(self) -> PageRequest:
        return self._at(self._page)

    def next(self, page: Page) -> PageRequest | None:
        pages = _number(page.body, self._style.total_pages)
        last_index = None if pages is None else self._style.first_page + pages - 1
        if page.count == 0 or (last_index is not None and self._page >= last_index):
            return None
        _check_progress(page, f"page {self._page + 1}")
        self._page += 1
        return self._at(self._page)

    def _at(self, number: int) -> PageRequest:
        extra = {self._style.page_param: str(number)}
        if self._style.size_param:
            extra[self._style.size_param] = str(self._size)
        return PageRequest(self._path, {**self._params, **extra})


class Cursor:
    def __init__(
        self, style: CursorPagination, path: str, params: Mapping[str, str], size: int
    ) -> None:
        self._style, self._path = style, path
        self._params = dict(params)
        if style.size_param:
            self._params[style.size_param] = str(size)
        self._seen: set[str] = set()

    def first(self) -> PageRequest:
        return PageRequest(self._path, dict(self._params))

    def next(self, page: Page) -> PageRequest | None:
        raw = read_path(page.body, self._style.cursor)
        if raw is MISSING or raw is None or raw == "":
            return None
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise InvalidResponseError(f"the next cursor ({self._style.cursor}) is not a string")
        cursor = str(raw)
        if cursor in self._seen:
            raise InvalidResponseError("the app sent the same next cursor twice")
        self._seen.add(cursor)
        return PageRequest(self._path, {**self._params, self._style.cursor_param: cursor})


class LinkHeader:
    """RFC 8288 ``rel="next"``. The next URL must stay on the app's origin: the client
    sends the app's credentials with it."""

    def __init__(
        self,
        style: LinkHeaderPagination,
        path: str,
        params: Mapping[str, str],
        size: int,
        base_url: httpx.URL,
    ) -> None:
        self._params = dict(params)
        if style.size_param:
            self._params[style.size_param] = str(size)
        self._path, self._base = path, base_url
        self._seen: set[str] = set()

    def first(self) -> PageRequest:
        return PageRequest(self._path, dict(self._params))

    def next(self, page: Page) -> PageRequest | None:
        link = page.response.links.get("next")
        if not link or not link.get("url"):
            return None
        url = page.response.url.join(link["url"])  # RFC 8288 §3.1: relative to the request
        if _origin(url) != _origin(self._base):
            raise InvalidResponseError("the next page's Link points away from the app's origin")
        if str(url) in self._seen:
            raise InvalidResponseError("the app sent the same next Link twice")
        self._seen.add(str(url))
        return PageRequest(str(url))


def paginator_for(
    style: Pagination,
    path: str,
    params: Mapping[str, str],
    size: int,
    base_url: httpx.URL,
) -> Paginator:
    if isinstance(style, NoPagination):
        return SinglePage(path, params)
    if isinstance(style, OffsetLimitPagination):
        return OffsetLimit(style, path, params, size)
    if isinstance(style, PageNumberPagination):
        return PageNumber(style, path, params, size)
    if isinstance(style, CursorPagination):
        return Cursor(style, path, params, size)
    return LinkHeader(style, path, params, size, base_url)


def _number(body: Any, path: str | None) -> int | None:
    if path is None:
        return None
    raw = read_path(body, path)
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).isdigit():
        raise InvalidResponseError(f"{path}: expected a count in the listing's body")
    return int(raw)


def _check_progress(page: Page, upcoming: str) -> None:
    if page.all_repeated:
        raise InvalidResponseError(
            f"a page repeated only accounts already listed before {upcoming}:"
            " the app does not seem to honour the pagination parameters"
        )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port
