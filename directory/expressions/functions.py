"""The functions an expression may call, with their arity, and what they are given.

Values are text, booleans, whole numbers, lists (from ``split``) and null. Functions are
null-tolerant: text functions return null for a null input, so a ``default`` on the mapping
entry still applies. A function that cannot do its job (``left`` with a negative count, a
date that does not match its format) raises EvaluationError, which names the function.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

Value = str | bool | int | list[str] | None

#: characters ``normalize_diacritics`` spells out: they have no combining-mark decomposition
_LETTERS = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d",
     "Đ": "D", "þ": "th", "Þ": "Th", "œ": "oe", "Œ": "OE", "\u0131": "i"}
)  # fmt: skip
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
#: ``unique`` tries suffixes 2, 3, ... up to this before giving up
MAX_SUFFIX = 10_000
MAX_RANDOM = 64


class EvaluationError(Exception):
    """An expression could not be evaluated for one user."""


def _never_taken(value: str) -> bool:
    return False


@dataclass(frozen=True)
class Context:
    """What an evaluation may know beyond the user's fields: the user's id (it seeds
    ``random_string``) and, for ``unique``, whether a value is taken by someone else."""

    user_id: str = ""
    is_taken: Callable[[str], bool] = field(default=_never_taken)


class Holders(Protocol):
    """Who holds which values of one target, for ``unique``: ``TakenValues`` from a whole
    listing, or a lookup in the app for one person (``tasks.provision``)."""

    def taken_for(self, user_id: str) -> Callable[[str], bool]: ...

    def hold(self, value: str, holder: str | None) -> None: ...


class TakenValues:
    """The values one target already has, and who holds each, for ``unique``.

    A holder is a directory user id, or None for an account no directory user is linked
    to. A value is taken for a user when anyone else holds it: another account in the app,
    or another directory user who claimed it earlier in the same run. Values are compared
    case-folded (RFC 7643 §4.1.1: userName is caseExact=false, so "Ann" takes "ann").
    """

    def __init__(self, held: Iterable[tuple[str, str | None]] = ()) -> None:
        self._holders: dict[str, set[str | None]] = {}
        for value, holder in held:
            self.hold(value, holder)

    def hold(self, value: str, holder: str | None) -> None:
        self._holders.setdefault(value.casefold(), set()).add(holder)

    def taken_for(self, user_id: str) -> Callable[[str], bool]:
        def is_taken(value: str) -> bool:
            return any(h != user_id for h in self._holders.get(value.casefold(), ()))

        return is_taken


@dataclass(frozen=True)
class Function:
    run: Callable[[list[Value], Context], Value]
    min_args: int
    #: None: any number
    max_args: int | None
    usage: str


def text(value: Value) -> str | None:
    """A value as text: booleans as true/false; a list is refused (index or join it)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        raise EvaluationError("expects text, got a list: index it ([0]) or join it")
    return str(value)


