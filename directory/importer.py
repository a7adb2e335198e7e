"""Importing a directory CSV file: validate all of it, then write all of it, in one
transaction, so a file is applied entirely or not at all.

Users are matched on user_name, case-insensitively; a matched user keeps the spelling the
directory already has (other users' ``manager`` values point at it). A column present in
the file is the truth for the users in it, an empty cell included; a column absent from it
leaves those values alone. With ``full``, users missing from the file are deactivated,
unless that would cross the safety limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from directory.config import Safety
from directory.csvfile import TEXT_COLUMNS, CsvFile, CsvRow, read_csv
from directory.errors import SafetyHoldError
from directory.importwrite import Changes, write_changes
from directory.models import Group, GroupMember, Run, User, UserApp, new_id, utcnow
from directory.store import Store

#: user columns an import writes; user_name is the key and is never renamed
FIELDS = (*TEXT_COLUMNS[1:], "active")


@dataclass
class ImportResult:
    """What an import did (or, for a dry run, would do), user by user_name. "Updated"
    counts any change to a user's attributes, direct apps or groups."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    created_names: list[str] = field(default_factory=list)
    updated_names: list[str] = field(default_factory=list)
    deactivated_names: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deactivated": self.deactivated,
        }


@dataclass
class Snapshot:
    """The directory as the import found it, read in four queries."""

    users: dict[str, dict[str, Any]]  # lower user_name -> user row
    groups: dict[str, int]  # lower group name -> id
    memberships: dict[str, set[str]]  # user id -> lower group names
    direct_apps: dict[str, set[str]]  # user id -> apps

    @property
    def spellings(self) -> dict[str, str]:
        return {key: user["user_name"] for key, user in self.users.items()}


def import_csv(
    store: Store,
    path: str | os.PathLike[str],
    *,
    full: bool = False,
    safety: Safety,
    force: bool = False,
    dry_run: bool = False,
) -> ImportResult:
    """Import ``path`` into the directory. Raises ``CsvImportError`` listing every bad row,
    or ``SafetyHoldError``; in both cases nothing is written. ``dry_run`` computes the same
    result and rolls it back."""
    with store.engine.connect() as conn, conn.begin() as transaction:
        snapshot = load_snapshot(conn)
        csv_file = read_csv(path, snapshot.spellings)
        changes, result = plan_import(csv_file, snapshot, full=full)
        check_safety(result.deactivated, snapshot, safety, force=force)
        write_changes(conn, changes)
        result.dry_run = dry_run
        if dry_run:
            transaction.rollback()
        else:
            _record_run(conn, result)
    return result


def load_snapshot(conn: Connection) -> Snapshot:
    columns = [User.id, User.user_name, *(getattr(User, name) for name in FIELDS)]
    users = {
        row["user_name"].lower(): dict(row) for row in conn.execute(sa.select(*columns)).mappings()
    }
    groups = {name.lower(): gid for gid, name in conn.execute(sa.select(Group.id, Group.name))}
    memberships: dict[str, set[str]] = {}
    member_rows = sa.select(GroupMember.user_id, Group.name).join(Group)
    for user_id, name in conn.execute(member_rows):
        memberships.setdefault(user_id, set()).add(name.lower())
    direct_apps: dict[str, set[str]] = {}
    for user_id, app in conn.execute(sa.select(UserApp.user_id, UserApp.app)):
        direct_apps.setdefault(user_id, set()).add(app)
    return Snapshot(users, groups, memberships, direct_apps)


def plan_import(
    csv_file: CsvFile, snapshot: Snapshot, *, full: bool
) -> tuple[Changes, ImportResult]:
    """What the file changes, without writing: new and changed users, deactivations,
    memberships and direct app assignments to add and remove."""
    changes = Changes(groups_by_name=dict(snapshot.groups))
    result = ImportResult()
    now = utcnow()
    for row in csv_file.rows:
        existing = snapshot.users.get(row.user_name.lower())
        user = _merged(row, existing, now)
        changed = _plan_groups(row, user["id"], snapshot, changes)
        changed |= _plan_apps(row, user["id"], snapshot, changes)
        if existing is None:
            changes.inserts.append(user)
            result.created_names.append(row.user_name)
        elif changed or any(user[name] != existing[name] for name in FIELDS):
            changes.updates.append(user)
            result.updated_names.append(user["user_name"])
        else:
            result.unchanged += 1
    if full:
        in_file = {row.user_name.lower() for row in csv_file.rows}
        for key, user in sorted(snapshot.users.items()):
            if key not in in_file and user["active"]:
                changes.deactivate.append(user["id"])
                result.deactivated_names.append(user["user_name"])
    result.created = len(result.created_names)
    result.updated = len(result.updated_names)
    result.deactivated = len(result.deactivated_names)
    return changes, result


def _merged(row: CsvRow, existing: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The user row to write: the existing values overlaid with what the file says."""
    if existing is None:
        base: dict[str, Any] = {name: None for name in FIELDS}
        base |= {"id": new_id(), "user_name": row.user_name, "active": True}
    else:
        base = dict(existing)
    base |= {name: value for name, value in row.text.items() if name != "user_name"}
    if row.active is not None:
        base["active"] = row.active
    base["updated_at"] = now
    return base


def _plan_groups(row: CsvRow, user_id: str, snapshot: Snapshot, changes: Changes) -> bool:
    if row.groups is None:
        return False
    for key, name in row.groups.items():
        if key not in changes.groups_by_name:
            changes.new_groups.setdefault(key, name)
    current = snapshot.memberships.get(user_id, set())
    wanted = set(row.groups)
    changes.add_members += [(user_id, key) for key in sorted(wanted - current)]
    changes.remove_members += [(user_id, key) for key in sorted(current - wanted)]
    return wanted != current


def _plan_apps(row: CsvRow, user_id: str, snapshot: Snapshot, changes: Changes) -> bool:
    if row.apps is None:
        return False
    current = snapshot.direct_apps.get(user_id, set())
    changes.add_apps += [(user_id, app) for app in sorted(row.apps - current)]
    changes.remove_apps += [(user_id, app) for app in sorted(current - row.apps)]
    return row.apps != current


def check_safety(count: int, snapshot: Snapshot, safety: Safety, *, force: bool) -> None:
    """Hold a full import that would deactivate more than ``max_deprovision_share`` of the
    active users and more than ``min_deprovision_count`` of them: most often the file is
    truncated or the wrong one, and deactivation cascades to every app."""
    active = sum(1 for user in snapshot.users.values() if user["active"])
    over_share = count > safety.max_deprovision_share * active
    if over_share and count > safety.min_deprovision_count and not force:
        raise SafetyHoldError(count, active)


def _record_run(conn: Connection, result: ImportResult) -> None:
    """An import is a run too, so ``latest_run("import")`` says when the directory last
    changed in bulk and by how much."""
    now = utcnow()
    conn.execute(
        sa.insert(Run).values(
            id=new_id(), kind="import", started_at=now, finished_at=now, summary=result.summary()
        )
    )
