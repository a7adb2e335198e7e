"""The plan: a pure function from (desired, actual, links) to one row per account and what to do.

No I/O, no clock, no Prefect. Every account lands in exactly one named situation
(after midPoint's synchronization situations)::

    situation      when                                                  action
    -------------  ----------------------------------------------------  -------------------
    missing        in scope, no link, no matching account                create
    matched        in scope, no link, one account matches                link (+ update)
    in_sync        linked, attributes equal                              none
    drifted        linked, attributes differ                             update (changed only)
                   (only ``report``-policy attributes differ, or the
                   account was re-enabled by hand and ``status: report``) report
    gone           linked, the account vanished from the app             create | report | unlink
    deprovision    linked, no longer in scope (unassigned or inactive)   deactivate | delete
                   (or unlinked but Roster's own: see ``owner_keys``)
    deprovisioned  linked, out of scope, already inactive                none
    orphan         app account with no directory user                    report
    unmanaged      app account of a directory user out of scope          report
    disputed       one account for several users, or several for one     report

Actions the app does not enable become ``report`` with a note; ``guard`` may then hold
destructive ones.

Remediation (``directory.scoping.RemediationPolicy``): ``changes`` holds what is written,
``reported`` what differs in ``report``-policy attributes and is only shown; ``ignore``
attributes are not compared. An account re-enabled in the app by hand while its user is
out of scope is deactivated again (origin ``app``), or only reported under ``status: report``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from directory.config import DeprovisionMode, MissingPolicy
from directory.scoping import Remediation
from tasks.diff import attribute_hash, diff_attributes, plain_value, split_changes
from tasks.matching import AccountIndex, Matches, match_accounts
from tasks.planrules import (
    DESTRUCTIVE,
    GATES,
    PLAN_COLUMNS,
    WRITES,
    PlannedAction,
    PlanRules,
    Situation,
)

__all__ = [
    "DESTRUCTIVE",
    "PLAN_COLUMNS",
    "WRITES",
    "PlanRules",
    "PlannedAction",
    "Situation",
    "attribute_hash",
    "diff_attributes",
    "plan_changes",
    "split_changes",
]


def plan_changes(
    desired: pd.DataFrame, actual: pd.DataFrame, links: pd.DataFrame, rules: PlanRules
) -> pd.DataFrame:
    """Classify every directory user and every app account; see the module docstring.

    ``desired``: user_id, user_name, in_scope and one column per target (``build_desired``).
    ``actual``: remote_id and one column per target, as the app reports them.
    ``links``: user_id, remote_id, attr_hash, status.
    Returns PLAN_COLUMNS plus ``attr_hash`` (hash of the desired attributes), one row per
    account or user concerned; users out of scope with nothing in the app are left out.
    """
    actual = _with_targets(actual, rules.targets)
    accounts = AccountIndex(actual["remote_id"])
    link_at = accounts.positions(links["remote_id"])
    live = links[accounts.contains(links["remote_id"], link_at)]
    dead_users = set(links.loc[~links.index.isin(live.index), "user_id"])
    live_at = None if link_at is None else link_at[link_at >= 0]

    desired = _with_vanished_users(desired, live)
    linked_columns = live[["user_id", "remote_id", "attr_hash", "status"]].rename(
        columns={"attr_hash": "last_hash", "status": "link_status"}
    )
    if live_at is not None:  # carried along, so linked rows find their account by position
        linked_columns[_AT] = live_at
    joined = desired.merge(linked_columns, on="user_id", how="left")
    is_linked = joined["remote_id"].notna()
    unlinked = joined[~is_linked]
    free = actual[~accounts.claimed(live["remote_id"], live_at)]
    match = match_accounts(unlinked, free, rules)

    owners = accounts.owners(live, live_at, match.pairs)
    gone = links.loc[links["user_id"].isin(dead_users)]
    actual_by_id = _translate_references(
        actual,
        rules.references,
        accounts,
        owners,
        pd.Series(gone["user_id"].to_numpy(), index=gone["remote_id"]),
    ).set_index("remote_id")

    linked = joined if is_linked.all() else joined[is_linked]  # all linked: spare a copy
    parts = [
        _plan_linked(linked, _accounts_of(linked, actual_by_id), rules),
        _plan_matched(unlinked, match.pairs, actual_by_id, rules),
        _plan_unmatched(unlinked, match, dead_users, rules),
        _plan_free_accounts(free, match, rules),
    ]
    plan = _gate_disabled_actions(_concat(parts), rules)
    plan["held"] = False
    plan["attr_hash"] = _hashes_for_writes(plan, desired, rules)
    return plan[[*PLAN_COLUMNS, "attr_hash"]].reset_index(drop=True)


def _with_vanished_users(desired: pd.DataFrame, live: pd.DataFrame) -> pd.DataFrame:
    """Linked users the directory no longer has (deleted, or an extract that came back
    short) are out of scope: their accounts are deprovisioned like a leaver's, which the
    guard then counts, instead of being silently forgotten."""
    vanished = live.loc[~live["user_id"].isin(desired["user_id"]), "user_id"]
    if vanished.empty:
        return desired
    extra = pd.DataFrame({"user_id": vanished.to_numpy(), "in_scope": False}).astype(
        {"user_id": object}
    )
    extra["user_name"] = pd.Series([None] * len(extra), dtype=object)
    return pd.concat([desired, extra], ignore_index=True)


#: Column carried from the links into the joined frame: the linked account's row in
#: ``actual``. SCIM paths start with a letter, so no target can be called this.
_AT = "_account_row"


def _accounts_of(linked: pd.DataFrame, actual_by_id: pd.DataFrame) -> pd.DataFrame:
    """``actual_by_id.loc[linked["remote_id"]]``, by position when the rows carry one."""
    if _AT not in linked.columns:
        remote = actual_by_id.loc[linked["remote_id"]]
        if len(remote) != len(linked):
            raise ValueError("the app lists a linked account more than once (same remote_id)")
        return remote
    return actual_by_id.iloc[linked[_AT].to_numpy().astype(np.intp)]


def _plan_linked(linked: pd.DataFrame, remote: pd.DataFrame, rules: PlanRules) -> pd.DataFrame:
    """``remote``: each linked row's account, row for row (references translated)."""
    in_scope = linked["in_scope"].to_numpy(dtype=bool)
    everyone = bool(in_scope.all())  # the usual case: spare two copies of a million rows
    scoped = linked if everyone else linked[in_scope]
    found = diff_attributes(scoped, remote if everyone else remote[in_scope], rules)
    changes, reported = split_changes(found, rules.reported)
    drifted = np.array([c is not None for c in found], dtype=bool)
    writes = np.array([c is not None for c in changes], dtype=bool)
    same_hash = np.zeros(len(scoped), dtype=bool)
    hashes = np.full(len(scoped), None, dtype=object)
    if drifted.any():
        hashes[drifted] = attribute_hash(scoped[drifted], rules.compared).to_numpy()
        same_hash[drifted] = scoped["last_hash"].to_numpy(dtype=object)[drifted] == hashes[drifted]
    kept = _rows(
        scoped,
        situation=_labels(drifted, Situation.DRIFTED, Situation.IN_SYNC),
        action=_ACTIONS[drifted * (1 + writes)],
        changes=changes,
        reported=reported,
        origin=pd.Series(_ORIGINS[drifted * (1 + same_hash)], dtype=object),
    )
    kept["attr_hash"] = pd.Series(hashes, dtype=object)  # _hashes_for_writes reuses them
    if everyone:
        return kept
    return _concat([kept, _plan_deprovision(linked[~in_scope], remote[~in_scope], rules)])


