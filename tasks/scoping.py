"""Scoping, pure and vectorised: which directory users an app's filters let in, and why.

Filters are ORed, the clauses of one filter ANDed (``directory.scoping``). Null is a
missing value or "": it equals nothing, so ``not_equals`` holds for it and every other
operator but ``is_null`` fails. ``greater``/``less`` compare numbers as numbers and ISO
dates as dates (UTC when the value says nothing); a value that is neither fails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from directory.scoping import ORDERING, ScopeClause, ScopeFilter, ScopeOperator, ordering_value

#: columns of ``evaluate_scoping``'s frame
SCOPE_COLUMNS = ("user_id", "in_scope", "matched_filter", "failed_clauses")


def evaluate_scoping(users: pd.DataFrame, filters: Sequence[ScopeFilter]) -> pd.DataFrame:
    """One row per user: ``in_scope``; ``matched_filter``, the first filter that holds
    (1-based, 0: none); ``failed_clauses``, per filter the first clause that fails (1-based,
    0: the filter holds). No filters: everyone is in scope."""
    n = len(users)
    if not filters:
        return pd.DataFrame(
            {
                "user_id": users["user_id"].to_numpy(dtype=object),
                "in_scope": np.ones(n, dtype=bool),
                "matched_filter": np.zeros(n, dtype=np.int64),
                "failed_clauses": pd.Series([()] * n, dtype=object),
            }
        )
    failed = np.column_stack([_first_failure(users, f) for f in filters])
    holds = failed == 0
    in_scope = holds.any(axis=1)
    matched = np.where(in_scope, holds.argmax(axis=1) + 1, 0)
    return pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy(dtype=object),
            "in_scope": in_scope,
            "matched_filter": matched.astype(np.int64),
            "failed_clauses": pd.Series([tuple(map(int, row)) for row in failed], dtype=object),
        }
    )


def explain_scope(decision: pd.Series, filters: Sequence[ScopeFilter]) -> str:
    """One user's row of ``evaluate_scoping`` in words: "in scope: filter 2 matched", or
    "out of scope: filter 1 clause 2 (title regex ^Sen) failed; filter 2 ..."."""
    if not filters:
        return "in scope: no scoping filters"
    if decision["in_scope"]:
        return f"in scope: filter {int(decision['matched_filter'])} matched"
    reasons = [
        f"filter {i} clause {c} ({filters[i - 1].all[c - 1].describe()}) failed"
        for i, c in enumerate(decision["failed_clauses"], start=1)
    ]
    return "out of scope: " + "; ".join(reasons)


def clause_holds(users: pd.DataFrame, clause: ScopeClause) -> np.ndarray:
    """Per user, whether the clause holds."""
    column = users[clause.attribute].astype(object)
    text = _text(column)
    null = text == ""
    op, value = clause.op, clause.value
    if op is ScopeOperator.IS_NULL:
        return null
    if op is ScopeOperator.IS_NOT_NULL:
        return ~null
    if op in ORDERING:
        return _ordered(column, value, greater=op is ScopeOperator.GREATER) & ~null
    if op is ScopeOperator.IN:
        wanted = {_scalar_text(v) for v in value} if isinstance(value, list) else set()
        return np.isin(text, list(wanted)) & ~null
    wanted_text = _scalar_text(value)
    if op is ScopeOperator.NOT_EQUALS:
        return text != wanted_text
    series = pd.Series(text, dtype=object)
    if op is ScopeOperator.EQUALS:
        holds = series == wanted_text
    elif op is ScopeOperator.STARTS_WITH:
        holds = series.str.startswith(wanted_text)
    elif op is ScopeOperator.ENDS_WITH:
        holds = series.str.endswith(wanted_text)
    else:  # regex: search, as Python's re does, so "^" anchors when wanted
        pattern = re.compile(wanted_text)
        holds = series.map(lambda s: pattern.search(s) is not None)
    return holds.to_numpy(dtype=bool) & ~null


def _first_failure(users: pd.DataFrame, scope: ScopeFilter) -> np.ndarray:
    """Per user, the 1-based number of the filter's first failing clause, 0 if none fails."""
    result = np.zeros(len(users), dtype=np.int64)
    for number, clause in reversed(list(enumerate(scope.all, start=1))):
        result[~clause_holds(users, clause)] = number
    return result


def _text(column: pd.Series) -> np.ndarray:
    """Each value as trimmed text ("" for null); booleans as true/false, like YAML."""
    return np.array([_scalar_text(v) for v in column.tolist()], dtype=object)


def _scalar_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value).strip()


def _ordered(column: pd.Series, value: object, *, greater: bool) -> np.ndarray:
    bound = ordering_value(value)
    text = pd.Series(_text(column), dtype=object).replace("", None)
    if isinstance(bound, datetime):
        moments = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        limit = pd.Timestamp(bound if bound.tzinfo else bound.replace(tzinfo=UTC))
        holds = (moments > limit) if greater else (moments < limit)  # NaT compares False
        return holds.to_numpy(dtype=bool)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    return (numbers > bound) if greater else (numbers < bound)  # NaN compares False