def truthy(value: Value) -> bool:
    """null, false, 0, "", "false", "no" and "0" are false; everything else is true."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0")
    return bool(value)


def equal(left: Value, right: Value) -> bool:
    """Compared as text, with null equal to "" (as the plan compares attributes)."""
    return (text(left) or "") == (text(right) or "")


def _count(value: Value, what: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise EvaluationError(f"{what} must be a whole number of at least {low}, got {value!r}")
    if high is not None and value > high:
        raise EvaluationError(f"{what} must be at most {high}, got {value}")
    return value


def _join(args: list[Value], ctx: Context) -> Value:
    separator = text(args[0]) or ""
    parts: list[str] = []
    for arg in args[1:]:
        for item in arg if isinstance(arg, list) else [arg]:
            if t := text(item):
                parts.append(t)
    return separator.join(parts) if parts else None


def _each(transform: Callable[[str], str]) -> Callable[[list[Value], Context], Value]:
    def run(args: list[Value], ctx: Context) -> Value:
        value = text(args[0])
        return None if value is None else transform(value)

    return run


def normalize_diacritics(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.translate(_LETTERS))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _coalesce(args: list[Value], ctx: Context) -> Value:
    return next((a for a in args if a is not None and a != "" and a != []), None)


def _switch(args: list[Value], ctx: Context) -> Value:
    key = text(args[0])
    pairs = args[2:]
    for at in range(0, len(pairs), 2):
        if text(pairs[at]) == key:
            return pairs[at + 1]
    return args[1]


def _split(args: list[Value], ctx: Context) -> Value:
    value, separator = text(args[0]), text(args[1])
    if not separator:
        raise EvaluationError("the separator is empty")
    return None if value is None else value.split(separator)


def _left(args: list[Value], ctx: Context) -> Value:
    value, n = text(args[0]), _count(args[1], "the length")
    return None if value is None else value[:n]


def _replace(args: list[Value], ctx: Context) -> Value:
    value, old, new = text(args[0]), text(args[1]), text(args[2]) or ""
    if not old:
        raise EvaluationError("the text to replace is empty")
    return None if value is None else value.replace(old, new)


def _format_date(args: list[Value], ctx: Context) -> Value:
    value, given, wanted = text(args[0]), text(args[1]), text(args[2])
    if value is None or value == "":
        return None
    if not given or not wanted:
        raise EvaluationError("the input and output formats must not be empty")
    try:
        return datetime.strptime(value, given).strftime(wanted)
    except ValueError:
        raise EvaluationError(f"{value!r} does not match the format {given!r}") from None


def _unique(args: list[Value], ctx: Context) -> Value:
    candidates = [t for t in (text(a) for a in args) if t]
    if not candidates:
        return None
    for candidate in candidates:
        if not ctx.is_taken(candidate):
            return candidate
    for n in range(2, MAX_SUFFIX):
        suffixed = with_suffix(candidates[0], n)
        if not ctx.is_taken(suffixed):
            return suffixed
    raise EvaluationError(f"no free value for {candidates[0]!r} up to suffix {MAX_SUFFIX - 1}")


def with_suffix(value: str, n: int) -> str:
    """``ann.lee2``; an address keeps its domain: ``ann.lee2@example.com``."""
    local, at, domain = value.rpartition("@")
    return f"{local}{n}@{domain}" if at and local else f"{value}{n}"


def _random_string(args: list[Value], ctx: Context) -> Value:
    """Deterministic per user (seeded by the user id), so a re-run does not drift. Not a
    secret: anyone who knows the id can compute it; never use it as a password."""
    n = _count(args[0], "the length", 1, MAX_RANDOM)
    digest = hashlib.shake_256(f"roster:{ctx.user_id}".encode()).digest(n)
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest)


def _if(args: list[Value], ctx: Context) -> Value:  # evaluated lazily by the evaluator
    return args[1] if truthy(args[0]) else args[2]


_TABLE: dict[str, Function] = {
    "join": Function(_join, 1, None, "join(separator, value, ...)"),
    "lower": Function(_each(str.lower), 1, 1, "lower(text)"),
    "upper": Function(_each(str.upper), 1, 1, "upper(text)"),
    "trim": Function(_each(str.strip), 1, 1, "trim(text)"),
    "coalesce": Function(_coalesce, 1, None, "coalesce(value, ...)"),
    "if": Function(_if, 3, 3, "if(condition, then, else)"),
    "switch": Function(_switch, 2, None, "switch(value, default, key, value, ...)"),
    "normalize_diacritics": Function(
        _each(normalize_diacritics), 1, 1, "normalize_diacritics(text)"
    ),
    "split": Function(_split, 2, 2, "split(text, separator)"),
    "left": Function(_left, 2, 2, "left(text, length)"),
    "replace": Function(_replace, 3, 3, "replace(text, old, new)"),
    "format_date": Function(_format_date, 3, 3, "format_date(value, in_format, out_format)"),
    "unique": Function(_unique, 1, None, "unique(candidate, ...)"),
    "append_suffix_if_taken": Function(_unique, 1, 1, "append_suffix_if_taken(value)"),
    "random_string": Function(_random_string, 1, 1, "random_string(length)"),
}
#: by lookup key (``syntax.function_key``): lower case, no underscores
FUNCTIONS = {name.replace("_", ""): function for name, function in _TABLE.items()}
#: functions whose value depends on the taken values (``Context.is_taken``)
UNIQUE_FUNCTIONS = frozenset({"unique", "appendsuffixiftaken"})
