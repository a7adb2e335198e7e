"""Change stamping: every directory write that can change what an app should hold for a
user sets that user's ``updated_at``, so an incremental sync finds them.

Attribute and activation changes stamp the user (the column's ``onupdate`` does it for any
UPDATE of the row). Assignments and memberships live in other tables, so their writers
call these helpers in the same transaction: a direct assignment stamps its user; a
group's app assignment or a membership change of a group stamps every *effective* member,
the members of its nested groups (``group_groups``) included, because they gain or lose
the group's apps too. Stamps are idempotent: stamping too many users only costs a re-check.

A user deleted from the directory cannot be stamped; incremental runs find those through
their links, which then point at no user (``directory.watermarks``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from directory.models import GroupGroup, GroupMember, User, utcnow
from directory.queries import batched


def stamp_users(conn: Connection, user_ids: Iterable[str], now: datetime | None = None) -> int:
    """Mark ``user_ids`` changed now; returns how many rows were stamped."""
    when = now or utcnow()
    stamped = 0
    for chunk in batched(dict.fromkeys(user_ids)):
        result = conn.execute(sa.update(User).where(User.id.in_(chunk)).values(updated_at=when))
        stamped += result.rowcount or 0
    return stamped


def stamp_groups(conn: Connection, group_ids: Iterable[int], now: datetime | None = None) -> int:
    """Mark every effective member of ``group_ids`` changed: the members of the groups and
    of every group nested in them, at any depth. Call it before deleting a group or a
    nesting (afterwards the members can no longer be found) and after adding one."""
    groups = nested_groups(conn, group_ids)
    members: set[str] = set()
    for chunk in batched(sorted(groups)):
        members.update(
            conn.scalars(sa.select(GroupMember.user_id).where(GroupMember.group_id.in_(chunk)))
        )
    return stamp_users(conn, sorted(members), now)


def nested_groups(conn: Connection, group_ids: Iterable[int]) -> set[int]:
    """``group_ids`` and every group nested in them (children, their children...). Walked
    level by level, so a cycle in ``group_groups`` ends instead of looping."""
    found = set(group_ids)
    frontier = set(found)
    while frontier:
        children: set[int] = set()
        for chunk in batched(sorted(frontier)):
            stmt = sa.select(GroupGroup.child_id).where(GroupGroup.parent_id.in_(chunk))
            children.update(conn.scalars(stmt))
        frontier = children - found
        found |= frontier
    return found
