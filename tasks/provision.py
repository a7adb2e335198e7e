"""Provision one user now, app by app, the way Entra's "provision on demand" does.

Each app answers four steps, in order, and the report keeps every one:

1. **in scope?** active, and assigned the app directly or through which chains of groups;
2. **matched account**: the linked account (by its remote id, one GET), else the one account
   ``find_account`` returns for each ``match_on`` attribute, in order; the app is never listed;
3. **planned action**: one-row desired/actual/links frames through the real ``plan_changes``,
   so the decision is exactly the one a sync would take for this person;
4. **result**: the plan's row through the sync's batch task (``tasks.batches.apply_batch``),
   so the action log and the link are written the same way. A dry run stops at step 3.

Frames for the plan: ``desired`` is the person's row from ``build_desired`` (their manager's
row goes in too, so the reference resolves as in a sync). ``actual`` is the matched account
plus, for each reference it holds (``manager.value``) that points at a linked account, a stub
row with only that remote id: the plan then translates the reference to its owner, as it
does when it holds the whole listing. ``links`` are the person's and those owners' links.
The safety guard is not applied: it weighs mass changes, and this is one named person.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from connectors.base import Account, Connector
from connectors.errors import ConflictError, ConnectorError, NotFoundError
from directory.config import DIRECTORY_FIELDS, AppConfig, ConfigError
from directory.errors import AppLockedError, UserNotFoundError
from directory.expressions import Holders
from directory.store import Store
from tasks.apply import ApplyContext
from tasks.batches import apply_batch, make_batches, work_items
from tasks.desired import build_desired, unique_targets
from tasks.locks import app_lock, lock_holder
from tasks.plan import PlannedAction, PlanRules, plan_changes
from tasks.scope import assignment_of, decide_scope
from tasks.session import open_connector

STEPS = ("in scope?", "matched account", "planned action", "result")


@dataclass(frozen=True)
class Person:
    """``Store.find_user`` of the person (and of their manager, for the reference), plus
    the apps each of their groups gives (nested ones included) and the chain to each, to
    say through which groups an app comes."""

    user: dict[str, Any]
    manager: dict[str, Any] | None
    group_apps: dict[str, set[str]]
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return str(self.user["user_id"])


@dataclass
class Match:
    account: Account | None
    #: "link", a match attribute, or None when nothing matched
    by: str | None
    detail: str
    disputed: bool = False


@dataclass
class AppSteps:
    """What one app's steps found; ``as_dict`` is the JSON-able report."""

    app: str
    in_scope: bool = False
    scope: str = ""
    match: Match | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    outcome: str = "not run"
    remote_id: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        match = self.match
        return {
            "app": self.app,
            "status": "failed" if self.outcome in ("failed", "pending") else "ok",
            "in_scope": self.in_scope,
            "scope": self.scope,
            "matched_by": match.by if match else None,
            "match": match.detail if match else None,
            "situation": self.plan.get("situation"),
            "action": self.plan.get("action"),
            "changes": self.plan.get("changes") or {},
            "outcome": self.outcome,
            "remote_id": self.remote_id,
            "error": self.error,
            "notes": self.notes,
            "steps": self.steps(),
        }

    def steps(self) -> list[dict[str, str]]:
        """The four steps, each as ``{step, result, detail}``; unreached steps say so."""
        match, plan = self.match, self.plan
        rows = [
            ("yes" if self.in_scope else "no", self.scope),
            (("none" if match.by is None else match.by), match.detail) if match else None,
            (plan["action"], describe_plan(plan)) if plan else None,
            (self.outcome, self.error or (self.remote_id and f"account {self.remote_id}") or ""),
        ]
        return [
            {"step": step, "result": row[0], "detail": row[1]}
            if row
            else {"step": step, "result": "not reached", "detail": ""}
            for step, row in zip(STEPS, rows, strict=True)
        ]


