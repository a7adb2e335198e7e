"""The expression language's syntax: text to an AST of frozen dataclasses. Never evaluated
by Python: the tokenizer and a small recursive-descent parser are all there is.

Grammar (``directory.expressions`` has the functions)::

    expression := postfix [ ("==" | "!=") postfix ]
    postfix    := primary { "[" expression "]" }          (index a list or a text; no
                                                           space before the "[")
    primary    := call | field | STRING | INTEGER | "true" | "false" | "null"
                | "(" expression ")"
    call       := NAME "(" [ expression { "," expression } ] ")"
    field      := "[" NAME "]"                            (a directory field)

STRING is double-quoted with the escapes ``\\"  \\\\  \\n  \\t  \\uXXXX``; INTEGER is
``-?[0-9]+``; names and keywords are case-insensitive. Columns count from 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: longer expressions are refused: a mapping entry is one line of intent, not a program
MAX_LENGTH = 2000
#: calls and parentheses nest at most this deep (no RecursionError from a hostile file)
MAX_DEPTH = 32

KEYWORDS: dict[str, str | bool | int | None] = {"true": True, "false": False, "null": None}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "/": "/"}
_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<number>-?[0-9]+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>==|!=|[\[\](),])"
)


class ExpressionError(ValueError):
    """The text is not a valid expression; ``column`` (from 1) points at the problem."""

    def __init__(self, text: str, column: int, problem: str) -> None:
        super().__init__(f"at column {column}: {problem}")
        self.text = text
        self.column = column
        self.problem = problem

    def pointer(self) -> str:
        """The expression on one line and a caret under the column."""
        line = re.sub(r"\s", " ", self.text)
        return f"{line}\n{' ' * (self.column - 1)}^"


@dataclass(frozen=True)
class Literal:
    value: str | bool | int | None
    column: int


@dataclass(frozen=True)
class FieldRef:
    name: str
    column: int


@dataclass(frozen=True)
class Call:
    #: the lookup key: names are case-insensitive and ignore underscores, so
    #: ``NormalizeDiacritics`` (Entra's spelling) is ``normalize_diacritics``
    name: str
    args: tuple[Node, ...]
    column: int
    #: as written, for messages
    spelled: str = ""


@dataclass(frozen=True)
class Index:
    target: Node
    index: Node
    column: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node
    column: int


Node = Literal | FieldRef | Call | Index | Compare


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, name, op, end
    text: str
    column: int
    value: str | int | None = None
    #: whitespace before it: ``a [0]`` is two values, ``a[0]`` an index
    spaced: bool = False

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the expression"
        return f"{self.kind} {self.text!r}" if self.kind != "op" else repr(self.text)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    spaced = False
    while at < len(text):
        if text[at] == '"':
            token, at = _string(text, at)
            tokens.append(token)
            spaced = False
            continue
        match = _TOKEN.match(text, at)
        if match is None:
            raise ExpressionError(text, at + 1, f"unexpected character {text[at]!r}")
        kind = match.lastgroup or ""
        if kind == "number":
            tokens.append(Token(kind, match.group(), at + 1, int(match.group()), spaced))
        elif kind != "space":
            tokens.append(Token(kind, match.group(), at + 1, None, spaced))
        spaced = kind == "space"
        at = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _string(text: str, start: int) -> tuple[Token, int]:
    chars: list[str] = []
    at = start + 1
    while at < len(text):
        char = text[at]
        if char == '"':
            return Token("string", text[start : at + 1], start + 1, "".join(chars)), at + 1
        if char == "\\":
            escape = text[at + 1 : at + 2]
            if escape in _ESCAPES:
                chars.append(_ESCAPES[escape])
                at += 2
                continue
            digits = text[at + 2 : at + 6]
            if escape == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
                chars.append(chr(int(digits, 16)))
                at += 6
                continue
            raise ExpressionError(text, at + 1, f"unknown escape '\\{escape}' in a string")
        chars.append(char)
        at += 1
    raise ExpressionError(text, start + 1, "string is not closed (a '\"' is missing)")


def function_key(name: str) -> str:
    return name.lower().replace("_", "")


def parse(text: str) -> Node:
    """The AST of ``text``; raises ExpressionError with the column of the first problem."""
    if not text.strip():
        raise ExpressionError(text, 1, "the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(text, MAX_LENGTH + 1, f"longer than {MAX_LENGTH} characters")
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.at = 0

    def parse(self) -> Node:
        node = self.expression(0)
        rest = self.peek()
        if rest.kind != "end":
            raise self.error(rest, f"unexpected {rest.describe()} after a complete expression")
        return node

    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def error(self, token: Token, problem: str) -> ExpressionError:
        return ExpressionError(self.text, token.column, problem)

    def expect(self, op: str, where: str) -> Token:
        token = self.take()
        if token.kind != "op" or token.text != op:
            raise self.error(token, f"expected '{op}' {where}, found {token.describe()}")
        return token

    def expression(self, depth: int) -> Node:
        left = self.postfix(depth)
        token = self.peek()
        if token.kind == "op" and token.text in ("==", "!="):
            self.take()
            return Compare(token.text, left, self.postfix(depth), token.column)
        return left

    def postfix(self, depth: int) -> Node:
        node = self.primary(depth)
        while self.peek().kind == "op" and self.peek().text == "[" and not self.peek().spaced:
            bracket = self.take()
            index = self.expression(depth + 1)
            self.expect("]", "to close the index")
            node = Index(node, index, bracket.column)
        return node

    def primary(self, depth: int) -> Node:
        token = self.take()
        if depth > MAX_DEPTH:
            raise self.error(token, f"nested more than {MAX_DEPTH} deep")
        if token.kind == "string":
            return Literal(token.value, token.column)
        if token.kind == "number":
            return Literal(token.value, token.column)
        if token.kind == "name":
            return self.name(token, depth)
        if token.kind == "op" and token.text == "[":
            name = self.take()
            if name.kind != "name":
                raise self.error(name, f"expected a field name after '[', found {name.describe()}")
            self.expect("]", f"after the field name {name.text!r}")
            return FieldRef(name.text.lower(), name.column)
        if token.kind == "op" and token.text == "(":
            inner = self.expression(depth + 1)
            self.expect(")", "to close the parenthesis")
            return inner
        raise self.error(token, f"expected a value, found {token.describe()}")

    def name(self, token: Token, depth: int) -> Node:
        lowered = token.text.lower()
        if lowered in KEYWORDS:
            return Literal(KEYWORDS[lowered], token.column)
        if not (self.peek().kind == "op" and self.peek().text == "("):
            raise self.error(
                token,
                f"{token.text!r} is not a function call or a value; write a directory field"
                f" as [{token.text}] and text in double quotes",
            )
        self.take()
        args: list[Node] = []
        if self.peek().text == ")" and self.peek().kind == "op":
            self.take()
            return Call(function_key(token.text), (), token.column, token.text)
        while True:
            args.append(self.expression(depth + 1))
            sep = self.take()
            if sep.kind == "op" and sep.text == ")":
                return Call(function_key(token.text), tuple(args), token.column, token.text)
            if not (sep.kind == "op" and sep.text == ","):
                raise self.error(
                    sep,
                    f"expected ',' or ')' in the arguments of {token.text}, found {sep.describe()}",
                )
