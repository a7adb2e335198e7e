"""Writing a planned import: every change as a batched statement (``executemany``), in the
caller's transaction, never one round trip per user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from directory.config import DIRECTORY_FIELDS
from directory.models import Group, GroupMember, User, UserApp, utcnow
from directory.queries import batched

#: what an import may change on an existing user (user_id and user_name are the keys)
UPDATED_COLUMNS = (
    *(f for f in DIRECTORY_FIELDS if f not in ("user_id", "user_name")),
    "updated_at",
)

_UPDATE_USER = (
    sa.update(User)
    .where(User.id == sa.bindparam("b_id"))
    .values({name: sa.bindparam(f"b_{name}") for name in UPDATED_COLUMNS})
)
_DELETE_MEMBER = sa.delete(GroupMember).where(
    GroupMember.user_id == sa.bindparam("b_user"), GroupMember.group_id == sa.bindparam("b_group")
)
_DELETE_APP = sa.delete(UserApp).where(
    UserApp.user_id == sa.bindparam("b_user"), UserApp.app == sa.bindparam("b_app")
)


@dataclass
class Changes:
    """Everything an import writes. Groups are named by lower-case name until written."""

    groups_by_name: dict[str, int]  # lower name -> id, of groups that exist
    new_groups: dict[str, str] = field(default_factory=dict)  # lower name -> name
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    deactivate: list[str] = field(default_factory=list)  # user ids
    add_members: list[tuple[str, str]] = field(default_factory=list)  # (user id, group)
    remove_members: list[tuple[str, str]] = field(default_factory=list)
    add_apps: list[tuple[str, str]] = field(default_factory=list)  # (user id, app)
    remove_apps: list[tuple[str, str]] = field(default_factory=list)


def write_changes(conn: Connection, changes: Changes) -> None:
    """Users first (memberships and assignments reference them), then groups, then the
    links between them."""
    _executemany(conn, sa.insert(User), changes.inserts)
    _executemany(conn, _UPDATE_USER, [_update_params(user) for user in changes.updates])
    for ids in batched(changes.deactivate):
        conn.execute(
            sa.update(User).where(User.id.in_(ids)).values(active=False, updated_at=utcnow())
        )
    group_ids = _create_groups(conn, changes)
    members = [{"b_user": u, "b_group": group_ids[g]} for u, g in changes.remove_members]
    _executemany(conn, _DELETE_MEMBER, members)
    _executemany(
        conn,
        sa.insert(GroupMember),
        [{"user_id": u, "group_id": group_ids[g]} for u, g in changes.add_members],
    )
    _executemany(conn, _DELETE_APP, [{"b_user": u, "b_app": a} for u, a in changes.remove_apps])
    _executemany(conn, sa.insert(UserApp), [{"user_id": u, "app": a} for u, a in changes.add_apps])


def _update_params(user: dict[str, Any]) -> dict[str, Any]:
    return {"b_id": user["id"]} | {f"b_{name}": user[name] for name in UPDATED_COLUMNS}


def _create_groups(conn: Connection, changes: Changes) -> dict[str, int]:
    """Insert the new groups, then read every group's id back in one query."""
    if not changes.new_groups:
        return changes.groups_by_name
    _executemany(conn, sa.insert(Group), [{"name": n} for n in changes.new_groups.values()])
    rows = conn.execute(sa.select(Group.id, Group.name))
    return {name.lower(): group_id for group_id, name in rows}


def _executemany(conn: Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
    for batch in batched(rows):
        conn.execute(stmt, batch)
