"""Incremental sync for one app: which users to consider, which accounts to read, and
which apps must run full instead.

An incremental run considers the users stamped since the app's watermark
(``directory.watermarks``), plus linked users the directory no longer has. Of those, a
user whose desired attributes still hash to what was last written to an active account
(or who is out of scope with the account already deactivated) is *settled*: nothing
changed on the directory side, so nothing is read from the app. The rest are planned
like a full run would plan them, on their accounts alone: linked ones read by id,
unlinked ones searched by match attribute. Nothing outside them is judged, so there are
no orphans and no leavers from a partial listing; drift made inside the app is left to
the full run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.base import Connector
from directory.config import AppConfig
from directory.store import Store
from directory.watermarks import DirectorySubset, Watermarks
from tasks.desired import build_desired, unique_targets
from tasks.extract import AppExtract, Lookup, read_subset
from tasks.guard import ExtractCounts
from tasks.plan import PlanRules, attribute_hash


def settings_hash(app: AppConfig) -> str:
    """A fingerprint of the app's settings, kept with its watermark: a changed mapping,
    scope or policy concerns everyone, so the first run after it must be full."""
    return hashlib.sha256(app.model_dump_json().encode()).hexdigest()[:32]


def full_run_reason(app: AppConfig, marks: Watermarks) -> str | None:
    """Why this app must run full even when an incremental run was asked for; None: it
    need not."""
    if marks.since() is None:
        return "no successful run yet to start from"
    if app.push_groups is not None:
        return "push_groups keeps the app's groups from every member in scope"
    unique = unique_targets(app.effective_mapping)
    if unique:
        return f"the mapping of {', '.join(unique)} calls unique, which needs every account"
    if marks.settings_hash != settings_hash(app):
        return "the app's settings changed since its last successful run"
    return None


@dataclass(frozen=True)
class IncrementalExtract:
    """What an incremental run plans: directory side, app side, and the counts."""

    #: the users to plan plus their managers (``build_desired`` input)
    users: pd.DataFrame
    #: the users to plan
    user_ids: frozenset[str]
    #: their links (those of users the directory no longer has included)
    links: pd.DataFrame
    extract: AppExtract
    #: for the guard: the whole directory and the whole app, not the subset
    counts: ExtractCounts
    #: users stamped since the watermark, plus links whose user is gone
    considered: int
    #: of those, already as last written: not read from the app
    settled: int
    notes: list[str] = field(default_factory=list)


@task(name="extract-changes", task_run_name="extract-changes-{app.name}", cache_policy=NO_CACHE)
def extract_changes(
    store: Store, connector: Connector, app: AppConfig, since: datetime
) -> IncrementalExtract:
    rules = PlanRules.for_app(app)
    subset = store.read_directory_subset(app.name, since, with_reports=bool(rules.references))
    links = store.read_links(app.name)
    gone = store.read_unowned_links(app.name)
    assigned = store.read_assigned(app.name)
    desired = _desired(subset, assigned, app)
    considered = set(subset.user_ids) | gone
    mine = links[links["user_id"].isin(list(considered))]
    settled = settled_users(desired, mine, rules)
    todo = frozenset(considered - settled)
    todo_links = mine[mine["user_id"].isin(list(todo))]
    extract, disputed = read_subset(
        connector,
        list(rules.targets),
        list(todo_links["remote_id"]),
        match_lookups(desired[desired["user_id"].isin(list(todo))], todo_links, rules),
        frozenset(links["remote_id"]),
    )
    extract = _owners_for_references(extract, links, rules)
    notes = [
        f"mode: incremental, {len(considered)} users considered (changed since"
        f" {since:%Y-%m-%d %H:%M:%S} UTC), {len(settled)} of them already as last written"
    ]
    if disputed:
        notes.append(
            f"{len(disputed)} users match several accounts and are left out: the next full"
            " run reports them"
        )
    counts = ExtractCounts(store.count_users(), len(links), len(links))
    return IncrementalExtract(
        subset.users,
        todo - disputed,
        todo_links,
        extract,
        counts,
        len(considered),
        len(settled),
        notes,
    )


def _desired(subset: DirectorySubset, assigned: set[str], app: AppConfig) -> pd.DataFrame:
    desired = build_desired(subset.users, assigned, app.effective_mapping, scoping=app.scoping)
    return desired[desired["user_id"].isin(list(subset.user_ids))]


def settled_users(desired: pd.DataFrame, links: pd.DataFrame, rules: PlanRules) -> set[str]:
    """Considered users with nothing to do: linked, in scope, and their desired attributes
    hash to what was last written to an active account; or out of scope with the account
    already deactivated. Pure; ``links`` are the considered users' links."""
    vanished = ~links["user_id"].isin(list(desired["user_id"]))
    settled = set(links.loc[vanished & (links["status"] == "deactivated"), "user_id"])
    joined = desired.merge(links[["user_id", "attr_hash", "status"]], on="user_id", how="inner")
    if joined.empty:
        return settled
    joined = joined.reset_index(drop=True)
    in_scope = joined["in_scope"].astype(bool)
    hashes = attribute_hash(joined, rules.compared)
    same = (hashes == joined["attr_hash"]) & (joined["status"] == "active") & in_scope
    done = ~in_scope & (joined["status"] == "deactivated")
    return settled | set(joined.loc[same | done, "user_id"])


def match_lookups(desired: pd.DataFrame, links: pd.DataFrame, rules: PlanRules) -> list[Lookup]:
    """For each unlinked user in scope, their match attribute values, in ``match_on``
    order. Unlinked users out of scope are not searched: with no link they get no action
    (an account of theirs is "unmanaged", which the full run reports)."""
    unlinked = desired[~desired["user_id"].isin(list(links["user_id"])) & desired["in_scope"]]
    lookups: list[Lookup] = []
    for row in unlinked.to_dict(orient="records"):
        for attribute in rules.match_on:
            value = row.get(attribute)
            if isinstance(value, str) and value.strip():
                lookups.append(Lookup(str(row["user_id"]), attribute, value.strip()))
    return lookups


def _owners_for_references(
    extract: AppExtract, links: pd.DataFrame, rules: PlanRules
) -> AppExtract:
    """Reference attributes (manager) hold remote ids; the plan turns them into directory
    ids through the accounts it was given, and a manager's account is usually not among
    them here. Translate through every link of the app instead."""
    if not rules.references or extract.accounts.empty:
        return extract
    owner = dict(zip(links["remote_id"], links["user_id"], strict=True))
    accounts = extract.accounts.copy()
    for path in rules.references & set(accounts.columns):
        accounts[path] = [owner.get(v, v) if isinstance(v, str) else v for v in accounts[path]]
    return AppExtract(accounts, extract.errors, extract.unreadable, extract.anonymous)
