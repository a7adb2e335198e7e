"""Groups in apps, planned: which directory groups the app should hold, with which
members, against the groups it has. Pure: frames and lists in, a frame out.

One row per group, in the order the apply step works through them::

    create   no app group yet: create it, then add its members
    link     an app group of the same name that Roster did not create: adopt it
    rename   the directory group was renamed (or ``rename:`` changed)
    none     the group is there: only its members may change
    delete   the directory group is gone, or no longer pushed (``on_removed: delete``)
    unlink   the same, with ``on_removed: keep``, or the app group is already gone
    conflict several app groups carry the name: nothing is written, it is reported

``add`` and ``remove`` hold account ids. Members are the directory group's members
(nested groups flattened) who have an account Roster manages in the app; anyone else in
the app group is removed, unless ``members: report`` (then ``remove`` is only shown).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

from connectors.base import AppGroup
from directory.config import GroupPush, Safety
from tasks.guard import mark_held


class GroupAction(StrEnum):
    CREATE = "create"
    LINK = "link"
    RENAME = "rename"
    NONE = "none"
    DELETE = "delete"
    UNLINK = "unlink"
    CONFLICT = "conflict"


GROUP_PLAN_COLUMNS = [
    "group_id",
    "display_name",
    "remote_id",
    "action",
    "old_name",
    "add",
    "remove",
    "reported",
    "held",
    "note",
]


@dataclass(frozen=True)
class GroupInputs:
    """The directory's side: its groups, memberships (nested flattened) and what to push."""

    groups: pd.DataFrame  # group_id, name
    members: pd.DataFrame  # group_id, user_id
    #: ids of the groups that assign this app (for ``push: assigned``)
    assigning: Set[int]
    #: user_id -> account id, for the people in scope who have an account Roster manages
    accounts: Mapping[str, str]


def pushed_groups(inputs: GroupInputs, push: GroupPush) -> tuple[pd.DataFrame, list[str]]:
    """The directory groups the app should hold; and notes for named groups that do not
    exist in the directory."""
    groups = inputs.groups
    if push.select == "assigned":
        return groups[groups["group_id"].isin(list(inputs.assigning))], []
    wanted = {name.casefold() for name in push.select}
    chosen = groups[groups["name"].str.casefold().isin(wanted)]
    found = set(chosen["name"].str.casefold())
    return chosen, [
        f"push_groups.select names {name!r}, which is not a directory group"
        for name in push.select
        if name.casefold() not in found
    ]


def desired_members(inputs: GroupInputs, group_ids: Iterable[int]) -> dict[int, frozenset[str]]:
    """group_id -> the account ids its members have in the app."""
    members = inputs.members[inputs.members["group_id"].isin(list(group_ids))]
    result: dict[int, set[str]] = {int(g): set() for g in group_ids}
    for group_id, user_id in zip(members["group_id"], members["user_id"], strict=True):
        remote = inputs.accounts.get(str(user_id))
        if remote is not None:
            result[int(group_id)].add(remote)
    return {g: frozenset(m) for g, m in result.items()}


def plan_groups(
    inputs: GroupInputs,
    push: GroupPush,
    app_groups: Sequence[AppGroup],
    links: pd.DataFrame,
) -> tuple[pd.DataFrame, list[str]]:
    """The group plan (``GROUP_PLAN_COLUMNS``) and notes for people to read."""
    chosen, notes = pushed_groups(inputs, push)
    members = desired_members(inputs, chosen["group_id"])
    by_id = {g.id: g for g in app_groups}
    linked = {int(g): str(r) for g, r in zip(links["group_id"], links["remote_id"], strict=True)}
    taken = set(linked.values())
    by_name: dict[str, list[AppGroup]] = {}
    for group in app_groups:
        if group.id not in taken:
            by_name.setdefault(group.display_name.casefold(), []).append(group)
    rows: list[dict[str, object]] = []
    for group_id, name in zip(chosen["group_id"], chosen["name"], strict=True):
        wanted = push.app_name(str(name))
        current = by_id.get(linked.get(int(group_id), ""))
        if current is None:
            candidates = by_name.get(wanted.casefold(), [])
            if len(candidates) > 1:
                note = f"{len(candidates)} app groups are named {wanted!r}: nothing written"
                rows.append(_row(group_id, wanted, None, GroupAction.CONFLICT, note=note))
                continue
            current = candidates[0] if candidates else None
            action = GroupAction.LINK if current is not None else GroupAction.CREATE
        elif current.display_name != wanted:
            action = GroupAction.RENAME
        else:
            action = GroupAction.NONE
        rows.append(
            _membership_row(group_id, wanted, current, action, members[int(group_id)], push)
        )
    pushed = set(int(g) for g in chosen["group_id"])
    for group_id, remote_id in linked.items():
        if group_id not in pushed:
            rows.append(_removed_row(group_id, by_id.get(remote_id), remote_id, links, push))
    return _frame(rows), notes


