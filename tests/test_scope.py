"""The scope seam (``tasks.scope``) and explain's policy lines: literal inputs, exact outputs."""

from __future__ import annotations

from directory.config import Safety
from tasks.explain import safety_line
from tasks.scope import Assignment, ScopeDecision, assignment_of, decide_scope

ACTIVE = {"active": True, "direct_apps": ["wiki"]}
INACTIVE = {"active": False, "direct_apps": []}


def test_the_assignment_path_names_direct_and_every_group_in_order() -> None:
    groups = {"sales": {"chat"}, "eng": {"chat", "wiki"}, "ops": set()}
    assert assignment_of(ACTIVE, groups, "wiki") == Assignment(True, (("eng",),))
    assert assignment_of(ACTIVE, groups, "chat") == Assignment(False, (("eng",), ("sales",)))
    assert Assignment(True, (("eng",),)).describe() == "directly and via group eng"
    assert Assignment(False).describe() == "not assigned"


def test_the_assignment_path_names_the_chain_of_nested_groups() -> None:
    groups = {"Engineering": {"chat"}, "Platform": set(), "Sales": {"chat"}}
    chains = {"Engineering": ("Engineering", "Platform"), "Platform": ("Platform",)}
    assignment = assignment_of(ACTIVE, groups, "chat", chains)
    assert assignment == Assignment(False, (("Engineering", "Platform"), ("Sales",)))
    assert assignment.groups == ("Engineering", "Sales")
    assert assignment.describe() == "via group Engineering > Platform and via group Sales"


def test_scope_says_every_rule_that_failed_and_leaves_clause_to_filters() -> None:
    assert decide_scope(ACTIVE, Assignment(False, (("eng",),))) == ScopeDecision(
        True, "active; assigned via group eng", None
    )
    assert decide_scope(INACTIVE, Assignment(False)) == ScopeDecision(
        False, "not assigned this app; inactive in the directory"
    )
    assert decide_scope(INACTIVE, Assignment(True)) == ScopeDecision(
        False, "inactive in the directory (assigned directly)"
    )


def test_the_safety_line_gives_the_first_count_that_is_held() -> None:
    line = safety_line(Safety(max_deprovision_share=0.2, min_deprovision_count=10), 100)
    assert "21 or more of the app's 100 linked accounts" in line
    assert "11 or more" in safety_line(Safety(), 3)
