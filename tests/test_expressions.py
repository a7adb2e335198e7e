"""The mapping expression language: one table of literal input → exact output or error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from directory.appbase import EXPRESSION_FIELDS
from directory.expressions import (
    Context,
    EvaluationError,
    ExpressionError,
    TakenValues,
    Value,
    compile_expression,
)

ROW: dict[str, object] = {
    "user_id": "u-42",
    "user_name": "zoe.nunez",
    "email": "Zoe.Nunez@Example.com",
    "given_name": "Zoë",
    "family_name": "Núñez García",
    "display_name": "Zoë Núñez García",
    "department": None,
    "title": "Engineer",
    "employee_number": "E00042",
    "active": True,
}
#: held by other accounts in the app (``unique``'s taken values)
TAKEN = ("zoe.nunez", "ZNUNEZ", "zoe.nunez2", "ann@example.com")


@dataclass(frozen=True)
class Fails:
    """An error: compiling (``ExpressionError``) or evaluating (``EvaluationError``)."""

    message: str


def run(source: str) -> Value | Fails:
    taken = TakenValues((value, "someone-else") for value in TAKEN)
    taken.hold("zoe.own", "u-42")  # the user's own account holds this one: not taken
    context = Context(user_id="u-42", is_taken=taken.taken_for("u-42"))
    try:
        return compile_expression(source, EXPRESSION_FIELDS).evaluate(ROW, context)
    except (ExpressionError, EvaluationError) as exc:
        return Fails(str(exc))


TABLE: list[tuple[str, Value | Fails]] = [
    # literals and fields
    ('"plain"', "plain"),
    (r'"quote \" backslash \\ tab\t"', 'quote " backslash \\ tab\t'),
    (r'"\u00e9t\u00e9"', "été"),
    ("42", 42),
    ("-7", -7),
    ("TRUE", True),
    ("null", None),
    ("[given_name]", "Zoë"),
    ("[Given_Name]", "Zoë"),
    ("[department]", None),
    ("[active]", True),
    ("  ( [title] )  ", "Engineer"),
    # join, lower, upper, trim
    ('Join(".", [given_name], [family_name])', "Zoë.Núñez García"),
    ('join(".", [given_name], [department], "", [title])', "Zoë.Engineer"),
    ('Join(".", [department])', None),
    ('Join("")', None),
    ('Lower(Join(".", [given_name], [family_name]))', "zoë.núñez garcía"),
    ("UPPER([title])", "ENGINEER"),
    ("Lower([department])", None),
    ('Trim("  a b  ")', "a b"),
    ("Lower([active])", "true"),
    # coalesce, if, switch, comparison
    ('Coalesce([department], "", [title])', "Engineer"),
    ("Coalesce([department], null)", None),
    ('If([active], "on", "off")', "on"),
    ('If([department], "dept", "none")', "none"),
    ('If([title] == "Engineer", "eng", "other")', "eng"),
    ('If([title] != "engineer", "case matters", "same")', "case matters"),
    ('If([department] == "", "empty", "set")', "empty"),
    ('If("false", "yes", "no")', "no"),
    ('If(true, "safe", Left("x", -1))', "safe"),
    ('Switch([title], "staff", "Engineer", "eng", "Manager", "mgr")', "eng"),
    ('Switch([department], "none", "Sales", "s")', "none"),
    ('Switch([department], "none", null, "missing")', "missing"),
    ("Switch([title], [department])", None),
    # normalize_diacritics
    ("normalize_diacritics([family_name])", "Nunez Garcia"),
    ('NormalizeDiacritics("Łukasz Størmer Straße Œuvre")', "Lukasz Stormer Strasse OEuvre"),
    ('Lower(Replace(NormalizeDiacritics([display_name]), " ", "."))', "zoe.nunez.garcia"),
    # split and indexing
    ('Split([email], "@")[0]', "Zoe.Nunez"),
    ('Split([email], "@")[-1]', "Example.com"),
    ('Split([email], "@")[5]', None),
    ('Join("-", Split([display_name], " "))', "Zoë-Núñez-García"),
    ('Split([department], ",")', None),
    ('Split("a,b", ",")', Fails("at column 1: the value is a list: index it ([0]) or join it")),
    ('Split("a", "")', Fails("at column 1: Split: the separator is empty")),
    ("[given_name][0]", "Z"),
    ('[title]["0"]', Fails("at column 8: an index must be a number, got '0'")),
    # left, replace
    ("Left([given_name], 1)", "Z"),
    ("Left([title], 100)", "Engineer"),
    ('Left([title], "3")', "Eng"),
    ("Left([department], 3)", None),
    (
        "Left([title], -1)",
        Fails("at column 1: Left: the length must be a whole number of at least 0"),
    ),
    ('Replace([employee_number], "E", "emp-")', "emp-00042"),
    ('Replace([title], "", "x")', Fails("at column 1: Replace: the text to replace is empty")),
    ('Replace([title], "n", null)', "Egieer"),
    # format_date
    ('FormatDate("2024-03-05", "%Y-%m-%d", "%d.%m.%Y")', "05.03.2024"),
    ('format_date("20240305120000Z", "%Y%m%d%H%M%SZ", "%Y-%m-%d")', "2024-03-05"),
    ('FormatDate([department], "%Y", "%Y")', None),
    (
        'FormatDate("5 March", "%Y-%m-%d", "%Y")',
        Fails("at column 1: FormatDate: '5 March' does not match the format '%Y-%m-%d'"),
    ),
    # unique values
    ('Unique("zoe.nunez", "z.nunez")', "z.nunez"),
    ('Unique("fresh")', "fresh"),
    ('Unique("Zoe.Nunez")', "Zoe.Nunez3"),
    ('Unique("ZNunez", "zoe.nunez")', "ZNunez2"),
    ('AppendSuffixIfTaken("ann@example.com")', "ann2@example.com"),
    ('append_suffix_if_taken("zoe.own")', "zoe.own"),
    ("Unique([department])", None),
    # random_string: the same for the same user, every time
    ("RandomString(8)", "xt5docd0"),
    ("Left(RandomString(12), 8)", "xt5docd0"),
    (
        "RandomString(0)",
        Fails("at column 1: RandomString: the length must be a whole number of at"),
    ),
    ("RandomString(65)", Fails("at column 1: RandomString: the length must be at most 64, got 65")),
    # errors: syntax, names, arity, fields, with their column
    ('Lower(Joinn(".", [given_name]))', Fails("at column 7: unknown function 'Joinn'")),
    ("Lower([shoe_size])", Fails("at column 8: unknown field [shoe_size]")),
    ("[manager]", Fails("at column 2: unknown field [manager]")),
    (
        'Left("abc")',
        Fails("at column 1: Left takes 2 arguments, got 1 (usage: left(text, "),
    ),
    ("Lower()", Fails("at column 1: Lower takes 1 argument, got 0")),
    ('If(true, "a")', Fails("at column 1: If takes 3 arguments, got 2")),
    ('Switch([title], "d", "k")', Fails("at column 1: Switch takes at least 2 arguments, got 3")),
    ("Join()", Fails("at column 1: Join takes at least 1 argument, got 0")),
    ('Join(".", [given_name]', Fails("at column 23: expected ',' or ')' in the arguments of Join")),
    ('Join("." [given_name])', Fails("at column 10: expected ',' or ')'")),
    ('"open', Fails("at column 1: string is not closed")),
    (r'"bad \q"', Fails("at column 6: unknown escape '\\q'")),
    ("given_name", Fails("at column 1: 'given_name' is not a function call or a value")),
    ("[given_name] [family_name]", Fails("at column 14: unexpected '[' after a complete")),
    ("[given_name][family_name]", Fails("at column 14: 'family_name' is not a function call")),
    ('"a" "b"', Fails("at column 5: unexpected string '\"b\"' after a complete expression")),
    ("Lower([title]))", Fails("at column 15: unexpected ')' after a complete expression")),
    ("[]", Fails("at column 2: expected a field name after '[', found ']'")),
    ("Lower([title] $)", Fails("at column 15: unexpected character '$'")),
    ("", Fails("at column 1: the expression is empty")),
    ("   ", Fails("at column 1: the expression is empty")),
    ("Lower(" * 40 + '"x"' + ")" * 40, Fails("at column 199: nested more than 32 deep")),
    ('__import__("os")', Fails("at column 1: unknown function '__import__'")),
]


@pytest.mark.parametrize(("source", "expected"), TABLE, ids=[s[:40] for s, _ in TABLE])
def test_expression_table(source: str, expected: Value | Fails) -> None:
    got = run(source)
    if isinstance(expected, Fails):
        assert isinstance(got, Fails), got
        assert got.message.startswith(expected.message), got.message
    else:
        assert got == expected
        assert type(got) is type(expected)


def test_the_error_points_at_its_column() -> None:
    with pytest.raises(ExpressionError) as error:
        compile_expression('Lower(Joinn(".", [given_name]))', EXPRESSION_FIELDS)
    assert error.value.pointer() == 'Lower(Joinn(".", [given_name]))\n      ^'


def test_a_compiled_expression_knows_its_fields_and_whether_it_is_unique() -> None:
    plain = compile_expression('Join(".", [given_name], [family_name])', EXPRESSION_FIELDS)
    unique = compile_expression("Unique(Lower([user_name]))", EXPRESSION_FIELDS)
    assert plain.fields == {"given_name", "family_name"} and not plain.uses_unique
    assert unique.fields == {"user_name"} and unique.uses_unique


def test_random_string_differs_between_users_and_never_between_runs() -> None:
    expression = compile_expression("RandomString(16)", EXPRESSION_FIELDS)
    one = expression.evaluate({}, Context(user_id="u-1"))
    assert one == expression.evaluate({}, Context(user_id="u-1"))
    assert one != expression.evaluate({}, Context(user_id="u-2"))


def test_taken_values_are_folded_and_a_holder_does_not_take_from_itself() -> None:
    taken = TakenValues([("Ann", "u-1"), ("bob", None)])
    assert taken.taken_for("u-2")("ann") and not taken.taken_for("u-1")("ANN")
    assert taken.taken_for("u-1")("Bob")  # an account nobody is linked to: taken for all