def load_person(store: Store, key: str) -> Person:
    """The person by user name, email or id; raises UserNotFoundError."""
    user = store.find_user(key)
    manager = None
    if user.get("manager"):
        try:
            manager = store.find_user(str(user["manager"]))
        except UserNotFoundError:
            manager = None  # a sync leaves the reference empty too
    chains = store.group_chains(user["user_id"])
    groups = store.list_groups()
    group_apps = {
        str(name): set(filter(None, str(apps).split(";")))
        for name, apps in zip(groups["name"], groups["apps"], strict=True)
        if name in chains
    }
    return Person(user, manager, group_apps, chains)


def scope_of(person: Person, app: AppConfig) -> tuple[bool, str]:
    """In scope (active, assigned and let in by the app's scoping filters), and in words:
    directly, via which groups, which filter matched, or why not."""
    assignment = assignment_of(person.user, person.group_apps, app.name, person.chains)
    decision = decide_scope(person.user, assignment, app.scoping)
    return decision.in_scope, decision.reason


@dataclass(frozen=True)
class AppLookup:
    """``unique``'s taken values for one person, asked of the app one candidate at a time
    (``find_account``) instead of listing it: taken when an account holds the value and is
    not linked to this person. Nothing to hold: one person cannot collide with themself."""

    connector: Connector
    target: str
    links: pd.DataFrame

    def taken_for(self, user_id: str) -> Callable[[str], bool]:
        owners = dict(zip(self.links["remote_id"], self.links["user_id"], strict=True))

        def is_taken(value: str) -> bool:
            try:
                found = self.connector.find_account(self.target, value)
            except ConflictError:
                return True
            return found is not None and owners.get(found.id) != user_id

        return is_taken

    def hold(self, value: str, holder: str | None) -> None:
        return None


def desired_frame(
    person: Person, app: AppConfig, links: pd.DataFrame, connector: Connector | None = None
) -> pd.DataFrame:
    """The person's one-row ``build_desired`` frame. The manager's row goes in only when the
    manager has an account in the app: an in-scope manager without one would be created
    first by a sync; here the reference stays empty until then."""
    rows = [person.user]
    manager = person.manager
    if manager is not None and manager["user_id"] in set(links["user_id"]):
        rows.append(manager)
    users = pd.DataFrame([{c: r.get(c) for c in DIRECTORY_FIELDS} for r in rows], dtype=object)
    users["active"] = users["active"].astype(bool)
    assigned = {r["user_id"] for r in rows if app.name in r["apps"]}
    mapping = app.effective_mapping
    taken: dict[str, Holders] = {}
    if connector is not None:
        taken = {target: AppLookup(connector, target, links) for target in unique_targets(mapping)}
    groups_of = {
        str(r["user_id"]): r.get("effective_groups") or r.get("groups") or () for r in rows
    }
    desired = build_desired(users, assigned, mapping, taken, app.scoping, groups_of=groups_of)
    return desired.iloc[:1].reset_index(drop=True)


def find_match(
    connector: Connector,
    desired: Mapping[str, Any],
    user_id: str,
    links: pd.DataFrame,
    rules: PlanRules,
) -> Match:
    """The linked account by id, else the first ``match_on`` attribute that finds exactly
    one account not linked to someone else (the plan's matching order). Never lists."""
    own = links.loc[links["user_id"] == user_id, "remote_id"]
    if len(own):
        remote_id = str(own.iloc[0])
        try:
            return Match(connector.get_account(remote_id), "link", f"linked account {remote_id}")
        except NotFoundError:
            return Match(None, "link", f"linked account {remote_id} is gone from the app")
    claimed = set(links["remote_id"])
    tried: list[str] = []
    for attribute in rules.match_on:
        value = desired.get(attribute)
        if not isinstance(value, str) or not value.strip():
            continue
        try:
            found = connector.find_account(attribute, value.strip())
        except ConflictError:
            return Match(None, attribute, f"several accounts have {attribute} = {value}", True)
        if found is not None and found.id not in claimed:
            return Match(found, attribute, f"{attribute} = {value} → account {found.id}")
        taken = f" (account {found.id} is linked to another user)" if found else ""
        tried.append(f"{attribute} = {value}{taken}")
    return Match(None, None, "no account has " + (" or ".join(tried) or "a match attribute"))


