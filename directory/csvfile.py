"""Reading and validating a directory CSV file, before anything is written.

Every problem is collected with its 1-based file line (the header is line 1), so one
round of fixes is enough; a file with any problem raises ``CsvImportError`` carrying all
of them. Quoted fields may span lines: a row's line is where its record starts.

Text is UTF-8, with or without Excel's BOM, or UTF-16 with its BOM; anything else is
rejected at the line of its first undecodable byte, never guessed.

Spreadsheet formulas (OWASP "CSV injection"): a cell that starts with ``= + - @``, a tab
or a carriage return is written with a ``'`` in front (``escape_cell``), so a spreadsheet
shows it as text instead of running it. Reading drops that one ``'`` again
(``unescape_cell``), so an exported file imports back to the very same values. A value
that itself starts with quotes before such a character gets one more quote, so the rule
round-trips for every value: ``=1+1`` <-> ``'=1+1``, ``'=1+1`` <-> ``''=1+1``, and
``'hello`` stays ``'hello`` both ways.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from directory.config import DIRECTORY_FIELDS
from directory.errors import CsvImportError, DirectoryError, InvalidNameError, RowError, shown
from directory.queries import check_app_name, check_group_name

REQUIRED_COLUMNS = ("user_name", "email")
#: every directory field a file can set, except the boolean ``active``
TEXT_COLUMNS = tuple(f for f in DIRECTORY_FIELDS if f not in ("user_id", "active"))
KNOWN_COLUMNS = (*TEXT_COLUMNS, "active", "apps", "groups")
#: column widths in models.py, so PostgreSQL never rejects a row that passed validation
MAX_LENGTH = {"email": 320, "employee_number": 64}
TRUE_VALUES = frozenset({"true", "yes", "1"})
FALSE_VALUES = frozenset({"false", "no", "0"})
#: deliberately loose (one @, a dot in the domain, no spaces): apps do the strict checks
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: what ends a line for the csv reader over ``newline=""`` text (and for editors)
LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: the first characters that make a spreadsheet read a cell as a formula (OWASP)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: byte order marks the reader accepts, and the codec each one means
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass
class CsvRow:
    """One valid row. ``text`` holds the text columns present in the file (None for an
    empty cell); ``active``/``apps``/``groups`` are None when the file does not say."""

    line: int
    text: dict[str, str | None]
    active: bool | None
    apps: set[str] | None
    groups: dict[str, str] | None  # lower-case name -> name as written

    @property
    def user_name(self) -> str:
        return self.text["user_name"] or ""


@dataclass
class CsvFile:
    columns: list[str]
    rows: list[CsvRow]

    def has(self, column: str) -> bool:
        return column in self.columns


def read_csv(path: str | os.PathLike[str], directory_names: Mapping[str, str]) -> CsvFile:
    """Parse and validate ``path``. ``directory_names`` maps lower-case user_names already
    in the directory to their spelling, for manager references and canonical spelling."""
    source = str(path)
    records = list(_records(Path(path), source))
    if not records:
        raise CsvImportError(source, [RowError(1, "the file is empty: expected a header row")])
    header_line, header = records[0]
    columns = _columns(header, source, header_line)
    errors: list[RowError] = []
    rows: list[CsvRow] = []
    names: list[tuple[int, str]] = []  # of every row, valid or not, so errors don't cascade
    for line, cells in records[1:]:
        row, reasons = _parse_row(line, cells, columns)
        errors.extend(RowError(line, reason) for reason in reasons)
        if row is not None:
            rows.append(row)
        if name := _cell(cells, columns, "user_name"):
            names.append((line, name))
    errors.extend(_duplicates(names))
    known = {name.lower(): name for _, name in reversed(names)} | dict(directory_names)
    errors.extend(_resolve_managers(rows, known))
    if errors:
        raise CsvImportError(source, sorted(errors, key=lambda error: error.line))
    return CsvFile(columns, rows)


def _records(path: Path, source: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) for each non-blank record."""
    text = _read_text(path, source)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CsvImportError(source, [RowError(start, f"not valid CSV: {exc}")]) from None


