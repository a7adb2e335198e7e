"""A SCIM 2.0 app (RFC 7643/7644): Users over one shared, thread-safe ``httpx.Client``.

Every request goes through ``ScimConnector._request``, which hands it to the shared
``connectors.wire.Wire`` (dry-run refusal, the app's rate budget, retries of 429, 502-504
and network failures honouring Retry-After, per-thread attempt counts, logging of
method, path and status only) with SCIM's own status check: RFC 7644 §3.12 error bodies
and ``noTarget``. Every response is validated with scim2-models before anything is
read from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx
from scim2_models import Context, ListResponse, ScimFilter, ServiceProviderConfig

from connectors.base import Account, AccountPage, Attributes, Connector, GroupConnector, Value
from connectors.errors import (
    ConflictError,
    InvalidResponseError,
    NotFoundError,
)
from connectors.http import read_json
from connectors.ratelimit import RateLimiter, Traffic, TrafficStats
from connectors.scim.groups import ScimGroups
from connectors.scim.pagination import ScimPaginator
from connectors.scim.paths import (
    USER_MODEL,
    check_paths,
    flatten,
    merge_for_put,
    parse_path,
    to_patch_ops,
    to_resource,
)
from connectors.scim.responses import (
    NoTargetError,
    check_status,
    find_key,
    patch_body,
    raw_id,
    storable,
    total_results,
    usable_id,
    validate,
)
from connectors.wire import OperationStats, Wire
from directory.config import UpdateMethod

logger = logging.getLogger("roster.connectors.scim")


class ScimConnector(ScimGroups):
    """Users of one SCIM app, as flat attribute maps keyed by ``paths``; its groups
    through ``ScimGroups``."""

    def __init__(
        self,
        name: str,
        client: httpx.Client,
        *,
        paths: Sequence[str],
        page_size: int = 500,
        update_method: UpdateMethod = UpdateMethod.AUTO,
        dry_run: bool = False,
        rate_limiter: RateLimiter | Traffic | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_paths(paths)
        self.name = name
        self._wire = Wire(
            name,
            client,
            logger=logger,
            dry_run=dry_run,
            rate_limiter=rate_limiter,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            sleep=sleep,
        )
        self._paths = list(paths)
        self._page_size = page_size
        self._update_method = UpdateMethod(update_method)
        self._patch_lock = threading.Lock()
        self._patch_supported: bool | None = None

    # -- attempt accounting -------------------------------------------------------

    @property
    def dry_run(self) -> bool:
        return self._wire.dry_run

    @property
    def last_operation(self) -> OperationStats:
        """The calling thread's most recent public call (``connectors.wire``)."""
        return self._wire.last_operation

    @property
    def traffic_stats(self) -> TrafficStats:
        """What the app's traffic control did so far: 429s, waits, where concurrency settled."""
        return self._wire.traffic_stats

    @property
    def last_attempts(self) -> int:
        """HTTP sends of the calling thread's most recent public call, retries included."""
        return self.last_operation.attempts

    def _begin(self) -> None:
        self._wire.begin()

    # -- operations (connectors.base.Connector) -------------------------------------

    def list_accounts(self) -> Iterator[AccountPage]:
        """Page by page. While one page's accounts are validated (in a worker thread), the
        next page is already being asked for: its startIndex is known as soon as a page
        arrives, so the app's time and Roster's overlap instead of adding up. The
        paginator still decides every next request; a guess it disagrees with is dropped.
        Requests stay on the calling thread, so ``last_operation`` counts them all."""
        self._begin()
        paginator = ScimPaginator(self._page_size)
        params: dict[str, int] | None = paginator.first_request()
        assert params is not None
        current = self._get_list(params)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scim-page") as worker:
            while True:
                envelope, resources = current
                checking = worker.submit(self._read_page, resources)
                guess = _next_page(params, envelope, len(resources))
                ahead = _Ahead(self._get_list, guess) if guess is not None else None
                results = checking.result()
                fresh = paginator.update(
                    total_results=total_results(envelope),
                    start_index=envelope.start_index,
                    ids=[remote_id for remote_id, _ in results],
                )
                kept = [pair for pair, new in zip(results, fresh, strict=True) if new]
                yield AccountPage(
                    accounts=[o for _, o in kept if isinstance(o, Account)],
                    errors=[o for _, o in kept if isinstance(o, str)],
                    unreadable_ids=[i for i, o in kept if isinstance(o, str) and i is not None],
                )
                params = paginator.next_request()
                if params is None:
                    return
                agreed = ahead is not None and params == guess
                current = ahead.result() if ahead is not None and agreed else self._get_list(params)

    def _read_page(self, resources: list[Any]) -> list[tuple[str | None, Account | str]]:
        return [self._read_listed(index, raw) for index, raw in enumerate(resources)]

    def find_account(self, attribute: str, value: str) -> Account | None:
        self._begin()
        # RFC 7644 §3.4.2.2: the value is a JSON string, so quotes and backslashes are escaped.
        expression = f"{parse_path(attribute)} eq {ScimFilter.quote(value)}"
        envelope, resources = self._get_list({"filter": expression, "count": 2})
        total = total_results(envelope)
        if total > 1 or len(resources) > 1:
            # Not an HTTP 409, but the same meaning: the account is disputed, do not guess.
            raise ConflictError(f"GET /Users: {total} accounts match {attribute}")
        if total == 0:
            return None
        if not resources:
            raise InvalidResponseError("GET /Users: totalResults is 1 but no resource came back")
        return self._account("GET /Users", resources[0], Context.RESOURCE_QUERY_RESPONSE)

    def get_account(self, remote_id: str) -> Account:
        self._begin()
        path = _user_path(remote_id)
        raw = read_json("GET", path, self._request("GET", path))
        return self._account(f"GET {path}", raw, Context.RESOURCE_QUERY_RESPONSE)

    def create_account(self, attributes: Attributes) -> Account:
        """409 raises ConflictError: the caller finds the existing account and adopts it."""
        self._begin()
        response = self._request("POST", "/Users", json=to_resource(attributes))
        return self._created(read_json("POST", "/Users", response))

    def update_account(self, remote_id: str, changes: Attributes, current: Attributes) -> None:
        self._begin()
        if changes:
            self._update(remote_id, changes, current)

    def deactivate_account(self, remote_id: str) -> None:
        self._begin()
        self._update(remote_id, {"active": False}, {"active": False})

    def delete_account(self, remote_id: str) -> None:
        self._begin()
        self._request("DELETE", _user_path(remote_id))

    def close(self) -> None:
        self._wire.close()

    # -- updates --------------------------------------------------------------------

    def _update(self, remote_id: str, changes: Attributes, current: Attributes) -> None:
        if self._uses_patch():
            self._patch(remote_id, changes)
        else:
            self._put(remote_id, {**current, **changes})

    def _uses_patch(self) -> bool:
        """RFC 7644 §3.5.2: PATCH is optional. AUTO reads /ServiceProviderConfig once,
        under a lock, so worker threads wait for one read instead of racing."""
        if self._update_method is not UpdateMethod.AUTO:
            return self._update_method is UpdateMethod.PATCH
        with self._patch_lock:
            if self._patch_supported is None:
                self._patch_supported = self._read_patch_support()
            return self._patch_supported

    def _read_patch_support(self) -> bool:
        path = "/ServiceProviderConfig"
        try:
            raw = read_json("GET", path, self._request("GET", path))
        except NotFoundError:
            logger.warning("app %s has no %s; updating with PUT", self.name, path)
            return False
        config = validate(
            ServiceProviderConfig, f"GET {path}", raw, Context.RESOURCE_QUERY_RESPONSE
        )
        return bool(config.patch and config.patch.supported)

    def _patch(self, remote_id: str, changes: Attributes) -> None:
        try:
            self._send_patch(remote_id, to_patch_ops(changes))
        except NoTargetError:
            # A filtered replace found no entry (no work email yet): add the entry.
            self._send_patch(remote_id, to_patch_ops(changes, self._get_raw(remote_id)))

    def _send_patch(self, remote_id: str, operations: list[dict[str, Any]]) -> None:
        path = _user_path(remote_id)
        body = patch_body(operations)
        response = self._request("PATCH", path, json=body)
        # RFC 7644 §3.5.2: 200 with the resource, or 204 with no body.
        if response.status_code != 204 and response.content:
            raw = read_json("PATCH", path, response)
            validate(USER_MODEL, f"PATCH {path}", raw, Context.RESOURCE_PATCH_RESPONSE)

    def _put(self, remote_id: str, attributes: Mapping[str, Value]) -> None:
        path = _user_path(remote_id)
        body = merge_for_put(self._get_raw(remote_id), attributes)
        raw = read_json("PUT", path, self._request("PUT", path, json=body))
        validate(USER_MODEL, f"PUT {path}", raw, Context.RESOURCE_REPLACEMENT_RESPONSE)

    def _get_raw(self, remote_id: str) -> dict[str, Any]:
        """The resource as the app sent it (validated), for PUT and PATCH fallbacks."""
        path = _user_path(remote_id)
        raw = read_json("GET", path, self._request("GET", path))
        validate(USER_MODEL, f"GET {path}", raw, Context.RESOURCE_QUERY_RESPONSE)
        return dict(raw)

    # -- reading responses --------------------------------------------------------------

    def _get_list(
        self, params: Mapping[str, Any], endpoint: str = "/Users", model: Any = USER_MODEL
    ) -> tuple[ListResponse[Any], list[Any]]:
        """The ListResponse envelope, validated on its own, and its raw resources, which
        the caller validates one by one so that one bad account spoils only itself."""
        where = f"GET {endpoint}"
        body = read_json("GET", endpoint, self._request("GET", endpoint, params=params))
        if not isinstance(body, dict):
            raise InvalidResponseError(f"{where}: the body is not a ListResponse object")
        key = find_key(body, "Resources")  # RFC 7643 §2.1: attribute names are case-insensitive
        resources = body[key] if key is not None else None
        if resources is not None and not isinstance(resources, list):
            raise InvalidResponseError(f"{where}: 'Resources' is not a list")
        envelope = {**body, key: []} if key is not None and resources is not None else body
        context = Context.RESOURCE_QUERY_RESPONSE
        validated = validate(ListResponse[model], where, envelope, context)
        return validated, resources or []

    def _read_listed(self, index: int, raw: Any) -> tuple[str | None, Account | str]:
        """(id if readable, the account or why it was rejected)."""
        try:
            account = self._account("GET /Users", raw, Context.RESOURCE_QUERY_RESPONSE)
        except InvalidResponseError as exc:
            remote_id = raw_id(raw)
            label = f"id {remote_id}" if remote_id else f"resource #{index + 1} of the page"
            return remote_id, f"{label}: {exc}"
        return account.id, account

    def _created(self, raw: Any) -> Account:
        """RFC 7644 §3.3: a create answers with the account made. Roster keeps only its id
        (the next listing reads and validates the whole account), so the answer is checked
        as far as it is read: an object with a usable id, and a single, storable value or
        none at each mapped path. Validating it with scim2-models as well cost more client
        CPU than the POST itself (docs/benchmarks.md, "A million users")."""
        where = "POST /Users"
        if not isinstance(raw, dict):
            raise InvalidResponseError(f"{where}: the body is not a User object")
        remote_id = raw_id(raw)
        if remote_id is None:
            raise InvalidResponseError(f"{where}: the User has no id that can be stored")
        return Account(id=remote_id, attributes=self._flat(where, raw))

    def _flat(self, where: str, resource: dict[str, Any]) -> dict[str, Value]:
        try:
            attributes = flatten(resource, self._paths)
        except ValueError as exc:
            raise InvalidResponseError(f"{where}: {exc}") from exc
        if bad := [p for p, v in attributes.items() if isinstance(v, str) and not storable(v)]:
            raise InvalidResponseError(
                f"{where}: a NUL or an unpaired surrogate in {', '.join(bad)}"
            )
        return attributes

    def _account(self, where: str, raw: Any, context: Context) -> Account:
        user = validate(USER_MODEL, where, raw, context)
        if not user.id:
            raise InvalidResponseError(f"{where}: the User has no id")
        if not usable_id(user.id):
            raise InvalidResponseError(f"{where}: the User's id cannot be stored")
        canonical = user.model_dump(scim_ctx=Context.DEFAULT)  # canonical names, JSON types
        return Account(id=user.id, attributes=self._flat(where, canonical))

    # -- the wire -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Every request of this connector: ``connectors.wire.Wire.send`` with SCIM's
        status check. Raises the typed errors of connectors.errors."""
        return self._wire.send(method, path, params=params, json=json, check=check_status)


def _next_page(
    params: Mapping[str, int], envelope: ListResponse[Any], received: int
) -> dict[str, int] | None:
    """The request ``ScimPaginator`` will most likely make next, or None: advance by what
    was received while that stays within totalResults."""
    try:
        total = total_results(envelope)
    except InvalidResponseError:
        return None  # the paginator raises it in its turn
    start = params["startIndex"] + received
    if received == 0 or start > total:
        return None
    return {"startIndex": start, "count": params["count"]}


class _Ahead:
    """One request made now whose outcome, value or error, is handed over later (an
    error surfaces only if the page is really wanted)."""

    def __init__(self, request: Callable[[Mapping[str, Any]], Any], params: Mapping[str, Any]):
        self._value: Any = None
        self._error: Exception | None = None
        try:
            self._value = request(params)
        except Exception as exc:
            self._error = exc

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


def _user_path(remote_id: str) -> str:
    """Ids are opaque (RFC 7643 §3.1): quote them so none can change the URL's path."""
    return f"/Users/{quote(remote_id, safe='')}"


_: type[Connector] = ScimConnector
_groups: type[GroupConnector] = ScimConnector