def plan_person(
    desired: pd.DataFrame, match: Match, links: pd.DataFrame, rules: PlanRules
) -> dict[str, Any]:
    """The sync's decision for this person: their row of ``plan_changes`` (empty: out of
    scope with nothing in the app)."""
    user_id = str(desired["user_id"].iloc[0])
    own = links[links["user_id"] == user_id]
    rows: list[dict[str, Any]] = []
    if match.account is not None:
        rows.append({"remote_id": match.account.id, **match.account.attributes})
    referenced = _referenced_ids(match.account, rules)
    owners = links[links["remote_id"].isin(referenced) & (links["user_id"] != user_id)]
    rows += [{"remote_id": rid} for rid in owners["remote_id"]]
    actual = pd.DataFrame(rows, columns=["remote_id", *rules.targets], dtype=object)
    actual = actual.where(actual.notna(), None)
    plan = plan_changes(desired, actual, pd.concat([own, owners], ignore_index=True), rules)
    mine = plan[plan["user_id"] == user_id]
    return mine.iloc[0].to_dict() if len(mine) else {}


def decide_person(
    desired: pd.DataFrame, match: Match, links: pd.DataFrame, rules: PlanRules
) -> dict[str, Any]:
    """The planned action provisioning (and ``roster explain``) report, as plain JSON
    values: a disputed match is reported without planning; out of scope with nothing in
    the app is ``out_of_scope``/``none``."""
    if match.disputed:
        return {"situation": "disputed", "action": PlannedAction.REPORT.value}
    plan = _plain_plan(plan_person(desired, match, links, rules))
    return plan or {"situation": "out_of_scope", "action": PlannedAction.NONE.value}


def _referenced_ids(account: Account | None, rules: PlanRules) -> list[str]:
    if account is None:
        return []
    values = (account.attributes.get(path) for path in rules.references)
    return [v for v in values if isinstance(v, str) and v != account.id]


def describe_plan(plan: Mapping[str, Any]) -> str:
    changes = plan.get("changes") or {}
    parts = [
        f"{path} = {new}" if old is None else f"{path}: {old} → {new}"
        for path, (old, new) in changes.items()
    ]
    note = plan.get("note")
    return "; ".join([str(plan["situation"]), *parts, *([str(note)] if note else [])])


def apply_person(
    store: Store,
    ctx: ApplyContext,
    run_id: str,
    plan: dict[str, Any],
    desired: pd.DataFrame,
) -> tuple[str, str | None, str | None]:
    """Apply the plan row through the sync's batch task: (outcome, remote id, error)."""
    items = work_items(pd.DataFrame([{"held": False, **plan}]), desired, ctx.rules.targets)
    if not items:
        done = "reported" if plan["action"] == PlannedAction.REPORT else "nothing to do"
        return done, plan.get("remote_id"), None
    error = None
    for batch in make_batches(items, sorted(ctx.rules.references)):
        state = apply_batch(store, quote(ctx), run_id, quote(batch), return_state=True)
        if state.is_failed():
            error = _failure(state)
    actions = store.read_actions(run_id, app=ctx.app.name)
    mine = actions[actions["user_id"] == plan["user_id"]]
    if mine.empty:
        return "failed", plan.get("remote_id"), error or "the batch did not run"
    last = mine.iloc[-1]
    return str(last["outcome"]), last["remote_id"], last["error"] or error


