"""Why Roster does what it does for one person in one app, read-only: ``roster explain``.

The answers come from the code a sync and a provisioning run use, so they cannot drift
from what those do:

- scope and assignment: ``tasks.scope`` (the seam scoping filters plug into);
- the matched account: ``tasks.provision.find_match``, through a dry-run connector that
  only finds and gets (the app is never listed, and the connector refuses any write);
- the mapping: ``preview_mapping`` for the sources, the sync's ``build_desired`` (via
  ``desired_frame``) for the values, the plan's ``diff_attributes`` for "differs";
- the planned action: ``tasks.provision.decide_person``, i.e. ``plan_changes`` on the
  person's one-row frames; then the app's settings behind that action, in ``policy_lines``.

Nothing is written to the app or the directory, and no run is recorded: no Prefect flow,
no action-log row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from connectors.base import Account
from directory.config import AppConfig, RosterConfig, Safety
from directory.store import Store
from tasks.desired import PreviewRow, preview_mapping
from tasks.plan import DESTRUCTIVE, PlannedAction, PlanRules, Situation, diff_attributes
from tasks.provision import Match, Person, decide_person, desired_frame, find_match, load_person
from tasks.scope import Assignment, ScopeDecision, assignment_of, decide_scope
from tasks.session import open_connector


@dataclass(frozen=True)
class MappingRow:
    target: str
    #: field, constant or expression
    kind: str
    source: str
    #: what a write would send (a reference: the manager's remote id)
    desired: object
    #: the matched account's value; None without an account
    current: object
    #: whether the plan sees a difference; None: nothing to compare (no account, create-only)
    differs: bool | None
    notes: tuple[str, ...]


@dataclass
class Explanation:
    user: str
    app: str
    scope: ScopeDecision
    assignment: Assignment
    match: Match
    mapping: list[MappingRow]
    plan: dict[str, Any]
    policy: list[str]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        account = self.match.account
        return {
            "user": self.user,
            "app": self.app,
            "scope": asdict(self.scope),
            "assignment": {
                "direct": self.assignment.direct,
                "groups": list(self.assignment.groups),
                "chains": [list(chain) for chain in self.assignment.chains],
                "path": self.assignment.describe(),
            },
            "match": {
                "by": self.match.by,
                "detail": self.match.detail,
                "remote_id": account.id if account else None,
                "disputed": self.match.disputed,
            },
            "mapping": [asdict(row) | {"notes": list(row.notes)} for row in self.mapping],
            "plan": {
                key: self.plan.get(key)
                for key in ("situation", "action", "changes", "note", "match_attr", "origin")
            },
            "policy": self.policy,
            "notes": self.notes,
        }


def explain_user(store: Store, config: RosterConfig, user: str, app_name: str) -> Explanation:
    """Read the person, their links in the app and their account (find/get only), then
    decide as a sync would. Raises ConfigError (unknown app), DirectoryError (unknown
    user) and ConnectorError (the app cannot answer)."""
    app = config.app(app_name)
    person = load_person(store, user)
    assignment = assignment_of(person.user, person.group_apps, app.name, person.chains)
    scope = decide_scope(person.user, assignment, app.scoping)
    rules = PlanRules.for_app(app)
    links = store.read_links(app.name)
    connector = open_connector(app, dry_run=True)  # belt and braces: it refuses writes
    try:
        desired = desired_frame(person, app, links, connector)
        match = find_match(connector, desired.iloc[0].to_dict(), person.user_id, links, rules)
    finally:
        connector.close()
    plan = decide_person(desired, match, links, rules)
    wanted = desired_values(desired.iloc[0].to_dict(), links, rules)
    return Explanation(
        user=str(person.user["user_name"]),
        app=app.name,
        scope=scope,
        assignment=assignment,
        match=match,
        mapping=mapping_rows(
            preview_mapping(person.user, app.effective_mapping), wanted, match, rules
        ),
        plan=plan,
        policy=policy_lines(plan, app, config.safety_for(app), len(links)),
        notes=consistency_notes(scope, desired, person),
    )


def desired_values(
    row: Mapping[str, Any], links: pd.DataFrame, rules: PlanRules
) -> dict[str, object]:
    """The person's desired attributes as a write would send them: a reference holds the
    referenced user's directory id in the plan, their linked remote id on the wire."""
    remote_of = dict(zip(links["user_id"], links["remote_id"], strict=True))
    return {
        target: remote_of.get(str(row[target]))
        if target in rules.references and row[target]
        else row[target]
        for target in rules.targets
    }


