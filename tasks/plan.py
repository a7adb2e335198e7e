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
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from directory.config import (
    REFERENCE_FIELDS,
    WORK_EMAIL,
    Action,
    AppConfig,
    DeprovisionMode,
    MissingPolicy,
    source_field,
)
from directory.scoping import Remediation


class Situation(StrEnum):
    MISSING = "missing"
    MATCHED = "matched"
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    GONE = "gone"
    DEPROVISION = "deprovision"
    DEPROVISIONED = "deprovisioned"
    ORPHAN = "orphan"
    UNMANAGED = "unmanaged"
    DISPUTED = "disputed"


class PlannedAction(StrEnum):
    CREATE = "create"
    LINK = "link"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    DELETE = "delete"
    UNLINK = "unlink"
    NONE = "none"
    REPORT = "report"


#: Actions that take access away; the guard counts and may hold them.
DESTRUCTIVE = frozenset({PlannedAction.DEACTIVATE, PlannedAction.DELETE})
#: Actions that send a request to the app.
WRITES = frozenset(
    {
        PlannedAction.CREATE,
        PlannedAction.LINK,
        PlannedAction.UPDATE,
        PlannedAction.DEACTIVATE,
        PlannedAction.DELETE,
    }
)
_GATES = {
    PlannedAction.CREATE: Action.CREATE,
    PlannedAction.UPDATE: Action.UPDATE,
    PlannedAction.DEACTIVATE: Action.DEACTIVATE,
    PlannedAction.DELETE: Action.DELETE,
}

PLAN_COLUMNS = [
    "user_id",
    "user_name",
    "remote_id",
    "situation",
    "action",
    "match_attr",
    "origin",
    "changes",
    "reported",
    "note",
    "held",
]


@dataclass(frozen=True)
class PlanRules:
    """The per-app settings the plan needs, nothing else (so tests build them literally)."""

    targets: tuple[str, ...]
    match_on: tuple[str, ...] = ("userName", WORK_EMAIL)
    references: frozenset[str] = frozenset()
    #: compared case-insensitively (RFC 7643 §4.1.1: userName is caseExact=false)
    case_insensitive: frozenset[str] = frozenset({"userName", WORK_EMAIL})
    #: the sign-in name of an app account, for rows with no directory user
    login_attribute: str = "userName"
    #: targets written from the directory's user id (``externalId`` by default). RFC 7643
    #: §3.1 makes externalId the provisioning client's own identifier, so an unlinked
    #: account holding a user's id there is one Roster created and never got to link (its
    #: answer was lost, or the run was killed): it is deprovisioned, not left "unmanaged".
    owner_keys: frozenset[str] = frozenset()
    deprovision: DeprovisionMode = DeprovisionMode.DEACTIVATE
    on_missing: MissingPolicy = MissingPolicy.RECREATE
    actions: frozenset[Action] = field(
        default_factory=lambda: frozenset({Action.CREATE, Action.UPDATE, Action.DEACTIVATE})
    )
    #: written on create only: never compared, so never drift and never updated
    create_only: frozenset[str] = frozenset()
    #: remediation ``report``: compared and shown, never written
    reported: frozenset[str] = frozenset()
    #: remediation ``ignore``: written on create, then neither compared nor written
    ignored: frozenset[str] = frozenset()
    #: an account re-enabled by hand while out of scope: deactivated again, or only reported
    status: Remediation = Remediation.ENFORCE

    @property
    def compared(self) -> tuple[str, ...]:
        """The targets compared after creation (and hashed on the link): the reported ones
        too, so a reported difference stays one (the hash never flips with the app)."""
        skipped = self.create_only | self.ignored
        if not skipped:
            return self.targets
        return tuple(t for t in self.targets if t not in skipped)

    @property
    def enforced(self) -> tuple[str, ...]:
        """The compared targets whose differences are written."""
        return tuple(t for t in self.compared if t not in self.reported)

    @classmethod
    def for_app(cls, app: AppConfig) -> PlanRules:
        mapping = app.effective_mapping
        fields = {target: source_field(source) for target, source in mapping.items()}
        refs = {t for t, f in fields.items() if f in REFERENCE_FIELDS}
        return cls(
            targets=tuple(mapping),
            match_on=tuple(app.match_on),
            references=frozenset(refs),
            case_insensitive=app.case_insensitive & set(mapping),
            login_attribute=app.login_attribute,
            owner_keys=frozenset(t for t, f in fields.items() if f == "user_id"),
            deprovision=app.deprovision,
            on_missing=app.on_missing,
            actions=frozenset(app.actions),
            create_only=app.create_only,
            reported=_with_policy(app, Remediation.REPORT),
            ignored=_with_policy(app, Remediation.IGNORE),
            status=app.remediation.status,
        )


def _with_policy(app: AppConfig, policy: Remediation) -> frozenset[str]:
    return frozenset(t for t in app.effective_mapping if app.remediation.for_target(t) is policy)


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