#: by drifted * (1 + same hash): in sync, drifted by a directory change, drifted in the app
_ORIGINS = np.array([None, "directory", "app"], dtype=object)


#: by drifted * (1 + written): in sync, only reported differences, differences to write
_ACTIONS = np.array(
    [str(PlannedAction.NONE), str(PlannedAction.REPORT), str(PlannedAction.UPDATE)], dtype=object
)


def _labels(condition: np.ndarray, yes: str, no: str) -> np.ndarray:
    """``np.where`` for labels: plain str objects shared by all rows, not one per row."""
    return np.array([str(no), str(yes)], dtype=object)[condition.astype(np.intp)]


def _plan_deprovision(
    leaving: pd.DataFrame, remote: pd.DataFrame, rules: PlanRules
) -> pd.DataFrame:
    if "active" in remote.columns:
        inactive = remote["active"].map(lambda v: v is False or v == "false").to_numpy(dtype=bool)
    else:
        inactive = (leaving["link_status"] == "deactivated").to_numpy(dtype=bool)
    delete = rules.deprovision is DeprovisionMode.DELETE
    act = np.where(
        delete,
        PlannedAction.DELETE,
        np.where(inactive, PlannedAction.NONE, PlannedAction.DEACTIVATE),
    )
    situation = np.where(act == PlannedAction.NONE, Situation.DEPROVISIONED, Situation.DEPROVISION)
    changes = [{"active": [True, False]} if a == PlannedAction.DEACTIVATE else None for a in act]
    rows = _rows(leaving, situation=situation, action=act, changes=changes)
    if "link_status" in leaving.columns and not delete:
        reenabled = ~inactive & (leaving["link_status"] == "deactivated").to_numpy(dtype=bool)
        rows = _status_drift(rows, reenabled, rules)
    return rows