def compare_account(
    desired: Mapping[str, object], account: Account | None, rules: PlanRules
) -> dict[str, list[object]] | None:
    """``{target: [old, new]}`` for what differs, compared as the plan compares (trimmed,
    case-folded where the app is case-insensitive, create-only skipped); None without an
    account. References compare remote id to remote id."""
    if account is None:
        return None
    targets = list(rules.targets)
    wanted = pd.DataFrame([[desired.get(t) for t in targets]], columns=targets, dtype=object)
    current = [account.attributes.get(t) for t in targets]
    actual = pd.DataFrame([current], columns=targets, dtype=object)
    return diff_attributes(wanted, actual, rules)[0] or {}


def mapping_rows(
    preview: list[PreviewRow], desired: Mapping[str, object], match: Match, rules: PlanRules
) -> list[MappingRow]:
    """One row per target: the preview's source and notes, the sync's desired value, the
    account's current value and whether the plan would see them differ."""
    account = match.account
    changes = compare_account(desired, account, rules)
    rows: list[MappingRow] = []
    for row in preview:
        notes = [
            "unique: checked against the app's accounts" if note.startswith("unique:") else note
            for note in row.notes
        ]
        if row.target in rules.references and row.value:
            notes.append(f"manager {row.value}" + ("" if desired[row.target] else ": no account"))
        comparable = changes is not None and row.target not in rules.create_only
        rows.append(
            MappingRow(
                target=row.target,
                kind=row.kind,
                source=row.source,
                desired=desired.get(row.target),
                current=account.attributes.get(row.target) if account else None,
                differs=(row.target in (changes or {})) if comparable else None,
                notes=tuple(notes),
            )
        )
    return rows


#: the ``actions`` gate each planned action needs (a link writes what differs: update)
_GATE = {
    PlannedAction.CREATE: "create",
    PlannedAction.UPDATE: "update",
    PlannedAction.LINK: "update",
    PlannedAction.DEACTIVATE: "deactivate",
    PlannedAction.DELETE: "delete",
}


def policy_lines(plan: Mapping[str, Any], app: AppConfig, safety: Safety, linked: int) -> list[str]:
    """The app settings behind the planned action, one line each, in words."""
    action, situation = str(plan["action"]), str(plan["situation"])
    enabled = ", ".join(sorted(a.value for a in app.actions))
    lines: list[str] = []
    if situation == Situation.GONE:
        lines.append(f"on_missing: {app.on_missing.value} ({_origin(app, 'on_missing')})")
    if situation in (Situation.DEPROVISION, Situation.DEPROVISIONED):
        lines.append(f"deprovision: {app.deprovision.value} ({_origin(app, 'deprovision')})")
    if situation == Situation.MATCHED:
        lines.append(f"match_on: {', '.join(app.match_on)} (first attribute that finds one)")
    gate = _GATE.get(PlannedAction(action))
    if gate and (action != PlannedAction.LINK or plan.get("changes")):
        lines.append(f"{gate}: enabled (actions: {enabled})")
    note = str(plan.get("note") or "")
    if action == PlannedAction.REPORT and note.endswith("is not enabled for this app"):
        lines.append(f"{note.split()[0]}: not enabled (actions: {enabled}): reported instead")
    if action in DESTRUCTIVE or (situation == Situation.GONE and action == PlannedAction.CREATE):
        lines.append(safety_line(safety, linked))
    if app.create_only:
        lines.append("create_only: " + ", ".join(sorted(app.create_only)) + " (never updated)")
    return lines


def safety_line(safety: Safety, linked: int) -> str:
    """When the guard would hold this action; it counts the whole run, which explain does
    not plan, so it can only say from how many."""
    threshold = max(safety.min_deprovision_count, math.floor(safety.max_deprovision_share * linked))
    return (
        f"safety: held for approval if the run deprovisions (or re-creates) {threshold + 1} or"
        f" more of the app's {linked} linked accounts (more than"
        f" {safety.max_deprovision_share:.0%} and more than {safety.min_deprovision_count}):"
        " depends on the whole run"
    )


def _origin(app: AppConfig, setting: str) -> str:
    return "app setting" if setting in app.model_fields_set else "default"


def consistency_notes(scope: ScopeDecision, desired: pd.DataFrame, person: Person) -> list[str]:
    """A scope rule the plan's ``build_desired`` does not know would make explain say one
    thing and the sync do another: say so rather than hide it."""
    planned = bool(desired["in_scope"].iloc[0])
    if planned == scope.in_scope:
        return []
    return [
        f"the scope step says {'in' if scope.in_scope else 'out of'} scope but the plan takes"
        f" {person.user['user_name']} as {'in' if planned else 'out of'} scope"
    ]