class AccountIndex:
    """The app's remote ids, hashed once for every lookup the plan makes by remote id
    (which links are live, which accounts are free, linked rows' accounts, references).

    At a million accounts each pandas lookup by remote id rebuilds a hash table over
    object strings (about a second each); positions in ``actual`` are reused instead.
    A listing with duplicate remote ids (connectors de-duplicate, so only a caller's
    frame can have them) keeps pandas' label semantics: ``positions`` is then None.
    """

    def __init__(self, remote_ids: pd.Series) -> None:
        self.remote_ids = remote_ids
        self.index = pd.Index(remote_ids.to_numpy(dtype=object), dtype=object)
        self.unique = bool(self.index.is_unique)

    def positions(self, remote_ids: pd.Series) -> np.ndarray | None:
        """Each id's row in ``actual``, -1 where absent; None if ids are not unique."""
        if not self.unique:
            return None
        return self.index.get_indexer(remote_ids.to_numpy(dtype=object))

    def contains(self, remote_ids: pd.Series, at: np.ndarray | None) -> np.ndarray:
        """``remote_ids.isin(actual ids)``; ``at``: their ``positions``."""
        if at is None:
            return remote_ids.isin(self.remote_ids).to_numpy(dtype=bool)
        return at >= 0

    def claimed(self, remote_ids: pd.Series, at: np.ndarray | None) -> np.ndarray:
        """Per account, ``actual ids .isin(remote_ids)``; ``at``: their ``positions``."""
        if at is None:
            return self.remote_ids.isin(remote_ids).to_numpy(dtype=bool)
        claimed = np.zeros(len(self.index), dtype=bool)
        claimed[at] = True
        return claimed

    def owners(
        self, live: pd.DataFrame, live_at: np.ndarray | None, pairs: pd.DataFrame
    ) -> pd.Series | np.ndarray:
        """Who owns each account: a user_id per row of ``actual`` (None: nobody), or,
        without positions, a Series remote_id -> user_id. Links first, then matches;
        the first owner of an account wins."""
        if live_at is None:
            owner = pd.concat(
                [
                    pd.Series(live["user_id"].to_numpy(), index=live["remote_id"].to_numpy()),
                    pd.Series(pairs["user_id"].to_numpy(), index=pairs["remote_id"].to_numpy()),
                ]
            )
            return owner[~owner.index.duplicated()]
        pair_at = self.index.get_indexer(pairs["remote_id"].to_numpy(dtype=object))
        at = np.concatenate([live_at, pair_at])
        users = np.concatenate(
            [live["user_id"].to_numpy(dtype=object), pairs["user_id"].to_numpy(dtype=object)]
        )
        rows, first = np.unique(at, return_index=True)
        owner = np.full(len(self.index), None, dtype=object)
        owner[rows] = users[first]
        return owner

    def translate(self, raw: pd.Series, owners: pd.Series | np.ndarray) -> pd.Series:
        """Each remote id in ``raw`` replaced by its owner's user_id, where it has one."""
        if isinstance(owners, pd.Series):
            mapped = raw.map(owners)
            return mapped.astype(object).where(mapped.notna(), raw.astype(object))
        at = self.index.get_indexer(raw.to_numpy(dtype=object))
        found = np.full(len(raw), None, dtype=object)
        found[at >= 0] = owners[at[at >= 0]]
        known = pd.notna(found)
        values = raw.to_numpy(dtype=object).copy()
        values[known] = found[known]
        return pd.Series(values, index=raw.index, dtype=object)


def _accounts_of(linked: pd.DataFrame, actual_by_id: pd.DataFrame) -> pd.DataFrame:
    """``actual_by_id.loc[linked["remote_id"]]``, by position when the rows carry one."""
    if _AT not in linked.columns:
        remote = actual_by_id.loc[linked["remote_id"]]
        if len(remote) != len(linked):
            raise ValueError("the app lists a linked account more than once (same remote_id)")
        return remote
    return actual_by_id.iloc[linked[_AT].to_numpy().astype(np.intp)]


# -- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matches:
    #: user_id, remote_id, match_attr
    pairs: pd.DataFrame
    disputed_users: dict[str, list[str]]
    disputed_accounts: dict[str, list[str]]


