"""Cut a plan into batches and apply each as one Prefect task, with the action log around it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from directory.store import Store
from tasks.apply import (
    AccountResult,
    ApplyContext,
    BatchIncomplete,
    Outcome,
    WorkItem,
    run_batch,
)
from tasks.plan import PlannedAction

#: The order actions are applied in: creates first, so that references (manager) resolve.
APPLY_ORDER = (
    PlannedAction.CREATE,
    PlannedAction.LINK,
    PlannedAction.UPDATE,
    PlannedAction.DEACTIVATE,
    PlannedAction.DELETE,
    PlannedAction.UNLINK,
)
#: accounts per apply task: a task run costs Prefect about 15 ms of client CPU, 0.03 ms
#: an account at this size; a retried batch skips the accounts it already did
BATCH_SIZE = 500
#: actions that give access; a person deactivated since the run read the directory gets none
GRANTING = (PlannedAction.CREATE, PlannedAction.LINK, PlannedAction.UPDATE)


@dataclass(frozen=True)
class Batch:
    action: PlannedAction
    index: int
    items: tuple[WorkItem, ...]


def work_items(plan: pd.DataFrame, desired: pd.DataFrame, targets: Sequence[str]) -> list[WorkItem]:
    """The plan's applicable rows (not held), each with its full desired attributes."""
    todo = plan[plan["action"].isin(list(APPLY_ORDER)) & ~plan["held"].astype(bool)]
    if todo.empty:
        return []
    attrs = desired.set_index("user_id")[list(targets)]
    wanted = attrs.loc[attrs.index.intersection(todo["user_id"].dropna())]
    by_user = dict(zip(wanted.index, wanted.to_dict(orient="records"), strict=True))
    return [
        WorkItem(
            user_id=row.user_id,
            user_name=row.user_name,
            remote_id=row.remote_id,
            action=PlannedAction(row.action),
            situation=str(row.situation),
            changes=row.changes,
            desired=by_user.get(row.user_id, {}),
            attr_hash=row.attr_hash,
        )
        for row in todo.itertuples(index=False)
    ]


def make_batches(
    items: Sequence[WorkItem], references: Sequence[str], size: int = BATCH_SIZE
) -> Iterator[Batch]:
    """Batches per action in APPLY_ORDER. Creates are ordered by reference depth (managers
    before their reports) and a batch never mixes depths, so a batch's references point at
    accounts created by earlier batches."""
    for action in APPLY_ORDER:
        chosen = [item for item in items if item.action is action]
        groups = _by_depth(chosen, references) if action is PlannedAction.CREATE else [chosen]
        index = 0
        for group in groups:
            for start in range(0, len(group), size):
                yield Batch(action, index, tuple(group[start : start + size]))
                index += 1


def _by_depth(items: list[WorkItem], references: Sequence[str]) -> list[list[WorkItem]]:
    parent = {
        item.user_id: next(
            (item.desired.get(r) for r in references if isinstance(item.desired.get(r), str)), None
        )
        for item in items
    }
    depth: dict[str, int] = {}

    def depth_of(user_id: str, seen: frozenset[str] = frozenset()) -> int:
        if user_id in depth:
            return depth[user_id]
        up = parent.get(user_id)
        value = 0 if up not in parent or up in seen else depth_of(up, seen | {user_id}) + 1
        depth[user_id] = value
        return value

    levels: dict[int, list[WorkItem]] = {}
    for item in items:
        levels.setdefault(depth_of(item.user_id), []).append(item)
    return [levels[level] for level in sorted(levels)]


