"""Is one person in scope for one app, and what decided it: the seam scoping plugs into.

Three rules decide, in this order: the person must be assigned the app (directly or
through a group, which may hold the person's own group at any depth), active in the
directory, and let in by the app's scoping filters (``tasks.scoping``).
``ScopeDecision.clause`` says which filter clause decided; the built-in rules leave it
None. ``roster provision`` and ``roster explain`` both read their scope step from
``decide_scope``, so a new rule shows up in both at once. (``build_desired`` makes the
same decision for the plan, over whole frames: keep the two in line.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

import pandas as pd

from directory.fields import DIRECTORY_FIELDS
from directory.scoping import ScopeFilter
from tasks.scoping import evaluate_scoping, explain_scope

#: groups from the one assigned the app down to the person's own: ("Engineering", "Platform")
Chain = tuple[str, ...]


@dataclass(frozen=True)
class Assignment:
    """How a person has an app: directly, through which chains of groups (sorted by the
    group assigned the app), or not at all. A chain names the group assigned the app
    first and the person's own group last; a group the person is in directly is a chain
    of one."""

    direct: bool
    chains: tuple[Chain, ...] = ()

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups assigned the app that reach the person."""
        return tuple(chain[0] for chain in self.chains)

    @property
    def assigned(self) -> bool:
        return self.direct or bool(self.chains)

    def describe(self) -> str:
        """``directly and via group Engineering > Platform``; ``not assigned``."""
        via = ["directly"] if self.direct else []
        via += [f"via group {' > '.join(chain)}" for chain in self.chains]
        return " and ".join(via) or "not assigned"


@dataclass(frozen=True)
class ScopeDecision:
    in_scope: bool
    #: in words, for people: what decided it
    reason: str
    #: the scoping filter clause that decided, None when the built-in rules did
    clause: str | None = None


def assignment_of(
    user: Mapping[str, Any],
    group_apps: Mapping[str, Set[str]],
    app: str,
    chains: Mapping[str, Chain] | None = None,
) -> Assignment:
    """``user``: ``Store.find_user``'s dict (``direct_apps``); ``group_apps``: the apps
    each of the person's groups gives, nested ones included; ``chains``:
    ``Store.group_chains`` (a group missing from it is the person's own)."""
    chains = chains or {}
    groups = sorted(g for g, apps in group_apps.items() if app in apps)
    return Assignment(app in user["direct_apps"], tuple(chains.get(g, (g,)) for g in groups))


def decide_scope(
    user: Mapping[str, Any],
    assignment: Assignment,
    scoping: Sequence[ScopeFilter] = (),
) -> ScopeDecision:
    """In scope when assigned, active and let in by the filters; the reason names every
    rule that failed, and for filters the clause that decided."""
    active = bool(user["active"])
    if not assignment.assigned:
        inactive = "" if active else "; inactive in the directory"
        return ScopeDecision(False, "not assigned this app" + inactive)
    if not active:
        return ScopeDecision(False, f"inactive in the directory (assigned {assignment.describe()})")
    assigned = f"active; assigned {assignment.describe()}"
    if not scoping:
        return ScopeDecision(True, assigned)
    row = pd.DataFrame([{c: user.get(c) for c in DIRECTORY_FIELDS}], dtype=object)
    decision = evaluate_scoping(row, scoping).iloc[0]
    clause = explain_scope(decision, scoping)
    return ScopeDecision(bool(decision["in_scope"]), f"{assigned}; {clause}", clause)