def _status_drift(rows: pd.DataFrame, reenabled: np.ndarray, rules: PlanRules) -> pd.DataFrame:
    """Accounts Roster deactivated that someone enabled again in the app: always shown as
    drift from the app, and deactivated again unless the app's ``status`` is ``report``."""
    if not reenabled.any():
        return rows
    rows.loc[reenabled, "origin"] = "app"
    rows.loc[reenabled, "note"] = "re-enabled in the app while out of scope"
    if rules.status is Remediation.REPORT:
        rows.loc[reenabled, "situation"] = Situation.DRIFTED
        rows.loc[reenabled, "action"] = PlannedAction.REPORT
        rows.loc[reenabled, "reported"] = rows.loc[reenabled, "changes"]
        rows.loc[reenabled, "changes"] = None
    return rows


def _plan_matched(
    unlinked: pd.DataFrame, pairs: pd.DataFrame, actual_by_id: pd.DataFrame, rules: PlanRules
) -> pd.DataFrame:
    matched = unlinked.drop(columns=["remote_id"]).merge(pairs, on="user_id")
    if matched.empty:
        return matched
    in_scope = matched["in_scope"].to_numpy(dtype=bool)
    scoped = matched[in_scope]
    found = diff_attributes(scoped, actual_by_id.loc[scoped["remote_id"]], rules)
    changes, reported = split_changes(found, rules.reported)
    linking = _rows(
        scoped,
        situation=Situation.MATCHED,
        action=PlannedAction.LINK,
        changes=changes,
        reported=reported,
    )
    out = matched[~in_scope]
    accounts = actual_by_id.loc[out["remote_id"]]
    ours = _created_by_roster(out, accounts, rules)
    unmanaged = _rows(
        out[~ours],
        situation=Situation.UNMANAGED,
        action=PlannedAction.REPORT,
        note="account of a directory user who is not assigned this app",
    )
    reclaimed = _plan_deprovision(out[ours].assign(link_status=None), accounts[ours], rules)
    return _concat([linking, unmanaged, reclaimed])


def _created_by_roster(users: pd.DataFrame, accounts: pd.DataFrame, rules: PlanRules) -> np.ndarray:
    """Per row, whether the account carries the user's directory id in an owner key."""
    ours = np.zeros(len(users), dtype=bool)
    user_ids = users["user_id"].to_numpy(dtype=object)
    for key in rules.owner_keys & set(accounts.columns):
        ours |= np.equal(accounts[key].to_numpy(dtype=object), user_ids).astype(bool)
    return ours


def _plan_unmatched(
    unlinked: pd.DataFrame, match: Matches, dead_users: set[str], rules: PlanRules
) -> pd.DataFrame:
    rest = unlinked[~unlinked["user_id"].isin(match.pairs["user_id"])]
    disputed = rest["user_id"].isin(list(match.disputed_users))
    had_link = rest["user_id"].isin(list(dead_users))
    in_scope = rest["in_scope"].astype(bool)
    frames = [
        _rows(
            rest[disputed],
            situation=Situation.DISPUTED,
            action=PlannedAction.REPORT,
            note=[
                "matches several accounts: " + ", ".join(match.disputed_users[u])
                for u in rest.loc[disputed, "user_id"]
            ],
        ),
        _rows(
            rest[~disputed & in_scope & ~had_link],
            situation=Situation.MISSING,
            action=PlannedAction.CREATE,
            changes=_creation_changes(rest[~disputed & in_scope & ~had_link], rules),
        ),
        _plan_gone(rest[~disputed & had_link], rules),
    ]
    return _concat(frames)


def _plan_gone(gone: pd.DataFrame, rules: PlanRules) -> pd.DataFrame:
    in_scope = gone["in_scope"].to_numpy(dtype=bool)
    recreate = rules.on_missing is MissingPolicy.RECREATE
    act = np.where(
        in_scope,
        PlannedAction.CREATE if recreate else PlannedAction.REPORT,
        PlannedAction.UNLINK,
    )
    changes = _creation_changes(gone, rules)
    return _rows(
        gone,
        situation=Situation.GONE,
        action=act,
        changes=[
            c if a == PlannedAction.CREATE else None for c, a in zip(changes, act, strict=True)
        ],
        note="linked account no longer in the app",
    )