def match_accounts(users: pd.DataFrame, accounts: pd.DataFrame, rules: PlanRules) -> Matches:
    """Pair unlinked users with free accounts, one match attribute at a time, in order.

    A value shared by several users or several accounts matches nobody: both sides are
    disputed and leave the pool, because guessing would hand someone another person's account.
    """
    pairs: list[pd.DataFrame] = []
    disputed_users: dict[str, list[str]] = {}
    disputed_accounts: dict[str, list[str]] = {}
    user_pool, account_pool = users, accounts
    for attr in rules.match_on:
        folded = attr in rules.case_insensitive
        left = pd.DataFrame({"user_id": user_pool["user_id"], "key": _key(user_pool[attr], folded)})
        right = pd.DataFrame(
            {"remote_id": account_pool["remote_id"], "key": _key(account_pool[attr], folded)}
        )
        hits = left[left["key"] != ""].merge(right[right["key"] != ""], on="key")
        per_user = hits.groupby("user_id")["remote_id"].transform("size")
        per_account = hits.groupby("remote_id")["user_id"].transform("size")
        clean = hits[(per_user == 1) & (per_account == 1)]
        messy = hits[(per_user > 1) | (per_account > 1)]
        for user_id, group in messy.groupby("user_id"):
            disputed_users.setdefault(str(user_id), []).extend(group["remote_id"])
        for remote_id, group in messy.groupby("remote_id"):
            disputed_accounts.setdefault(str(remote_id), []).extend(group["user_id"])
        pairs.append(clean[["user_id", "remote_id"]].assign(match_attr=attr))
        taken_users = set(hits["user_id"])
        taken_accounts = set(hits["remote_id"])
        user_pool = user_pool[~user_pool["user_id"].isin(taken_users)]
        account_pool = account_pool[~account_pool["remote_id"].isin(taken_accounts)]
    all_pairs = (
        pd.concat(pairs, ignore_index=True)
        if pairs
        else pd.DataFrame(columns=["user_id", "remote_id", "match_attr"])
    )
    return Matches(all_pairs, disputed_users, disputed_accounts)


def _key(values: pd.Series, folded: bool) -> pd.Series:
    text = values.astype("string").fillna("").str.strip()
    return (text.str.lower() if folded else text).astype(object)


# -- the four kinds of rows -----------------------------------------------------------------


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


# -- comparing ------------------------------------------------------------------------------


def diff_attributes(
    desired: pd.DataFrame, actual: pd.DataFrame, rules: PlanRules
) -> list[dict[str, list[object]] | None]:
    """Per row, ``{path: [old, new]}`` for each target that differs, or None when equal.

    Values compare as trimmed text, with None equal to "", and case-folded where the
    attribute is case-insensitive; the returned old/new keep the original values.
    Create-only and ``ignore``-policy targets are not compared.
    """
    n = len(desired)
    result: list[dict[str, list[object]] | None] = [None] * n
    for target in rules.compared:
        new = desired[target].to_numpy(dtype=object)
        old = actual[target].to_numpy(dtype=object)
        folded = target in rules.case_insensitive
        # Exact equality settles most rows cheaply; only the rest pay for normalising.
        # (numpy's object ``==`` treats identical objects as equal, NaN included: they
        # would normalise equal anyway.)
        candidates = np.flatnonzero(~np.equal(new, old))
        differs = _text(new[candidates], folded) != _text(old[candidates], folded)
        for i in candidates[differs]:
            entry = result[i]
            if entry is None:
                entry = result[i] = {}
            entry[target] = [_plain(old[i]), _plain(new[i])]
    return result


def split_changes(
    changes: list[dict[str, list[object]] | None], reported: frozenset[str]
) -> tuple[list[dict[str, list[object]] | None], list[dict[str, list[object]] | None]]:
    """``diff_attributes``' rows split into what is written and what is only reported
    (``report``-policy attributes); None where a side has nothing."""
    if not reported:
        return changes, [None] * len(changes)
    written: list[dict[str, list[object]] | None] = []
    shown: list[dict[str, list[object]] | None] = []
    for change in changes:
        if change is None:
            written.append(None)
            shown.append(None)
            continue
        write = {k: v for k, v in change.items() if k not in reported}
        show = {k: v for k, v in change.items() if k in reported}
        written.append(write or None)
        shown.append(show or None)
    return written, shown


def _text(values: np.ndarray, folded: bool) -> np.ndarray:
    text = pd.Series(values, dtype=object).astype("string").fillna("").str.strip()
    if folded:
        text = text.str.lower()
    return text.to_numpy(dtype=object)


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _creation_changes(frame: pd.DataFrame, rules: PlanRules) -> list[dict[str, list[object]]]:
    records = frame[list(rules.targets)].to_dict(orient="records")
    return [{k: [None, _plain(v)] for k, v in r.items() if _plain(v) is not None} for r in records]


def attribute_hash(desired: pd.DataFrame, targets: Sequence[str]) -> pd.Series:
    """A stable 64-bit hash of each row's desired attributes, as hex; vectorised, so it
    costs nothing at a million rows. Stored on the link after a successful write."""
    if len(desired) == 0:
        return pd.Series([], dtype=object)
    text = desired[list(targets)].astype("string").fillna("\x00")
    # categorize=False gives the same hashes when nothing is missing (fillna above) and
    # skips factorising each column first, which costs more than it saves here.
    hashed = pd.util.hash_pandas_object(text, index=False, categorize=False).to_numpy()
    return pd.Series([f"{h:016x}" for h in hashed], index=desired.index, dtype=object)


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
        for planned, gate in _GATES.items()
        if gate not in rules.actions
    }
    if not any(rows.any() for rows in blocked.values()):
        return plan  # nothing to change: spare a copy of the whole plan
    plan = plan.copy()
    for gate, rows in blocked.items():
        plan.loc[rows, "note"] = f"{gate.value} is not enabled for this app"
        plan.loc[rows, "action"] = PlannedAction.REPORT
    return plan