def _failure(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:
        return str(exc)
    return "the batch failed"


#: seconds provisioning one person waits for a sync of the same app to finish
PROVISION_LOCK_WAIT = 120


@task(name="provision", task_run_name="provision-{app.name}", cache_policy=NO_CACHE)
def provision_in_app(
    store: Store, app: AppConfig, run_id: str, person: Person, dry_run: bool
) -> dict[str, Any]:
    """The four steps in one app; an app's failure is reported, never raised."""
    steps = AppSteps(app.name)
    steps.in_scope, steps.scope = scope_of(person, app)
    rules = PlanRules.for_app(app)
    try:
        connector = open_connector(app, dry_run=dry_run)
    except ConfigError as exc:  # its token cannot be read: this app fails, the others go on
        steps.outcome, steps.error = "failed", str(exc)
        return steps.as_dict()
    lock: AbstractContextManager[Any] = (
        nullcontext()
        if dry_run
        else app_lock(store, app.name, lock_holder(run_id), wait=PROVISION_LOCK_WAIT)
    )
    try:
        with lock:
            links = store.read_links(app.name)
            desired = desired_frame(person, app, links, connector)
            _note_unresolved_manager(steps, person, desired, rules)
            steps.match = find_match(
                connector, desired.iloc[0].to_dict(), person.user_id, links, rules
            )
            steps.plan = decide_person(desired, steps.match, links, rules)
            if steps.match.disputed:
                steps.outcome = "reported"
                return steps.as_dict()
            if dry_run:
                steps.outcome, steps.remote_id = "planned (dry run)", steps.plan.get("remote_id")
                return steps.as_dict()
            ctx = ApplyContext(app=app, connector=connector, rules=rules)
            steps.outcome, steps.remote_id, steps.error = apply_person(
                store, ctx, run_id, steps.plan, desired
            )
    except (ConnectorError, AppLockedError) as exc:
        steps.outcome, steps.error = "failed", str(exc)
    finally:
        connector.close()
    return steps.as_dict()


def _plain_plan(row: dict[str, Any]) -> dict[str, Any]:
    """A plan row with plain JSON values: enums as text, numpy scalars as Python, NaN as None."""
    return {key: _plain(value) for key, value in row.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list):
        return value
    if isinstance(value, str):
        return str(value)
    if value is None or pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _note_unresolved_manager(
    steps: AppSteps, person: Person, desired: pd.DataFrame, rules: PlanRules
) -> None:
    manager, refs = person.manager, rules.references
    if manager is None or not refs or any(desired[r].iloc[0] is not None for r in refs):
        return
    if manager["active"] and steps.app in manager["apps"]:
        steps.notes.append(
            f"manager {manager['user_name']} has no account in {steps.app} yet: the reference"
            " stays empty until a sync (or provisioning them) creates it"
        )


def artifact_key(user_name: str) -> str:
    """Artifact keys take lowercase letters, digits and dashes only."""
    return "provision-" + "".join(ch if ch.isalnum() else "-" for ch in user_name.lower())


def report_markdown(user_name: str, apps: Mapping[str, dict[str, Any]], *, dry_run: bool) -> str:
    lines = [f"# Provision {user_name}" + (" (dry run: nothing was written)" if dry_run else "")]
    for name, report in apps.items():
        lines += ["", f"## {name}", "", "| step | result | detail |", "|---|---|---|"]
        lines += [
            f"| {s['step']} | {_cell(s['result'])} | {_cell(s['detail'])} |"
            for s in report["steps"]
        ]
        lines += [f"- {note}" for note in report.get("notes", [])]
    if not apps:
        lines += ["", "No configured app is assigned to or linked with this user."]
    return "\n".join(lines)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


@task(name="provision-report", cache_policy=NO_CACHE)
def publish_provision_report(
    user_name: str, apps: Mapping[str, dict[str, Any]], *, dry_run: bool
) -> None:
    """The step report as Prefect artifacts, keyed per user: markdown and a table."""
    key = artifact_key(user_name)
    create_markdown_artifact(
        markdown=report_markdown(user_name, apps, dry_run=dry_run),
        key=f"{key}-summary",
        description=f"Roster provision-user steps for {user_name}",
    )
    rows = [{"app": name, **step} for name, report in apps.items() for step in report["steps"]]
    create_table_artifact(
        table=json.loads(json.dumps(rows, default=str)),
        key=key,
        description=f"Roster provision-user steps for {user_name}, per app",
    )
