"""Mapping expressions: a small, safe language for a target attribute's value, in the
style of Entra's attribute mappings::

    Lower(Join(".", NormalizeDiacritics([given_name]), [family_name]))

It is parsed (``syntax``) into frozen dataclasses and walked (``evaluate``); nothing is
ever handed to Python's ``eval``. Pure: no pandas, no I/O.

* ``[field]`` reads a directory field; ``"text"`` with ``\\"``-style escapes; whole
  numbers; ``true``, ``false``, ``null``; ``a == b`` and ``a != b`` (as text, null equal
  to ""); ``value[0]`` indexes a list (from ``split``) or a text, out of range is null.
* Function names are case-insensitive: ``Join`` = ``join``. Each function, its arity and
  its null rules are in ``functions.FUNCTIONS``.
* ``unique(candidate, ...)`` (and ``append_suffix_if_taken(value)``) return the first
  candidate nobody else holds, else the first candidate with a number appended (2, 3, ...;
  before the ``@`` of an address). What is taken comes in through ``Context.is_taken``:
  ``tasks.desired`` builds a ``TakenValues`` per target from the app's accounts (their
  holders from the links) and claims each in-scope user's value as it goes, in directory
  order, so two new users never get the same value and a user keeps the value their own
  account holds.
* ``random_string(n)`` is derived from the user id: the same on every run, and no secret.

``compile_expression`` parses and checks once (unknown function, wrong arity, unknown
field: ExpressionError with the column); ``CompiledExpression.evaluate`` runs per user.
"""

from directory.expressions.evaluate import CompiledExpression, compile_expression
from directory.expressions.functions import (
    FUNCTIONS,
    Context,
    EvaluationError,
    Holders,
    TakenValues,
    Value,
    normalize_diacritics,
    with_suffix,
)
from directory.expressions.syntax import ExpressionError, parse

__all__ = [
    "FUNCTIONS",
    "CompiledExpression",
    "Context",
    "EvaluationError",
    "ExpressionError",
    "Holders",
    "TakenValues",
    "Value",
    "compile_expression",
    "normalize_diacritics",
    "parse",
    "with_suffix",
]
