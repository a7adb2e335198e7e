"""A declarative REST app: users over an HTTP JSON API described in ``roster.yaml``
(``directory.appkinds.rest``), over one shared, thread-safe ``httpx.Client``.

Every request goes through ``RestConnector._request``, which hands it to the shared
``connectors.wire.Wire`` (dry-run refusal, the app's rate budget, retries of 429,
502-504 and network failures honouring Retry-After, per-thread attempt counts, logging
of method, path and status only), then checks the status against the request's
expected ones. Accounts are read one by one, so one malformed account is a per-account
error in ``AccountPage.errors`` and spoils only itself.

"Active" is read the way the app's settings say: a boolean or status field, or, for
apps that cannot deactivate, from the deprovisioning strategy (roles stripped, a lock
status). So the plan sees a deprovisioned account as inactive, and a second run makes
no writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from connectors.base import Account, AccountPage, Attributes, Connector
from connectors.errors import (
    BadRequestError,
    ConflictError,
    InvalidResponseError,
    NotFoundError,
)
from connectors.http import raise_for_status, read_json
from connectors.ratelimit import RateLimiter, Traffic, TrafficStats
from connectors.redact import redact
from connectors.rest.accounts import AccountCodec, read_id, same
from connectors.rest.fields import (
    merged_body,
    read_path,
    render_body,
    render_path,
    render_query,
    write_path,
)
from connectors.rest.pagination import Page, PageRequest, paginator_for
from connectors.wire import OperationStats, Wire
from directory.appkinds.rest import RestAppConfig
from directory.appkinds.rest_parts import (
    BodyMode,
    DeleteStrategy,
    FindStyle,
    RequestConfig,
)

logger = logging.getLogger("roster.connectors.rest")

#: the reasons apps put in error bodies, in the order they are quoted
ERROR_KEYS = ("errcode", "error", "reason", "message", "detail")


class RestConnector:
    """Users of one REST app, as flat attribute maps keyed by the app's attribute names."""

    def __init__(
        self,
        client: httpx.Client,
        app: RestAppConfig,
        *,
        dry_run: bool = False,
        rate_limiter: RateLimiter | Traffic | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = app.name
        self._app = app
        self._wire = Wire(
            app.name,
            client,
            logger=logger,
            dry_run=dry_run,
            rate_limiter=rate_limiter,
            max_retries=app.max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            sleep=sleep,
        )
        self._accounts = AccountCodec(app)

    # -- attempt accounting -------------------------------------------------------------

    @property
    def dry_run(self) -> bool:
        return self._wire.dry_run

    @property
    def last_operation(self) -> OperationStats:
        return self._wire.last_operation

    @property
    def traffic_stats(self) -> TrafficStats:
        """What the app's traffic control did so far: 429s, waits, where concurrency settled."""
        return self._wire.traffic_stats

    @property
    def last_attempts(self) -> int:
        """HTTP sends of the calling thread's most recent public call, retries included."""
        return self.last_operation.attempts

    # -- operations (connectors.base.Connector) -----------------------------------------

    def list_accounts(self) -> Iterator[AccountPage]:
        self._wire.begin()
        yield from self._pages(self._app.listing.params)

    def find_account(self, attribute: str, value: str) -> Account | None:
        self._wire.begin()
        return self._find(attribute, value)

    def get_account(self, remote_id: str) -> Account:
        self._wire.begin()
        return self._accounts.read_one(
            f"GET {self._app.get_request.path}", self._get_raw(remote_id)
        )

    def create_account(self, attributes: Attributes) -> Account:
        """ConflictError when the account exists: the caller finds it and adopts it."""
        self._wire.begin()
        request = self._app.requests.create
        if request is None:
            raise BadRequestError(f"app {self.name}: requests.create is not configured")
        values = self._accounts.template_values(attributes)
        path = render_path(request.path, values)
        if request.if_absent and self._exists(path):
            raise ConflictError(f"{request.method} {path}: the account exists already", status=409)
        body = self._body(request, self._accounts.writes(attributes), values, None)
        response = self._call(request, path, body)
        return self._created(request, path, response, attributes)

    def _find(self, attribute: str, value: str) -> Account | None:
        codec = self._accounts.codec(attribute)
        find = self._app.find
        style = find.style if find.attribute in (None, attribute) else FindStyle.LIST
        if style is FindStyle.PATH:
            assert find.path is not None
            candidates = self._find_by_path(render_path(find.path, {"value": codec.encode(value)}))
        else:
            params = dict(self._app.listing.params)
            if style is FindStyle.QUERY:
                assert find.param is not None
                params[find.param] = render_query(find.template, str(codec.encode(value)))
            candidates = [a for page in self._pages(params) for a in page.accounts]
        found = [a for a in candidates if same(a.attributes.get(attribute), value)]
        if len(found) > 1:
            # Not an HTTP 409, but the same meaning: the account is disputed, do not guess.
            raise ConflictError(f"{len(found)} accounts of app {self.name} match {attribute}")
        return found[0] if found else None

    def update_account(self, remote_id: str, changes: Attributes, current: Attributes) -> None:
        self._wire.begin()
        changes = dict(changes)
        active = changes.pop("active", None)
        if active is True and self._app.requests.reactivate is not None:
            self._send(self._app.requests.reactivate, remote_id, {}, {**current, "active": True})
            active = None
        writes = self._accounts.writes(changes)
        if isinstance(active, bool):
            writes = self._accounts.active_writes(active, {**current, **changes}) | writes
        if writes:
            request = self._app.requests.update
            if request is None:
                raise BadRequestError(f"app {self.name}: requests.update is not configured")
            self._send(request, remote_id, writes, {**current, **changes})

    def deactivate_account(self, remote_id: str) -> None:
        self._wire.begin()
        requests = self._app.requests
        if requests.deactivate is not None:
            self._send(requests.deactivate, remote_id, {}, {"active": False})
            return
        if isinstance(self._app.deprovision_strategy, DeleteStrategy) or requests.update is None:
            raise BadRequestError(f"app {self.name} cannot deactivate (deprovision_strategy)")
        writes = self._accounts.active_writes(False, {})
        self._send(requests.update, remote_id, writes, {"active": False})

    def delete_account(self, remote_id: str) -> None:
        self._wire.begin()
        request = self._app.requests.delete
        if request is None:
            raise BadRequestError(f"app {self.name}: requests.delete is not configured")
        self._send(request, remote_id, {}, {})

    def close(self) -> None:
        self._wire.close()

    # -- listing ---------------------------------------------------------------------------

    def _pages(self, params: Mapping[str, str]) -> Iterator[AccountPage]:
        listing = self._app.listing
        paginator = paginator_for(
            listing.pagination,
            listing.path,
            params,
            self._app.page_size,
            self._wire.client.base_url,
        )
        seen: set[str] = set()
        request: PageRequest | None = paginator.first()
        while request is not None:
            label = f"{listing.path} (page)" if request.url.startswith("http") else listing.path
            # None, not {}: httpx replaces a URL's query with an empty params mapping
            query = request.params or None
            response = self._request("GET", request.url, params=query, label=label)
            body = read_json("GET", label, response)
            items = read_path(body, listing.items)
            if not isinstance(items, list):
                where = f"'{listing.items}'" if listing.items else "the body"
                raise InvalidResponseError(f"GET {label}: {where} is not a list of accounts")
            page, fresh = self._accounts.read_page(items, seen)
            yield page
            request = paginator.next(Page(response, body, len(items), fresh == 0 and bool(items)))

    def _find_by_path(self, path: str) -> list[Account]:
        try:
            response = self._request("GET", path)
        except NotFoundError:
            return []
        account = self._accounts.read(f"GET {path}", read_json("GET", path, response), listed=True)
        return [account] if account is not None else []

    # -- reading accounts -------------------------------------------------------------------

    def _send(
        self,
        request: RequestConfig,
        remote_id: str,
        writes: Mapping[str, Any],
        attributes: Attributes,
    ) -> httpx.Response:
        values = {**self._accounts.template_values(attributes), "id": remote_id}
        path = render_path(request.path, values)
        return self._call(request, path, self._body(request, writes, values, remote_id))

    def _body(
        self,
        request: RequestConfig,
        writes: Mapping[str, Any],
        values: Mapping[str, Any],
        remote_id: str | None,
    ) -> Any:
        if request.body is None:
            return None
        if request.body == BodyMode.MAPPED:
            body: dict[str, Any] = {}
            for path, value in writes.items():
                write_path(body, path, value)
            return body
        if request.body == BodyMode.MERGED:
            assert remote_id is not None  # the settings refuse merged bodies on create
            return merged_body(self._get_raw(remote_id), writes)
        return render_body(request.body, values)

    def _get_raw(self, remote_id: str) -> Any:
        request = self._app.get_request
        path = render_path(request.path, {"id": remote_id})
        return read_json("GET", path, self._call(request, path))

    def _exists(self, path: str) -> bool:
        try:
            self._request("GET", path)
        except NotFoundError:
            return False
        return True

    def _created(
        self, request: RequestConfig, path: str, response: httpx.Response, attributes: Attributes
    ) -> Account:
        """The new account's id from the response, or, where the app answers without
        one (204, or an upsert's empty 201), found again by its key."""
        raw = read_json(request.method, path, response) if response.content.strip() else None
        remote_id = read_id(raw, self._app.listing.id) if isinstance(raw, dict) else None
        key = attributes.get(self._app.key)
        if (
            remote_id is None
            and self._app.listing.id == self._accounts.key.path
            and isinstance(key, str)
        ):
            remote_id = str(self._accounts.key.encode(key))  # keyed by name: the id is the key
        if remote_id is not None:
            return Account(remote_id, dict(attributes))
        found = self._find(self._app.key, key) if isinstance(key, str) else None
        if found is None:
            raise InvalidResponseError(f"{request.method} {path}: created, but not found by key")
        return found

    # -- the wire ----------------------------------------------------------------------------

    def _call(self, request: RequestConfig, path: str, body: Any = None) -> httpx.Response:
        return self._request(request.method, path, json=body, ok=request.ok)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        ok: Sequence[int] = (),
        label: str | None = None,
    ) -> httpx.Response:
        """Every request of this connector: ``connectors.wire.Wire.send`` with the generic
        status check, then the request's expected statuses (``ok``; empty: any 2xx)."""
        response = self._wire.send(
            method, path, params=params, json=json, check=_check, label=label
        )
        if ok and response.status_code not in ok:
            raise InvalidResponseError(
                f"{method} {label or path}: unexpected status {response.status_code}"
                f" (expected {', '.join(map(str, ok))})",
                status=response.status_code,
            )
        return response


def _check(method: str, path: str, response: httpx.Response) -> None:
    """connectors.http.raise_for_status, with the app's own words from its error body."""
    if response.is_success:
        return
    raise_for_status(method, path, response, reason=_error_reason(response))


def _error_reason(response: httpx.Response) -> str | None:
    """Redacted before it is cut short: an app may quote the request's credentials."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    parts = [str(body[k]) for k in ERROR_KEYS if isinstance(body.get(k), str | int)]
    return redact(": ".join(parts))[:200] or None


_: type[Connector] = RestConnector
