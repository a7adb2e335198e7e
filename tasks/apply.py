"""Apply a plan: one Prefect task per app x action x batch, plain Python per account.

A task run costs ~15 ms of client time and the local server records it seconds later
(../shared/PREFECT-NOTES.md), so accounts are never tasks. Inside a batch, accounts run
in a thread pool over the app's one connector. Each batch:

1. skips accounts this run already applied (a Prefect retry re-runs only the rest);
2. writes an intent (``pending``) to the action log for each account, in one insert;
3. sends the requests, mapping each failure through ``ERROR_POLICY``;
4. records outcomes and links in bulk;
5. raises ``BatchIncomplete`` if some accounts failed transiently, so Prefect retries it.

Creates cannot duplicate: the plan matched before creating, a 409 adopts the existing
account, and a crash before the link is written is repaired by the next run's matching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from connectors.base import Account, Connector, Value
from connectors.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ConnectorError,
    DryRunError,
    InvalidResponseError,
    NotFoundError,
    TLSError,
    TransientError,
)
from directory.config import Action, AppConfig, MissingPolicy
from tasks.plan import PlannedAction, PlanRules, diff_attributes, split_changes


class Disposition(StrEnum):
    RETRY = "retry"  # Prefect retries the batch; the next run retries the account
    ADOPT = "adopt"  # 409 on create: find the existing account and link it
    RECREATE = "recreate"  # 404 on update: create again, or report, by the app's policy
    RECORD = "record"  # the app rejects this account: record it, go on with the others
    STOP_APP = "stop_app"  # every account would fail the same way: stop this app


#: What each connector error means for the run, in one place.
ERROR_POLICY: dict[type[ConnectorError], Disposition] = {
    TransientError: Disposition.RETRY,
    ConflictError: Disposition.ADOPT,
    NotFoundError: Disposition.RECREATE,
    BadRequestError: Disposition.RECORD,
    InvalidResponseError: Disposition.RECORD,
    AuthError: Disposition.STOP_APP,
    DryRunError: Disposition.STOP_APP,
    TLSError: Disposition.STOP_APP,
}


def disposition(exc: ConnectorError) -> Disposition:
    for kind in type(exc).__mro__:
        if kind in ERROR_POLICY:
            return ERROR_POLICY[kind]
    return Disposition.RECORD


class Outcome(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    ADOPTED = "adopted"
    FAILED = "failed"
    HELD = "held"
    SKIPPED = "skipped"


class AppStopped(Exception):
    """An app-level failure (credentials refused): the app's remaining batches are skipped."""


class BatchIncomplete(Exception):
    """Some accounts of a batch failed transiently; Prefect retries the batch (done ones skip)."""


@dataclass
class AccountResult:
    outcome: Outcome
    remote_id: str | None = None
    attempts: int = 0
    error: str | None = None
    transient: bool = False
    gone: bool = False


@dataclass
class ApplyContext:
    """What a batch needs besides its rows; the connector is shared by the batch's threads."""

    app: AppConfig
    connector: Connector
    rules: PlanRules
    #: directory user id -> remote id, for reference attributes (manager): read from the
    #: links by the first batch that needs it, then kept current by each batch's writes
    remote_ids: dict[str, str] = field(default_factory=dict)
    links_read: bool = False


@dataclass(frozen=True)
class WorkItem:
    """One account to apply: the plan row plus the full desired attributes (for create/PUT)."""

    user_id: str
    user_name: str | None
    remote_id: str | None
    action: PlannedAction
    situation: str
    changes: dict[str, list[Any]] | None
    desired: dict[str, Value]
    attr_hash: str | None


def apply_account(item: WorkItem, ctx: ApplyContext) -> AccountResult:
    """Apply one account; never raises for account-level failures."""
    counter = _Attempts(ctx.connector)
    try:
        result = _dispatch(item, ctx, counter)
    except AuthError as exc:
        raise AppStopped(f"app {ctx.app.name}: {exc}") from exc
    except ConnectorError as exc:
        if disposition(exc) is Disposition.STOP_APP:
            raise AppStopped(f"app {ctx.app.name}: {exc}") from exc
        result = AccountResult(
            Outcome.FAILED,
            error=str(exc),
            transient=disposition(exc) is Disposition.RETRY,
        )
    result.attempts = counter.total
    return result


