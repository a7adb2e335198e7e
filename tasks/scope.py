"""Is one person in scope for one app, and what decided it: the seam scoping plugs into.

Today two rules decide, in this order: the person must be assigned the app (directly or
through a group) and active in the directory. ``ScopeDecision.clause`` is for the scoping
filters to come: the filter clause that put the person out (or in); the built-in rules
leave it None. ``roster provision`` and ``roster explain`` both read their scope step
from ``decide_scope``, so a new rule shows up in both at once. (``build_desired`` makes
the same decision for the plan, over whole frames: keep the two in line.)
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Assignment:
    """How a person has an app: directly, through which groups (sorted), or not at all."""

    direct: bool
    groups: tuple[str, ...] = ()

    @property
    def assigned(self) -> bool:
        return self.direct or bool(self.groups)

    def describe(self) -> str:
        """``directly and via group sales``; ``not assigned`` when neither."""
        via = ["directly"] if self.direct else []
        via += [f"via group {group}" for group in self.groups]
        return " and ".join(via) or "not assigned"


@dataclass(frozen=True)
class ScopeDecision:
    in_scope: bool
    #: in words, for people: what decided it
    reason: str
    #: the scoping filter clause that decided, None when the built-in rules did
    clause: str | None = None


def assignment_of(
    user: Mapping[str, Any], group_apps: Mapping[str, Set[str]], app: str
) -> Assignment:
    """``user``: ``Store.find_user``'s dict (``direct_apps``); ``group_apps``: the apps
    each of the person's groups gives."""
    groups = tuple(sorted(g for g, apps in group_apps.items() if app in apps))
    return Assignment(app in user["direct_apps"], groups)


def decide_scope(user: Mapping[str, Any], assignment: Assignment) -> ScopeDecision:
    """In scope when assigned and active; the reason names every rule that failed."""
    active = bool(user["active"])
    if not assignment.assigned:
        inactive = "" if active else "; inactive in the directory"
        return ScopeDecision(False, "not assigned this app" + inactive)
    if not active:
        return ScopeDecision(False, f"inactive in the directory (assigned {assignment.describe()})")
    return ScopeDecision(True, f"active; assigned {assignment.describe()}")
