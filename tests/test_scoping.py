"""Scoping filters on literal frames: each operator, AND within a filter, OR across
filters, nulls, numbers and dates, and the explanation of each decision."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from directory.scoping import ScopeClause, ScopeFilter
from tasks.desired import build_desired
from tasks.scoping import clause_holds, evaluate_scoping, explain_scope

#: five users; u4 has nulls (None, or "") everywhere it can
USERS = pd.DataFrame(
    {
        "user_id": ["u1", "u2", "u3", "u4", "u5"],
        "user_name": ["ann", "bob", "cy", "dee", "eve"],
        "department": ["Engineering", "Sales", "Engineering", None, "Support"],
        "title": ["Senior Engineer", "Account Exec", "Engineer", "", "Senior Agent"],
        "employee_number": ["1500", "900", "10000", None, "n/a"],
        # a date-valued field: directory values are text, ISO dates compare as dates
        "display_name": ["2024-03-01", "2023-12-31", "2024-01-01T12:00:00+02:00", None, "soon"],
        "active": [True, True, False, True, True],
    },
    dtype=object,
)


def holds(op: str, value: Any = None, attribute: str = "department") -> list[str]:
    clause = ScopeClause(attribute=attribute, op=op, value=value)  # type: ignore[arg-type]
    return USERS.loc[clause_holds(USERS, clause), "user_id"].tolist()


@pytest.mark.parametrize(
    ("op", "value", "attribute", "expected"),
    [
        ("equals", "Engineering", "department", ["u1", "u3"]),
        ("not_equals", "Engineering", "department", ["u2", "u4", "u5"]),  # null is not equal
        ("in", ["Sales", "Support"], "department", ["u2", "u5"]),
        ("starts_with", "Senior", "title", ["u1", "u5"]),
        ("ends_with", "Engineer", "title", ["u1", "u3"]),
        ("regex", "^(Account|Senior A)", "title", ["u2", "u5"]),
        ("regex", "Exec", "title", ["u2"]),  # a search, not a full match
        ("is_null", None, "title", ["u4"]),  # "" is null too
        ("is_not_null", None, "department", ["u1", "u2", "u3", "u5"]),
        ("equals", True, "active", ["u1", "u2", "u4", "u5"]),  # booleans compare as YAML's
        ("equals", "false", "active", ["u3"]),
    ],
)
def test_each_operator(op: str, value: Any, attribute: str, expected: list[str]) -> None:
    assert holds(op, value, attribute) == expected


def test_numbers_compare_as_numbers_and_non_numbers_never_hold() -> None:
    # as text "900" > "10000"; as numbers it is less. "n/a" and null hold for neither.
    assert holds("greater", 1000, "employee_number") == ["u1", "u3"]
    assert holds("less", "1000", "employee_number") == ["u2"]
    assert holds("greater", 899.5, "employee_number") == ["u1", "u2", "u3"]


def test_iso_dates_compare_as_dates_with_time_zones() -> None:
    # u3 is 2024-01-01T10:00Z: after the first of January at midnight UTC, before noon UTC
    assert holds("greater", "2024-01-01", "display_name") == ["u1", "u3"]
    assert holds("less", "2024-01-01T11:00:00Z", "display_name") == ["u2", "u3"]
    assert holds("less", "2024-01-01T09:59:59+00:00", "display_name") == ["u2"]


def test_clauses_are_anded_and_filters_ored_and_the_deciding_clause_is_kept() -> None:
    filters = [
        ScopeFilter.model_validate(
            {
                "all": [
                    {"attribute": "department", "op": "equals", "value": "Engineering"},
                    {"attribute": "title", "op": "regex", "value": "^Sen"},
                ]
            }
        ),
        ScopeFilter.model_validate(
            {"all": [{"attribute": "employee_number", "op": "less", "value": 1000}]}
        ),
    ]
    decisions = evaluate_scoping(USERS, filters)
    expected = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "in_scope": [True, True, False, False, False],
            "matched_filter": [1, 2, 0, 0, 0],
            "failed_clauses": [(0, 1), (1, 0), (2, 1), (1, 1), (1, 1)],
        }
    ).astype({"failed_clauses": object})
    pd.testing.assert_frame_equal(decisions, expected)
    by_user = decisions.set_index("user_id", drop=False)
    assert explain_scope(by_user.loc["u2"], filters) == "in scope: filter 2 matched"
    assert explain_scope(by_user.loc["u3"], filters) == (
        "out of scope: filter 1 clause 2 (title regex ^Sen) failed;"
        " filter 2 clause 1 (employee_number less 1000) failed"
    )


def test_no_filters_lets_everyone_in() -> None:
    decisions = evaluate_scoping(USERS, [])
    assert decisions["in_scope"].tolist() == [True] * 5
    assert explain_scope(decisions.iloc[0], []) == "in scope: no scoping filters"


def test_build_desired_needs_active_assigned_and_scoped() -> None:
    engineering = [
        ScopeFilter.model_validate(
            {"all": [{"attribute": "department", "op": "equals", "value": "Engineering"}]}
        )
    ]
    assigned = {"u1", "u2", "u3"}
    desired = build_desired(USERS, assigned, {"userName": "user_name"}, scoping=engineering)
    # u2 is assigned but in Sales; u3 is in Engineering but inactive
    assert desired["in_scope"].tolist() == [True, False, False, False, False]
