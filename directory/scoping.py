"""An app's scoping filters and remediation policy, as ``roster.yaml`` states them.

Scoping narrows who an app is for, beyond active and assigned::

    scoping:
      - all:                                   # filter 1: every clause must hold
          - {attribute: department, op: equals, value: Engineering}
          - {attribute: title, op: regex, value: "^Sen"}
      - all:                                   # or filter 2
          - {attribute: employee_number, op: greater, value: 1000}

Remediation says what a sync does with drift, per attribute::

    remediation:
      default: enforce                         # the directory wins: written
      attributes: {title: report, displayName: ignore}
      status: report                           # re-enabled by hand: only reported

The evaluation (pandas) is ``tasks.scoping``; the plan applies the policy.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from directory.fields import DIRECTORY_FIELDS


class ScopeOperator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    REGEX = "regex"
    IS_NULL = "is_null"
    IS_NOT_NULL = "is_not_null"
    GREATER = "greater"
    LESS = "less"


#: operators that take no value
UNARY = frozenset({ScopeOperator.IS_NULL, ScopeOperator.IS_NOT_NULL})
#: operators that order values: numbers as numbers, ISO dates as dates
ORDERING = frozenset({ScopeOperator.GREATER, ScopeOperator.LESS})

Scalar = str | bool | int | float


class ScopeClause(BaseModel):
    """``{attribute: title, op: regex, value: "^Sen"}``: one condition on a directory field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    attribute: str
    op: ScopeOperator
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> ScopeClause:
        if self.attribute not in DIRECTORY_FIELDS:
            raise ValueError(
                f"unknown directory field {self.attribute!r}; known fields: "
                + ", ".join(DIRECTORY_FIELDS)
            )
        problem = _value_problem(self.op, self.value)
        if problem:
            raise ValueError(f"clause ({self.describe()}): {problem}")
        return self

    def describe(self) -> str:
        """``title regex ^Sen``: the clause in words, for errors and ``explain``."""
        if self.op in UNARY:
            return f"{self.attribute} {self.op.value}"
        value = self.value
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        return f"{self.attribute} {self.op.value} {shown}"


def _value_problem(op: ScopeOperator, value: Any) -> str | None:
    if op in UNARY:
        return None if value is None else "takes no value"
    if value is None:
        return "needs a value"
    if op is ScopeOperator.IN:
        return None if isinstance(value, list) and value else "needs a non-empty list of values"
    if isinstance(value, list):
        return "takes one value, not a list (use op: in)"
    if op is ScopeOperator.REGEX:
        try:
            re.compile(str(value))
        except re.error as exc:
            return f"invalid regular expression: {exc}"
    if op in ORDERING and ordering_value(value) is None:
        return "needs a number or an ISO date (2024-01-31)"
    return None


def ordering_value(value: Any) -> float | datetime | None:
    """What ``greater``/``less`` compare with: a number, or an ISO date or date-time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) else None


class ScopeFilter(BaseModel):
    """``{all: [clause, ...]}``: in scope when every clause holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    all: list[ScopeClause] = Field(min_length=1)


class Remediation(StrEnum):
    """What a sync does when an account differs from the directory."""

    #: the directory wins: the difference is written (and reported)
    ENFORCE = "enforce"
    #: in the drift report, nothing written
    REPORT = "report"
    #: neither: not compared at all
    IGNORE = "ignore"


class RemediationPolicy(BaseModel):
    """Per attribute; ``status`` is for an account re-enabled in the app by hand while the
    directory has it out of scope: always reported, and disabled again unless ``report``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    default: Remediation = Remediation.ENFORCE
    attributes: dict[str, Remediation] = Field(default_factory=dict)
    status: Remediation = Remediation.ENFORCE

    @field_validator("status")
    @classmethod
    def _status_is_reported(cls, status: Remediation) -> Remediation:
        if status is Remediation.IGNORE:
            raise ValueError("use enforce or report: status drift is always reported")
        return status

    def for_target(self, target: str) -> Remediation:
        return self.attributes.get(target, self.default)