def _plan_free_accounts(free: pd.DataFrame, match: Matches, rules: PlanRules) -> pd.DataFrame:
    rest = free[~free["remote_id"].isin(match.pairs["remote_id"])]
    disputed = rest["remote_id"].isin(list(match.disputed_accounts))
    base = pd.DataFrame(
        {
            "user_id": None,
            "user_name": rest.get(rules.login_attribute),
            "remote_id": rest["remote_id"],
        }
    )
    notes = [
        "claimed by several directory users: " + ", ".join(match.disputed_accounts[r])
        if d
        else "no directory user"
        for r, d in zip(rest["remote_id"], disputed, strict=True)
    ]
    return _rows(
        base,
        situation=np.where(disputed, Situation.DISPUTED, Situation.ORPHAN),
        action=PlannedAction.REPORT,
        note=notes,
    )


def _creation_changes(frame: pd.DataFrame, rules: PlanRules) -> list[dict[str, list[object]]]:
    records = frame[list(rules.targets)].to_dict(orient="records")
    return [
        {k: [None, plain_value(v)] for k, v in r.items() if plain_value(v) is not None}
        for r in records
    ]


def _hashes_for_writes(plan: pd.DataFrame, desired: pd.DataFrame, rules: PlanRules) -> pd.Series:
    """Only accounts about to be written need the hash stored on their link; linked
    rows bring theirs from ``_plan_linked``."""
    hashes = pd.Series(None, index=plan.index, dtype=object)
    writes = plan["action"].isin([PlannedAction.CREATE, PlannedAction.LINK, PlannedAction.UPDATE])
    if not writes.any():
        return hashes
    todo = writes
    # (A user_id listed twice in desired keeps failing below, as it always has.)
    if "attr_hash" in plan.columns and desired["user_id"].is_unique:
        known = writes & plan["attr_hash"].notna()
        hashes[known] = plan.loc[known, "attr_hash"].to_numpy()
        todo = writes & ~known
    if todo.any():
        rows = desired.set_index("user_id").loc[plan.loc[todo, "user_id"]]
        hashes[todo] = attribute_hash(rows, rules.compared).to_numpy()
    return hashes


def _translate_references(
    actual: pd.DataFrame,
    references: frozenset[str],
    accounts: AccountIndex,
    owners: pd.Series | np.ndarray,
    gone_owners: pd.Series,
) -> pd.DataFrame:
    """Reference attributes hold remote ids in the app; the plan compares directory ids.
    A reference to a linked account the app no longer lists (its manager's account was
    deleted) still names its owner, so it is not mistaken for drift."""
    if not references:
        return actual
    translated = {}
    for path in references:
        values = accounts.translate(actual[path], owners)
        if len(gone_owners):
            mapped = values.map(gone_owners)
            values = mapped.where(mapped.notna(), values)
        translated[path] = values
    return actual.assign(**translated)


def _with_targets(actual: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    missing = [t for t in targets if t not in actual.columns]
    return actual.assign(**{t: None for t in missing}) if missing else actual


def _rows(frame: pd.DataFrame, **columns: object) -> pd.DataFrame:
    """Plan rows for ``frame``: its identity columns plus the given per-row or constant values."""
    out = pd.DataFrame(
        {
            key: frame[key].to_numpy(dtype=object) if key in frame else None
            for key in ("user_id", "user_name", "remote_id", "match_attr")
        }
    )
    for name in ("situation", "action", "changes", "reported", "origin", "note"):
        value = columns.get(name)
        if isinstance(value, np.ndarray):
            out[name] = value.astype(str).astype(object) if value.dtype.kind == "U" else value
        elif isinstance(value, list):
            out[name] = pd.Series(value, dtype=object)
        else:
            out[name] = value
    return out


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    kept = [f for f in frames if len(f)]
    if not kept:
        return pd.DataFrame(columns=[*PLAN_COLUMNS, "attr_hash"], dtype=object)
    return pd.concat(kept, ignore_index=True)


def _gate_disabled_actions(plan: pd.DataFrame, rules: PlanRules) -> pd.DataFrame:
    blocked = {
        gate: plan["action"] == planned
        for planned, gate in GATES.items()
        if gate not in rules.actions
    }
    if not any(rows.any() for rows in blocked.values()):
        return plan  # nothing to change: spare a copy of the whole plan
    plan = plan.copy()
    for gate, rows in blocked.items():
        plan.loc[rows, "note"] = f"{gate.value} is not enabled for this app"
        plan.loc[rows, "action"] = PlannedAction.REPORT
    return plan