def _membership_row(
    group_id: object,
    wanted: str,
    current: AppGroup | None,
    action: GroupAction,
    members: frozenset[str],
    push: GroupPush,
) -> dict[str, object]:
    have = current.members if current is not None else frozenset()
    extra = tuple(sorted(have - members))
    enforce = push.members == "enforce"
    return _row(
        group_id,
        wanted,
        current.id if current is not None else None,
        action,
        old_name=current.display_name if current is not None else None,
        add=tuple(sorted(members - have)),
        remove=extra if enforce else (),
        reported=() if enforce else extra,
    )


def _removed_row(
    group_id: int, current: AppGroup | None, remote_id: str, links: pd.DataFrame, push: GroupPush
) -> dict[str, object]:
    name = str(links.loc[links["group_id"] == group_id, "display_name"].iloc[0])
    if current is None:
        note = "the app group is gone: Roster forgets it"
        return _row(group_id, name, remote_id, GroupAction.UNLINK, note=note)
    if push.on_removed == "keep":
        note = "no longer a pushed directory group: left in the app (on_removed: keep)"
        return _row(group_id, current.display_name, remote_id, GroupAction.UNLINK, note=note)
    note = "no longer a pushed directory group"
    return _row(group_id, current.display_name, remote_id, GroupAction.DELETE, note=note)


def _row(
    group_id: object,
    display_name: str,
    remote_id: str | None,
    action: GroupAction,
    *,
    old_name: str | None = None,
    add: tuple[str, ...] = (),
    remove: tuple[str, ...] = (),
    reported: tuple[str, ...] = (),
    note: str | None = None,
) -> dict[str, object]:
    return {
        "group_id": int(str(group_id)),
        "display_name": display_name,
        "remote_id": remote_id,
        "action": action,
        "old_name": old_name,
        "add": add,
        "remove": remove,
        "reported": reported,
        "held": False,
        "note": note,
    }


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=GROUP_PLAN_COLUMNS).astype({"held": bool})


def has_writes(row: Mapping[str, object]) -> bool:
    """Whether applying the row sends anything to the app."""
    action = row["action"]
    if action in (GroupAction.CREATE, GroupAction.LINK, GroupAction.RENAME, GroupAction.DELETE):
        return True
    return bool(row["add"]) or bool(row["remove"])


# -- the safety hold --------------------------------------------------------------------


def guard_groups(
    plan: pd.DataFrame,
    *,
    directory_groups: int,
    safety: Safety,
    account_hold: Sequence[str] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Hold what takes access away in bulk: deleting groups while the directory lists
    none, or more than the safety share of the app's linked groups; and every member
    removal while the account plan itself is held (its people may be missing only
    because the directory extract is)."""
    deletes = plan["action"] == GroupAction.DELETE
    linked = int(plan["remote_id"].notna().sum())
    reasons: list[str] = []
    if deletes.any() and directory_groups == 0:
        reasons.append(f"the directory lists no groups while {linked} app groups are linked")
    elif int(deletes.sum()) > safety.min_deprovision_count and (
        int(deletes.sum()) > safety.max_deprovision_share * max(linked, 1)
    ):
        reasons.append(f"{int(deletes.sum())} of {linked} linked app groups would be deleted")
    held = deletes if reasons else pd.Series(False, index=plan.index)
    removals = plan["remove"].map(bool)
    if account_hold and removals.any():
        reasons.append("member removals wait while the app's account changes are held")
        held = held | removals
    return mark_held(plan, held, reasons), reasons


def release_held_groups(plan: pd.DataFrame) -> pd.DataFrame:
    if not plan["held"].any():
        return plan
    plan = plan.copy()
    plan["held"] = False
    return plan