def _dispatch(item: WorkItem, ctx: ApplyContext, counter: _Attempts) -> AccountResult:
    c = ctx.connector
    if item.action is PlannedAction.CREATE:
        return _create(item, ctx, counter)
    if item.action in (PlannedAction.UPDATE, PlannedAction.LINK):
        assert item.remote_id is not None
        return _update(item, ctx, counter)
    assert item.remote_id is not None
    try:
        if item.action is PlannedAction.DEACTIVATE:
            counter.run(c.deactivate_account, item.remote_id)
        elif item.action is PlannedAction.DELETE:
            counter.run(c.delete_account, item.remote_id)
    except NotFoundError:
        return AccountResult(Outcome.SUCCEEDED, item.remote_id, gone=True)
    return AccountResult(Outcome.SUCCEEDED, item.remote_id)


def _create(item: WorkItem, ctx: ApplyContext, counter: _Attempts) -> AccountResult:
    payload = resolve_references(item.desired, ctx)
    try:
        account = counter.run(ctx.connector.create_account, _present(payload))
    except ConflictError:
        return _adopt(item, payload, ctx, counter)
    return AccountResult(Outcome.SUCCEEDED, account.id)


def _adopt(
    item: WorkItem, payload: dict[str, Value], ctx: ApplyContext, counter: _Attempts
) -> AccountResult:
    """RFC 7644 §3.3: 409 means the account exists. Find it by the match attributes and link it."""
    for attribute in ctx.rules.match_on:
        value = payload.get(attribute)
        if not isinstance(value, str) or not value:
            continue
        found: Account | None = counter.run(ctx.connector.find_account, attribute, value)
        if found is not None:
            _write_differences(found, payload, ctx, counter)
            return AccountResult(Outcome.ADOPTED, found.id)
    return AccountResult(
        Outcome.FAILED, error="409 on create, and no existing account matches to adopt"
    )


def _write_differences(
    found: Account, payload: dict[str, Value], ctx: ApplyContext, counter: _Attempts
) -> None:
    desired = pd.DataFrame([payload], columns=list(ctx.rules.targets))
    actual = pd.DataFrame([found.attributes], columns=list(ctx.rules.targets))
    # both sides hold app ids for references here, so they compare directly
    changes = split_changes(diff_attributes(desired, actual, ctx.rules), ctx.rules.reported)[0][0]
    if changes and Action.UPDATE in ctx.app.actions:
        news = {path: payload.get(path) for path in changes}
        counter.run(ctx.connector.update_account, found.id, news, _kept(payload, ctx.rules))


def _update(item: WorkItem, ctx: ApplyContext, counter: _Attempts) -> AccountResult:
    assert item.remote_id is not None
    if not item.changes or Action.UPDATE not in ctx.app.actions:
        return AccountResult(Outcome.SUCCEEDED, item.remote_id)
    payload = resolve_references(item.desired, ctx)
    news = {path: payload.get(path) for path in item.changes}
    try:
        counter.run(ctx.connector.update_account, item.remote_id, news, _kept(payload, ctx.rules))
    except NotFoundError:
        if ctx.app.on_missing is MissingPolicy.REPORT or Action.CREATE not in ctx.app.actions:
            return AccountResult(Outcome.FAILED, error="account no longer exists in the app")
        return _create(item, ctx, counter)
    return AccountResult(Outcome.SUCCEEDED, item.remote_id)


def _kept(payload: Mapping[str, Value], rules: PlanRules) -> dict[str, Value]:
    """The payload without ``report`` and ``ignore`` attributes: a PUT (which sends the whole
    account) keeps the app's values for them instead of writing the directory's."""
    skipped = rules.reported | rules.ignored
    return {path: value for path, value in payload.items() if path not in skipped}


def resolve_references(desired: Mapping[str, Value], ctx: ApplyContext) -> dict[str, Value]:
    """Reference attributes hold directory ids; the app wants its own ids."""
    payload = dict(desired)
    for path in ctx.rules.references:
        user_id = payload.get(path)
        payload[path] = ctx.remote_ids.get(user_id) if isinstance(user_id, str) else None
    return payload


def _present(payload: Mapping[str, Value]) -> dict[str, Value]:
    return {k: v for k, v in payload.items() if v is not None and v != ""}


class _Attempts:
    """Sums the HTTP sends (retries included) of every connector call made for one account."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.total = 0

    def run(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        finally:
            self.total += max(1, int(getattr(self.connector, "last_attempts", 1)))


def run_batch(items: Iterable[WorkItem], ctx: ApplyContext) -> list[AccountResult]:
    """Apply accounts concurrently (the app's ``concurrency``), results in input order.

    An AppStopped from any account stops the batch and propagates.
    """
    items = list(items)
    if ctx.app.concurrency == 1 or len(items) <= 1:
        return [apply_account(item, ctx) for item in items]
    with ThreadPoolExecutor(max_workers=ctx.app.concurrency) as pool:
        return list(pool.map(lambda item: apply_account(item, ctx), items))
