"""Directory administration: find a user, (de)activate, assign apps, manage groups.

These are the operations a person runs one at a time from ``roster directory ...``; users
are named by user_name or email (case-insensitively) or by id, groups by name
(case-insensitively), so what someone types matches what the directory holds.

Every write that changes what a user should have in an app stamps the users it affects
(``directory.changes``), in the same transaction, so incremental syncs see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from directory.changes import stamp_groups, stamp_users
from directory.errors import AmbiguousUserError, GroupNotFoundError, UserNotFoundError
from directory.models import Group, GroupApp, GroupMember, User, UserApp
from directory.queries import (
    USER_COLUMNS,
    check_app_name,
    check_group_name,
    effective_apps,
    read_frame,
    read_users_frame,
    upsert,
    users_select,
)


def resolve_user(conn: Connection, key: str) -> dict[str, Any]:
    """The one user whose id, user_name or email is ``key``. An id or user_name match wins
    over an email match; an email shared by several users is ambiguous."""
    key = key.strip()
    lowered = key.lower()
    stmt = users_select().where(
        sa.or_(
            User.id == key,
            sa.func.lower(User.user_name) == lowered,
            sa.func.lower(User.email) == lowered,
        )
    )
    rows = [dict(row) for row in conn.execute(stmt).mappings()]
    by_id = [row for row in rows if row["user_id"] == key]
    by_name = [row for row in rows if row["user_name"].lower() == lowered]
    if by_id or by_name:
        return (by_id or by_name)[0]
    if len(rows) > 1:
        names = ", ".join(sorted(row["user_name"] for row in rows))
        raise AmbiguousUserError(
            f"{key!r} is the email of several users ({names}); use a user_name"
        )
    if not rows:
        raise UserNotFoundError(f"no user with user_name, email or id {key!r}")
    return rows[0]


def resolve_group(conn: Connection, name: str, *, create: bool = False) -> int:
    """The id of the group called ``name`` (any case); created if asked, else an error."""
    name = check_group_name(name)
    stmt = sa.select(Group.id).where(sa.func.lower(Group.name) == name.lower())
    group_id = conn.scalar(stmt)
    if group_id is not None:
        return int(group_id)
    if not create:
        raise GroupNotFoundError(f"no group named {name!r}")
    return int(conn.execute(sa.insert(Group).values(name=name).returning(Group.id)).scalar_one())


def _joined(pairs: pd.DataFrame, key: str, value: str) -> pd.Series:
    """``key -> "a;b"`` from a two-column frame of pairs, values sorted and de-duplicated."""
    if pairs.empty:
        return pd.Series(dtype=object)
    return pairs.groupby(key)[value].agg(lambda values: ";".join(sorted(set(values))))


def _user_apps_and_groups(conn: Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
    apps = effective_apps().subquery()
    app_pairs = read_frame(conn, sa.select(apps.c.user_id, apps.c.app), ["user_id", "app"])
    group_stmt = sa.select(GroupMember.user_id, Group.name).join(
        Group, Group.id == GroupMember.group_id
    )
    group_pairs = read_frame(conn, group_stmt, ["user_id", "name"])
    return app_pairs, group_pairs


def _inserted(conn: Connection, stmt: Any) -> bool:
    """Run an INSERT ... ON CONFLICT DO NOTHING; True if it added a row. RETURNING says so
    on both dialects (an INSERT's rowcount is not kept by SQLAlchemy by default)."""
    returning = stmt.on_conflict_do_nothing().returning(sa.literal(1))
    return conn.execute(returning).first() is not None


def _stamped_if(
    conn: Connection, changed: bool, *, users: Sequence[str] = (), groups: Sequence[int] = ()
) -> bool:
    """Stamp the affected users when the write changed something; returns ``changed``."""
    if changed:
        stamp_users(conn, users)
        stamp_groups(conn, groups)
    return changed


class DirectoryAdminMixin:
    """Administrative operations; mixed into ``Store``, which provides ``engine``."""

    engine: Engine

    def find_user(self, key: str) -> dict[str, Any]:
        """The user as a dict of the ``read_users`` columns plus ``apps`` (effective),
        ``direct_apps`` and ``groups`` (sorted lists)."""
        with self.engine.connect() as conn:
            user = resolve_user(conn, key)
            user_id = user["user_id"]
            apps = effective_apps().subquery()
            user["apps"] = sorted(
                set(conn.scalars(sa.select(apps.c.app).where(apps.c.user_id == user_id)))
            )
            direct = sa.select(UserApp.app).where(UserApp.user_id == user_id)
            user["direct_apps"] = sorted(conn.scalars(direct))
            groups = sa.select(Group.name).join(GroupMember).where(GroupMember.user_id == user_id)
            user["groups"] = sorted(conn.scalars(groups))
        return user

    def set_active(self, key: str, active: bool) -> dict[str, Any]:
        with self.engine.begin() as conn:
            user_id = resolve_user(conn, key)["user_id"]
            conn.execute(sa.update(User).where(User.id == user_id).values(active=active))
        return self.find_user(user_id)

    def assign_app(self, key: str, app: str) -> bool:
        """Assign ``app`` to the user directly; False if it already was."""
        check_app_name(app)
        with self.engine.begin() as conn:
            user_id = resolve_user(conn, key)["user_id"]
            stmt = upsert(conn, UserApp).values(user_id=user_id, app=app)
            return _stamped_if(conn, _inserted(conn, stmt), users=[user_id])

    def unassign_app(self, key: str, app: str) -> bool:
        """Remove the direct assignment; False if there was none. Apps the user has
        through a group stay: change the group or the membership for those."""
        with self.engine.begin() as conn:
            user_id = resolve_user(conn, key)["user_id"]
            stmt = sa.delete(UserApp).where(UserApp.user_id == user_id, UserApp.app == app)
            return _stamped_if(conn, conn.execute(stmt).rowcount == 1, users=[user_id])

    def assign_group_app(self, group: str, app: str) -> bool:
        check_app_name(app)
        with self.engine.begin() as conn:
            group_id = resolve_group(conn, group)
            stmt = upsert(conn, GroupApp).values(group_id=group_id, app=app)
            return _stamped_if(conn, _inserted(conn, stmt), groups=[group_id])

    def unassign_group_app(self, group: str, app: str) -> bool:
        with self.engine.begin() as conn:
            group_id = resolve_group(conn, group)
            stmt = sa.delete(GroupApp).where(GroupApp.group_id == group_id, GroupApp.app == app)
            return _stamped_if(conn, conn.execute(stmt).rowcount == 1, groups=[group_id])

    def add_to_group(self, key: str, group: str) -> bool:
        """Add the user to the group, creating the group if it does not exist yet."""
        with self.engine.begin() as conn:
            user_id = resolve_user(conn, key)["user_id"]
            group_id = resolve_group(conn, group, create=True)
            stmt = upsert(conn, GroupMember).values(group_id=group_id, user_id=user_id)
            return _stamped_if(conn, _inserted(conn, stmt), users=[user_id])

    def remove_from_group(self, key: str, group: str) -> bool:
        with self.engine.begin() as conn:
            user_id = resolve_user(conn, key)["user_id"]
            group_id = resolve_group(conn, group)
            stmt = sa.delete(GroupMember).where(
                GroupMember.group_id == group_id, GroupMember.user_id == user_id
            )
            return _stamped_if(conn, conn.execute(stmt).rowcount == 1, users=[user_id])

    def list_users(self, *, app: str | None = None, active: bool | None = None) -> pd.DataFrame:
        """``read_users`` plus ``apps`` (effective) and ``groups``, each ``;``-joined."""
        with self.engine.connect() as conn:
            users = read_users_frame(conn)
            app_pairs, group_pairs = _user_apps_and_groups(conn)
        # astype(object): with no pairs at all, map() gives float NaN, which "" cannot fill
        apps = users["user_id"].map(_joined(app_pairs, "user_id", "app"))
        groups = users["user_id"].map(_joined(group_pairs, "user_id", "name"))
        users["apps"] = apps.astype(object).fillna("")
        users["groups"] = groups.astype(object).fillna("")
        if app is not None:
            assigned = set(app_pairs.loc[app_pairs["app"] == app, "user_id"])
            users = users[users["user_id"].isin(assigned)]
        if active is not None:
            users = users[users["active"] == active]
        return users.reset_index(drop=True)[[*USER_COLUMNS, "apps", "groups"]]

    def list_groups(self) -> pd.DataFrame:
        """Every group with its member count and its apps (``;``-joined), by name."""
        members = sa.func.count(GroupMember.user_id).label("members")
        stmt = (
            sa.select(Group.id, Group.name, members)
            .outerjoin(GroupMember, GroupMember.group_id == Group.id)
            .group_by(Group.id, Group.name)
            .order_by(Group.name)
        )
        with self.engine.connect() as conn:
            groups = read_frame(conn, stmt, ["id", "name", "members"])
            app_stmt = sa.select(GroupApp.group_id, GroupApp.app)
            pairs = read_frame(conn, app_stmt, ["group_id", "app"])
        groups["apps"] = groups["id"].map(_joined(pairs, "group_id", "app")).astype(object)
        groups["apps"] = groups["apps"].fillna("")
        groups["members"] = groups["members"].astype(int)
        return groups[["name", "members", "apps"]]
