"""Compiling (parse once, then check every name, field and arity) and evaluating."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from directory.expressions.functions import (
    FUNCTIONS,
    UNIQUE_FUNCTIONS,
    Context,
    EvaluationError,
    Value,
    equal,
    text,
    truthy,
)
from directory.expressions.syntax import (
    Call,
    Compare,
    ExpressionError,
    FieldRef,
    Index,
    Literal,
    Node,
    parse,
)

NO_CONTEXT = Context()


@dataclass(frozen=True)
class CompiledExpression:
    """A checked expression: evaluate it per user with ``evaluate``."""

    text: str
    node: Node
    #: the directory fields it reads
    fields: frozenset[str]
    #: whether it calls ``unique``: its value then depends on the taken values
    uses_unique: bool

    def evaluate(self, row: Mapping[str, object], context: Context = NO_CONTEXT) -> Value:
        """The value for one user; ``row`` holds at least ``fields``. Raises EvaluationError
        ("at column 7: left: ...") when a function cannot do its job for this user."""
        value = _evaluate(self.node, row, context)
        if isinstance(value, list):
            raise EvaluationError("at column 1: the value is a list: index it ([0]) or join it")
        return value


@lru_cache(maxsize=4096)
def compile_expression(source: str, fields: frozenset[str]) -> CompiledExpression:
    """Parse and check ``source``; ``fields`` are the directory fields it may read. Raises
    ExpressionError naming the column. Cached: a mapping entry compiles once per process."""
    node = parse(source)
    used: set[str] = set()
    calls: set[str] = set()
    for sub in _walk(node):
        if isinstance(sub, FieldRef):
            if sub.name not in fields:
                raise ExpressionError(
                    source,
                    sub.column,
                    f"unknown field [{sub.name}]; known fields: {', '.join(sorted(fields))}",
                )
            used.add(sub.name)
        elif isinstance(sub, Call):
            _check_call(source, sub)
            calls.add(sub.name)
    return CompiledExpression(source, node, frozenset(used), bool(calls & UNIQUE_FUNCTIONS))


def _walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Call):
        for arg in node.args:
            yield from _walk(arg)
    elif isinstance(node, Index):
        yield from _walk(node.target)
        yield from _walk(node.index)
    elif isinstance(node, Compare):
        yield from _walk(node.left)
        yield from _walk(node.right)


def _check_call(source: str, call: Call) -> None:
    function = FUNCTIONS.get(call.name)
    if function is None:
        known = ", ".join(sorted(f.usage.split("(")[0] for f in FUNCTIONS.values()))
        raise ExpressionError(
            source, call.column, f"unknown function {call.spelled!r}; known functions: {known}"
        )
    n = len(call.args)
    too_many = function.max_args is not None and n > function.max_args
    odd_pairs = call.name == "switch" and n % 2 != 0  # value, default, then pairs
    if n < function.min_args or too_many or odd_pairs:
        raise ExpressionError(
            source,
            call.column,
            f"{call.spelled} takes {_arity(function.min_args, function.max_args)}, got {n}"
            f" (usage: {function.usage})",
        )


def _arity(low: int, high: int | None) -> str:
    noun = "argument" if (high or low) == 1 else "arguments"
    if high is None:
        return f"at least {low} {noun}"
    return f"{low} {noun}" if low == high else f"{low} to {high} {noun}"


def _evaluate(node: Node, row: Mapping[str, object], context: Context) -> Value:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, FieldRef):
        return _field(row.get(node.name))
    if isinstance(node, Compare):
        same = equal(_evaluate(node.left, row, context), _evaluate(node.right, row, context))
        return same if node.op == "==" else not same
    if isinstance(node, Index):
        return _index(node, row, context)
    if node.name == "if":  # lazy: the branch not taken is not evaluated
        condition = truthy(_evaluate(node.args[0], row, context))
        return _evaluate(node.args[1] if condition else node.args[2], row, context)
    args = [_evaluate(arg, row, context) for arg in node.args]
    try:
        return FUNCTIONS[node.name].run(args, context)
    except EvaluationError as exc:
        if str(exc).startswith("at column"):
            raise
        raise EvaluationError(f"at column {node.column}: {node.spelled}: {exc}") from None


def _field(value: object) -> Value:
    """A directory field as a value: NaN and None are null, numpy scalars plain."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if value != value else str(value)
    item = getattr(value, "item", None)
    return _field(item()) if callable(item) else str(value)


def _index(node: Index, row: Mapping[str, object], context: Context) -> Value:
    target = _evaluate(node.target, row, context)
    at = _evaluate(node.index, row, context)
    if isinstance(at, bool) or not isinstance(at, int):
        raise EvaluationError(f"at column {node.column}: an index must be a number, got {at!r}")
    if target is None:
        return None
    items = target if isinstance(target, list) else text(target) or ""
    try:
        return items[at]
    except IndexError:
        return None