@task(
    name="apply-batch",
    task_run_name="{ctx.app.name}-{batch.action}-{batch.index}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=lambda task, run, state: _is_incomplete(state),
    cache_policy=NO_CACHE,
)
def apply_batch(store: Store, ctx: ApplyContext, run_id: str, batch: Batch) -> int:
    """Apply one batch; returns how many accounts it applied. See ``tasks.apply``."""
    app = ctx.app.name
    users = [item.user_id for item in batch.items]
    done = store.succeeded_user_ids(run_id, app, batch.action.value, among=users)
    items = [item for item in batch.items if item.user_id not in done]
    if batch.action in GRANTING:
        items = _skip_offboarded(store, run_id, app, items)
    if not items:
        return 0
    if batch.action is not PlannedAction.UNLINK and not ctx.links_read:
        ctx.remote_ids = _remote_ids(store, app)
        ctx.links_read = True
    ids = store.log_actions(run_id, app, [_intent(item) for item in items])
    if batch.action is PlannedAction.UNLINK:
        results = [AccountResult(Outcome.SUCCEEDED, item.remote_id, gone=True) for item in items]
    else:
        results = run_batch(items, ctx)
    store.record_outcomes(
        [
            {
                "id": log_id,
                "outcome": r.outcome.value,
                "attempts": r.attempts,
                "error": r.error,
                "remote_id": r.remote_id or item.remote_id,
            }
            for log_id, item, r in zip(ids, items, results, strict=True)
        ]
    )
    _write_links(store, app, batch.action, items, results)
    _remember_links(ctx, batch.action, items, results)
    retry = sum(r.transient for r in results)
    if retry:
        raise BatchIncomplete(f"{retry} of {len(items)} accounts failed transiently")
    return len(items)


def _skip_offboarded(store: Store, run_id: str, app: str, items: list[WorkItem]) -> list[WorkItem]:
    """Leave out people deactivated since this run read the directory (an offboarding ran
    meanwhile): writing their old, active state would undo it. Logged as skipped."""
    gone = store.deactivated_during(run_id, (item.user_id for item in items))
    if not gone:
        return items
    store.log_actions(
        run_id,
        app,
        [
            {**_intent(item), "outcome": Outcome.SKIPPED.value, "error": OFFBOARDED}
            for item in items
            if item.user_id in gone
        ],
    )
    return [item for item in items if item.user_id not in gone]


OFFBOARDED = "deactivated in the directory during this run; the next run deprovisions them"


def _is_incomplete(state: object) -> bool:
    try:
        state.result()  # type: ignore[attr-defined]
    except BatchIncomplete:
        return True
    except Exception:
        return False
    return False


def _remote_ids(store: Store, app: str) -> dict[str, str]:
    links = store.read_links(app)
    return dict(zip(links["user_id"], links["remote_id"], strict=True))


def _remember_links(
    ctx: ApplyContext,
    action: PlannedAction,
    items: Sequence[WorkItem],
    results: Sequence[AccountResult],
) -> None:
    """What ``_write_links`` just stored, in ``ctx.remote_ids`` too: later batches resolve
    references to accounts this one created without reading every link again (which made
    an apply of N accounts read N²/250 links)."""
    if not ctx.links_read:
        return
    for item, result in zip(items, results, strict=True):
        if result.outcome not in (Outcome.SUCCEEDED, Outcome.ADOPTED):
            continue
        if result.gone or action is PlannedAction.DELETE:
            ctx.remote_ids.pop(item.user_id, None)
        elif result.remote_id is not None:
            ctx.remote_ids[item.user_id] = result.remote_id


def _intent(item: WorkItem) -> dict[str, object]:
    return {
        "user_id": item.user_id,
        "user_name": item.user_name,
        "remote_id": item.remote_id,
        "action": item.action.value,
        "situation": item.situation,
        "changes": item.changes,
        "outcome": Outcome.PENDING.value,
    }


def _write_links(
    store: Store,
    app: str,
    action: PlannedAction,
    items: Sequence[WorkItem],
    results: Sequence[AccountResult],
) -> None:
    upserts: list[dict[str, object]] = []
    removed: list[str] = []
    for item, result in zip(items, results, strict=True):
        if result.outcome not in (Outcome.SUCCEEDED, Outcome.ADOPTED):
            continue
        if result.gone or action is PlannedAction.DELETE:
            removed.append(item.user_id)
        elif action is PlannedAction.DEACTIVATE:
            upserts.append(_link(item.user_id, result.remote_id, None, "deactivated"))
        else:
            upserts.append(_link(item.user_id, result.remote_id, item.attr_hash, "active"))
    if upserts:
        store.upsert_links(app, upserts)
    if removed:
        store.delete_links(app, removed)


def _link(user_id: str, remote_id: str | None, attr_hash: str | None, status: str) -> dict:
    return {"user_id": user_id, "remote_id": remote_id, "attr_hash": attr_hash, "status": status}
