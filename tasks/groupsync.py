"""An app's groups, kept after its accounts: read the app's groups, plan (``tasks.groups``),
guard, apply, and say what happened, as one Prefect task per app.

It runs after the accounts are applied, so people created this run are added to their
groups in the same run. Every write is logged in the action log (``group-*`` actions,
situation ``group``) with its outcome. A group whose write fails is reported and left for
the next run; the other groups go on. A crash between creating an app group and linking
it is safe: the next run finds the group by name and adopts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.base import GroupConnector
from connectors.errors import AuthError, ConnectorError, NotFoundError
from directory.config import AppConfig, Safety
from directory.store import Store
from tasks.groups import (
    GroupAction,
    GroupInputs,
    guard_groups,
    has_writes,
    plan_groups,
    release_held_groups,
)

#: shown members per report cell; the action log keeps them all
SHOWN_MEMBERS = 10

GROUP_SUMMARY_KEYS = (
    "groups_created",
    "groups_linked",
    "groups_renamed",
    "groups_deleted",
    "members_added",
    "members_removed",
    "groups_failed",
    "groups_held",
)


@dataclass(frozen=True)
class DirectoryGroups:
    """The directory's groups as one sync reads them once for every app."""

    groups: pd.DataFrame  # group_id, name
    members: pd.DataFrame  # group_id, user_id (nested flattened)

    @cached_property
    def _names_by_user(self) -> dict[str, frozenset[str]]:
        return self._group_names()

    def names_by_user(self) -> dict[str, frozenset[str]]:
        return self._names_by_user

    def _group_names(self) -> dict[str, frozenset[str]]:
        """user_id -> the names of their groups, for ``{groups: ...}`` mapping entries."""
        names = dict(zip(self.groups["group_id"], self.groups["name"], strict=True))
        result: dict[str, set[str]] = {}
        for group_id, user_id in zip(
            self.members["group_id"], self.members["user_id"], strict=True
        ):
            if group_id in names:
                result.setdefault(str(user_id), set()).add(str(names[group_id]))
        return {user: frozenset(groups) for user, groups in result.items()}


@dataclass
class GroupResult:
    plan: pd.DataFrame
    summary: dict[str, int]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@task(name="groups", task_run_name="groups-{app.name}", cache_policy=NO_CACHE)
def sync_groups(
    app: AppConfig,
    connector: GroupConnector,
    store: Store,
    run_id: str,
    directory: DirectoryGroups,
    in_scope: Sequence[str],
    users: pd.DataFrame,
    safety: Safety,
    *,
    dry_run: bool,
    account_hold: Sequence[str] = (),
    approve_held: bool = False,
) -> GroupResult:
    """Bring the app's groups in line with the directory's (``app.push_groups``).
    ``users``: the directory's users (``user_id``, ``user_name``), for names in reports."""
    push = app.push_groups
    assert push is not None
    links = store.read_links(app.name)  # after this run's account writes
    names = _user_names(links, users)
    inputs = GroupInputs(
        groups=directory.groups,
        members=directory.members,
        assigning=store.read_app_groups(app.name),
        accounts=_accounts(links, in_scope),
    )
    app_groups = [group for page in connector.list_groups() for group in page]
    plan, notes = plan_groups(inputs, push, app_groups, store.read_group_links(app.name))
    plan, reasons = guard_groups(
        plan, directory_groups=len(directory.groups), safety=safety, account_hold=account_hold
    )
    if approve_held and reasons:
        plan = release_held_groups(plan)
        reasons = [f"approved: {reason}" for reason in reasons]
    outcomes = {} if dry_run else apply_groups(store, run_id, app, connector, plan, names)
    plan = plan.assign(outcome=[outcomes.get(i, (None, None))[0] for i in plan.index])
    plan = plan.assign(error=[outcomes.get(i, (None, None))[1] for i in plan.index])
    return GroupResult(
        plan,
        summarize_groups(plan, dry_run=dry_run),
        group_rows(app.name, plan, names),
        notes + reasons,
    )


def _accounts(links: pd.DataFrame, in_scope: Sequence[str]) -> dict[str, str]:
    """user_id -> account id for the people in scope whose account Roster manages."""
    active = links[(links["status"] == "active") & links["user_id"].isin(list(in_scope))]
    return dict(zip(active["user_id"], active["remote_id"], strict=True))


def _user_names(links: pd.DataFrame, users: pd.DataFrame) -> dict[str, str]:
    """account id -> the person's user_name, so reports name people, not ids."""
    named = links.merge(users[["user_id", "user_name"]], on="user_id", how="inner")
    return dict(zip(named["remote_id"], named["user_name"], strict=True))


# -- apply ---------------------------------------------------------------------------------


