"""SCIM Groups (RFC 7643 §4.2): list, create, rename, change members, delete.

Members change through PATCH ``add``/``remove`` operations (RFC 7644 §3.5.2), never by
replacing the whole list: a replace of 8,000 members from a stale listing would drop
anyone added in between. Apps cap how many members one request may carry, so
``change_members`` sends them in chunks of ``per_request``. A member is removed by a
filtered path, ``members[value eq "id"]``, one operation per member, since RFC 7644
§3.5.2.2 has no "remove these values" form every server reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from scim2_models import Context, Group, ListResponse, ScimFilter

from connectors.base import AppGroup
from connectors.errors import InvalidResponseError
from connectors.http import read_json
from connectors.scim.pagination import ScimPaginator
from connectors.scim.responses import patch_body, total_results, usable_id, validate

CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


class ScimGroups:
    """The group operations of ``ScimConnector``, over its one request entry point."""

    # provided by ScimConnector: its paging size and its one request entry point
    _page_size: int
    _begin: Callable[[], None]
    _request: Callable[..., httpx.Response]
    _get_list: Callable[..., tuple[ListResponse[Any], list[Any]]]

    def list_groups(self) -> Iterator[list[AppGroup]]:
        """Every group with its members. One malformed group fails the listing: a group
        missing from it would read as deleted and be created a second time."""
        self._begin()
        paginator = ScimPaginator(self._page_size)
        params: dict[str, int] | None = paginator.first_request()
        while params is not None:
            envelope, resources = self._get_list(params, "/Groups", Group)
            groups = [_group("GET /Groups", raw) for raw in resources]
            paginator.update(
                total_results=total_results(envelope),
                start_index=envelope.start_index,
                ids=[g.id for g in groups],
            )
            yield groups
            params = paginator.next_request()

    def find_group(self, display_name: str) -> AppGroup | None:
        self._begin()
        expression = f"displayName eq {ScimFilter.quote(display_name)}"
        _, resources = self._get_list({"filter": expression}, "/Groups", Group)
        groups = [_group("GET /Groups", raw) for raw in resources]
        return groups[0] if len(groups) == 1 else None

    def create_group(self, display_name: str) -> AppGroup:
        self._begin()
        body = {"schemas": [CORE_GROUP], "displayName": display_name}
        raw = read_json("POST", "/Groups", self._request("POST", "/Groups", json=body))
        return _group("POST /Groups", raw, Context.RESOURCE_CREATION_RESPONSE)

    def rename_group(self, remote_id: str, display_name: str) -> None:
        self._begin()
        op = {"op": "replace", "path": "displayName", "value": display_name}
        self._request("PATCH", _group_path(remote_id), json=patch_body([op]))

    def change_members(
        self, remote_id: str, add: Sequence[str], remove: Sequence[str], per_request: int
    ) -> int:
        """Adds first, then removals, each request carrying at most ``per_request``
        members; returns how many requests were sent."""
        self._begin()
        path = _group_path(remote_id)
        sent = 0
        for chunk in _chunks(sorted(add), per_request):
            value = [{"value": member} for member in chunk]
            self._request("PATCH", path, json=patch_body([_add(value)]))
            sent += 1
        for chunk in _chunks(sorted(remove), per_request):
            self._request("PATCH", path, json=patch_body([_remove(m) for m in chunk]))
            sent += 1
        return sent

    def delete_group(self, remote_id: str) -> None:
        self._begin()
        self._request("DELETE", _group_path(remote_id))


def _add(value: list[dict[str, str]]) -> dict[str, Any]:
    return {"op": "add", "path": "members", "value": value}


def _remove(member: str) -> dict[str, Any]:
    return {"op": "remove", "path": f"members[value eq {ScimFilter.quote(member)}]"}


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _group(where: str, raw: Any, context: Context = Context.RESOURCE_QUERY_RESPONSE) -> AppGroup:
    group = validate(Group, where, raw, context)
    if not group.id or not usable_id(group.id):
        raise InvalidResponseError(f"{where}: a Group without a usable id")
    members = frozenset(m.value for m in group.members or () if m.value)
    return AppGroup(id=group.id, display_name=group.display_name or "", members=members)


def _group_path(remote_id: str) -> str:
    """Ids are opaque (RFC 7643 §3.1): quoted so none can change the URL's path."""
    return f"/Groups/{quote(remote_id, safe='')}"
