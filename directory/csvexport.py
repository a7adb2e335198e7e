"""Writing the directory as a CSV file that ``roster directory import`` reads back.

Every user, active or not, with the columns an import sets: attributes, ``active``, the
apps assigned to them directly and their groups (apps assigned to a group stay in the
directory: no column holds them). Importing the file into an empty directory gives the
same users, assignments and groups; importing it into the same directory changes nothing.

A cell a spreadsheet would run as a formula is written with a ``'`` in front, which the
import drops again (``csvfile.escape_cell``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from directory.csvfile import KNOWN_COLUMNS, TEXT_COLUMNS, escape_cell
from directory.errors import DirectoryError
from directory.models import Group, GroupMember, UserApp
from directory.queries import read_users_frame
from directory.store import Store


def export_csv(store: Store, path: str | os.PathLike[str]) -> int:
    """Write every user to ``path`` (UTF-8); returns how many. The file is written next
    to ``path`` and renamed over it, so a failed export leaves no half-written file."""
    with store.engine.connect() as conn:
        users = read_users_frame(conn)
        apps = _names_by_user(conn, sa.select(UserApp.user_id, UserApp.app))
        groups = _names_by_user(conn, sa.select(GroupMember.user_id, Group.name).join(Group))
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(KNOWN_COLUMNS)
            writer.writerows(_row(user, apps, groups) for user in users.to_dict("records"))
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DirectoryError(f"{target}: cannot write the file ({exc.strerror})") from None
    return len(users)


def _names_by_user(conn: Connection, stmt: sa.Select) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for user_id, name in conn.execute(stmt):
        names.setdefault(user_id, []).append(name)
    return names


def _row(
    user: dict[str, object], apps: dict[str, list[str]], groups: dict[str, list[str]]
) -> list[str]:
    values = {name: _text(user[name]) for name in TEXT_COLUMNS}
    values["active"] = "true" if user["active"] else "false"
    values["apps"] = _joined(apps.get(str(user["user_id"]), []))
    values["groups"] = _joined(groups.get(str(user["user_id"]), []))
    return [escape_cell(values[name]) for name in KNOWN_COLUMNS]


def _text(value: object) -> str:
    return "" if value is None or value is pd.NA else str(value)


def _joined(names: Iterable[str]) -> str:
    return ";".join(sorted(names, key=str.lower))