def apply_groups(
    store: Store,
    run_id: str,
    app: AppConfig,
    connector: GroupConnector,
    plan: pd.DataFrame,
    names: Mapping[str, str],
) -> dict[Any, tuple[str, str | None]]:
    """Apply each row that writes; returns plan index -> (outcome, error). An app that
    refuses the credentials stops the rest (they would fail the same way)."""
    push = app.push_groups
    assert push is not None
    outcomes: dict[Any, tuple[str, str | None]] = {}
    for index, row in plan.iterrows():
        if not has_writes(row) or row["action"] == GroupAction.CONFLICT:
            if row["action"] == GroupAction.UNLINK:
                store.delete_group_links(app.name, [int(row["group_id"])])
            continue
        if row["held"] and row["action"] == GroupAction.DELETE:
            continue
        log_id = store.log_actions(run_id, app.name, [_intent(row, names)])[0]
        try:
            _apply_row(store, app.name, connector, row, push.members_per_request)
        except AuthError:
            store.record_outcomes(
                [{"id": log_id, "outcome": "failed", "error": "credentials refused"}]
            )
            raise
        except ConnectorError as exc:
            store.record_outcomes([{"id": log_id, "outcome": "failed", "error": str(exc)}])
            outcomes[index] = ("failed", str(exc))
            continue
        store.record_outcomes([{"id": log_id, "outcome": "succeeded"}])
        outcomes[index] = ("succeeded", None)
    return outcomes


def _apply_row(
    store: Store, app: str, connector: GroupConnector, row: pd.Series, per_request: int
) -> None:
    action, group_id = row["action"], int(row["group_id"])
    remote_id = row["remote_id"]
    if action == GroupAction.DELETE:
        with suppress(NotFoundError):  # already gone: what was wanted
            connector.delete_group(str(remote_id))
        store.delete_group_links(app, [group_id])
        return
    if action == GroupAction.CREATE:
        remote_id = connector.create_group(str(row["display_name"])).id
    elif row["old_name"] is not None and row["old_name"] != row["display_name"]:
        connector.rename_group(str(remote_id), str(row["display_name"]))  # rename, or adopt
    if action in (GroupAction.CREATE, GroupAction.LINK, GroupAction.RENAME):
        link = {"group_id": group_id, "remote_id": remote_id, "display_name": row["display_name"]}
        store.upsert_group_links(app, [link])
    remove = () if row["held"] else row["remove"]
    if row["add"] or remove:
        connector.change_members(str(remote_id), row["add"], remove, per_request)


def _intent(row: pd.Series, names: Mapping[str, str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if row["action"] == GroupAction.RENAME:
        changes["displayName"] = [row["old_name"], row["display_name"]]
    if row["add"]:
        changes["added"] = [names.get(m, m) for m in row["add"]]
    if row["remove"] and not row["held"]:
        changes["removed"] = [names.get(m, m) for m in row["remove"]]
    action = "members" if row["action"] == GroupAction.NONE else str(row["action"])
    return {
        "user_name": row["display_name"],
        "remote_id": row["remote_id"],
        "action": f"group-{action}",
        "situation": "group",
        "changes": changes or None,
        "outcome": "pending",
    }


# -- report ---------------------------------------------------------------------------------


def summarize_groups(plan: pd.DataFrame, *, dry_run: bool) -> dict[str, int]:
    """Counts per kind of group change; in a dry run, as if applied."""
    done = plan["outcome"].eq("succeeded") | pd.Series(dry_run, index=plan.index)
    action = plan["action"]
    removed = plan["remove"].map(len).where(~plan["held"], 0)
    return {
        "groups_created": int(((action == GroupAction.CREATE) & done).sum()),
        "groups_linked": int(((action == GroupAction.LINK) & done).sum()),
        "groups_renamed": int(((action == GroupAction.RENAME) & done).sum()),
        "groups_deleted": int(((action == GroupAction.DELETE) & done & ~plan["held"]).sum()),
        "members_added": int(plan.loc[done, "add"].map(len).sum()),
        "members_removed": int(removed[done].sum()),
        "groups_failed": int(plan["outcome"].eq("failed").sum()),
        "groups_held": int(plan["held"].sum()),
    }


def group_rows(app: str, plan: pd.DataFrame, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Drift-table rows: one per group change, membership drift as the people added and
    removed (``report``-policy extras as action ``report``)."""
    rows: list[dict[str, Any]] = []
    for r in plan.itertuples(index=False):
        base = {
            "app": app,
            "user": f"group {r.display_name}",
            "remote_id": r.remote_id,
            "situation": "group",
            "origin": "directory" if r.action != GroupAction.NONE else "app",
            "action": f"group-{r.action}",
            "status": _status(r),
            "attempts": 0,
            "error": r.error or r.note,
        }
        if r.action == GroupAction.RENAME:
            rows.append(
                {**base, "attribute": "displayName", "old": r.old_name, "new": r.display_name}
            )
        elif r.action not in (GroupAction.NONE,):
            rows.append({**base, "attribute": None, "old": None, "new": None})
        if r.add or r.remove:
            rows.append(
                {
                    **base,
                    "action": "group-members",
                    "attribute": "members",
                    "old": _shown(r.remove, names, "-"),
                    "new": _shown(r.add, names, "+"),
                }
            )
        if r.reported:
            shown = _shown(r.reported, names, "-")
            rows.append(
                {**base, "action": "report", "attribute": "members", "old": shown, "new": None}
            )
    return rows


def _status(row: Any) -> str:
    if row.held:
        return "held"
    return str(row.outcome or "planned")


def _shown(members: Sequence[str], names: Mapping[str, str], sign: str) -> str | None:
    if not members:
        return None
    shown = sorted(names.get(m, m) for m in members)
    text = ", ".join(f"{sign}{name}" for name in shown[:SHOWN_MEMBERS])
    more = len(shown) - SHOWN_MEMBERS
    return f"{text} (+{more} more)" if more > 0 else text