def _read_text(path: Path, source: str) -> str:
    """The file as text, by its BOM (none: UTF-8). A byte that does not decode, or a NUL
    (which PostgreSQL cannot store), rejects the file at its line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DirectoryError(f"{source}: file not found") from None
    except OSError as exc:
        raise DirectoryError(f"{source}: cannot read the file ({exc.strerror})") from None
    encoding = next((codec for bom, codec in BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = _line_of(data[: exc.start].decode(encoding, errors="replace"))
        reason = (
            f"not {encoding.removesuffix('-sig').upper()} text ({exc.reason} at byte {exc.start})"
        )
        raise CsvImportError(
            source, [RowError(line, f"{reason}; save the file as UTF-8")]
        ) from None
    if (nul := text.find("\x00")) >= 0:
        line = _line_of(text[:nul])
        why = "a NUL character (UTF-16 without a byte order mark?); save the file as UTF-8"
        raise CsvImportError(source, [RowError(line, why)])
    return text


def _line_of(before: str) -> int:
    """The line after ``before``, counted as the csv reader counts: universal newlines."""
    return len(LINE_BREAK.findall(before)) + 1


def escape_cell(value: str) -> str:
    """The cell to write for ``value``: a spreadsheet must never run it (module docstring)."""
    return f"'{value}" if value.lstrip("'").startswith(FORMULA_START) else value


def unescape_cell(cell: str) -> str:
    """The value ``escape_cell`` wrote ``cell`` for."""
    return cell[1:] if cell.startswith("'") and escape_cell(cell[1:]) != cell[1:] else cell


def _columns(header: list[str], source: str, line: int) -> list[str]:
    columns = [name.strip().lower() for name in header]
    problems = []
    if unknown := [name for name in columns if name not in KNOWN_COLUMNS]:
        problems.append(
            f"unknown column(s) {', '.join(map(shown, unknown))}; "
            f"known columns: {', '.join(KNOWN_COLUMNS)}"
        )
    if repeated := sorted({name for name in columns if columns.count(name) > 1}):
        problems.append(f"repeated column(s) {', '.join(map(shown, repeated))}")
    if missing := [name for name in REQUIRED_COLUMNS if name not in columns]:
        problems.append(f"missing required column(s) {', '.join(missing)}")
    if problems:
        raise CsvImportError(source, [RowError(line, problem) for problem in problems])
    return columns


def _cell(cells: list[str], columns: list[str], name: str) -> str:
    index = columns.index(name)
    return unescape_cell(cells[index].strip()) if index < len(cells) else ""


def _parse_row(line: int, cells: list[str], columns: list[str]) -> tuple[CsvRow | None, list[str]]:
    if len(cells) > len(columns):
        return None, [f"{len(cells)} fields, but the header has {len(columns)}"]
    values = dict(zip(columns, [unescape_cell(cell.strip()) for cell in cells], strict=False))
    text = {name: values.get(name) or None for name in TEXT_COLUMNS if name in columns}
    reasons = _text_problems(text)
    active, problem = _parse_active(values.get("active"))
    reasons += [problem] if problem else []
    apps, app_problems = _parse_names(values.get("apps"), check_app_name, "apps" in columns)
    groups, group_problems = _parse_names(
        values.get("groups"), check_group_name, "groups" in columns
    )
    reasons += app_problems + group_problems
    if reasons:
        return None, reasons
    row = CsvRow(line, text, active, set(apps.values()) if apps is not None else None, groups)
    return row, []


def _text_problems(text: dict[str, str | None]) -> list[str]:
    reasons = [f"missing {name}" for name in REQUIRED_COLUMNS if not text.get(name)]
    email = text.get("email")
    if email and not EMAIL.match(email):
        reasons.append(f"invalid email {shown(email)}")
    for name, value in text.items():
        limit = MAX_LENGTH.get(name, 255)
        if value and len(value) > limit:
            reasons.append(f"{name} is longer than {limit} characters")
    return reasons


def _parse_active(value: str | None) -> tuple[bool | None, str | None]:
    if not value:
        return None, None
    if value.lower() in TRUE_VALUES:
        return True, None
    if value.lower() in FALSE_VALUES:
        return False, None
    return None, f"bad active value {shown(value)} (use true/false, yes/no or 1/0)"


def _parse_names(
    value: str | None, check: Callable[[str], str], present: bool
) -> tuple[dict[str, str] | None, list[str]]:
    """``a;b`` -> {lower name: name}; None when the column is absent from the file."""
    if not present:
        return None, []
    names: dict[str, str] = {}
    problems: list[str] = []
    for part in (value or "").split(";"):
        if not part.strip():
            continue
        try:
            name = check(part.strip())
        except InvalidNameError as exc:
            problems.append(str(exc))
            continue
        names.setdefault(name.lower(), name)
    return names, problems


def _duplicates(names: list[tuple[int, str]]) -> list[RowError]:
    first_line: dict[str, int] = {}
    errors = []
    for line, name in names:
        if (first := first_line.setdefault(name.lower(), line)) != line:
            errors.append(
                RowError(line, f"duplicate user_name {shown(name)} (also on line {first})")
            )
    return errors


def _resolve_managers(rows: list[CsvRow], known: Mapping[str, str]) -> list[RowError]:
    """Point each manager at a user in the file or the directory (``known``: lower-case
    user_name -> spelling, the directory's spelling first), spelled as stored."""
    errors = []
    for row in rows:
        manager = row.text.get("manager")
        if not manager:
            continue
        if manager.lower() == row.user_name.lower():
            errors.append(RowError(row.line, "a user cannot be their own manager"))
        elif manager.lower() not in known:
            errors.append(
                RowError(
                    row.line, f"manager {shown(manager)} not found in the file or the directory"
                )
            )
        else:
            row.text["manager"] = known[manager.lower()]
    return errors
