"""Directory administration: find a user, (de)activate, assign apps, manage groups and
groups inside groups (never a group inside itself, at any depth).

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
from directory.errors import (
    AmbiguousUserError,
    GroupCycleError,
    GroupNotFoundError,
    UserNotFoundError,
)
from directory.models import Group, GroupApp, GroupGroup, GroupMember, User, UserApp
from directory.nesting import read_nesting
from directory.queries import (
    USER_COLUMNS,
    check_app_name,
    check_group_name,
    effective_apps,
    group_closure,
    group_members_select,
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
        ``direct_apps``, ``groups`` (the user's own) and ``effective_groups`` (those and
        every group holding one of them, at any depth), all sorted lists."""
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
            user["effective_groups"] = sorted(conn.scalars(_effective_groups(user_id)))
        return user

    def group_chains(self, key: str) -> dict[str, tuple[str, ...]]:
        """Each group the user is in, directly or through nesting, with the shortest chain
        of group names from it down to one of the user's own groups: a user in Platform,
        which is inside Engineering, gets ``{"Platform": ("Platform",), "Engineering":
        ("Engineering", "Platform")}``."""
        with self.engine.connect() as conn:
            user_id = resolve_user(conn, key)["user_id"]
            own_stmt = sa.select(GroupMember.group_id).where(GroupMember.user_id == user_id)
            own = list(conn.scalars(own_stmt))
            nesting = read_nesting(conn)
        chains = nesting.chains_up(own)
        return {nesting.names[group]: nesting.named(chain) for group, chain in chains.items()}

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

    def add_group_to_group(self, child: str, parent: str) -> bool:
        """Put group ``child`` inside ``parent`` (created if missing), so ``child``'s
        members are ``parent``'s too; False if it already was. Raises GroupCycleError
        when ``parent`` is ``child`` or already inside it, at any depth."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # two nestings checked at once could each pass and close a loop together
                conn.execute(sa.text("LOCK TABLE group_groups IN SHARE ROW EXCLUSIVE MODE"))
            child_id = resolve_group(conn, child)
            parent_id = resolve_group(conn, parent, create=True)
            # written before the check: on SQLite the write lock it takes keeps another
            # nesting out until this one commits, or rolls back on a cycle
            stmt = upsert(conn, GroupGroup).values(parent_id=parent_id, child_id=child_id)
            added = _inserted(conn, stmt)
            nesting = read_nesting(conn)
            # a path child > ... > parent never needs the new edge parent > child
            inside = nesting.path_down(child_id, parent_id)
            if inside is not None:
                cycle = nesting.named([parent_id, *inside])
                raise GroupCycleError(nesting.names[child_id], nesting.names[parent_id], cycle)
            return _stamped_if(conn, added, groups=[child_id])

    def remove_group_from_group(self, child: str, parent: str) -> bool:
        """Take ``child`` out of ``parent``; False if it was not in it directly."""
        with self.engine.begin() as conn:
            child_id = resolve_group(conn, child)
            parent_id = resolve_group(conn, parent)
            stamp_groups(conn, [child_id])  # before: afterwards they are not parent's
            stmt = sa.delete(GroupGroup).where(
                GroupGroup.parent_id == parent_id, GroupGroup.child_id == child_id
            )
            return conn.execute(stmt).rowcount == 1

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
        """Every group by name: ``members`` (its own), ``effective_members`` (distinct,
        with those of nested groups), ``member_groups`` (the groups directly inside it)
        and ``apps``, both ``;``-joined."""
        with self.engine.connect() as conn:
            groups = read_frame(conn, sa.select(Group.id, Group.name), ["id", "name"])
            own = read_frame(conn, sa.select(GroupMember.group_id), ["group_id"])
            effective = read_frame(conn, group_members_select(), ["group_id", "user_id"])
            app_stmt = sa.select(GroupApp.group_id, GroupApp.app)
            apps = read_frame(conn, app_stmt, ["group_id", "app"])
            nested = sa.select(GroupGroup.parent_id, Group.name).join(
                Group, Group.id == GroupGroup.child_id
            )
            inside = read_frame(conn, nested, ["parent_id", "name"])
        groups = groups.sort_values("name", kind="stable").reset_index(drop=True)
        ids = groups["id"]
        groups["members"] = ids.map(own["group_id"].value_counts()).fillna(0).astype(int)
        counts = effective["group_id"].value_counts()
        groups["effective_members"] = ids.map(counts).fillna(0).astype(int)
        groups["member_groups"] = _joined_by(ids, inside, "parent_id", "name")
        groups["apps"] = _joined_by(ids, apps, "group_id", "app")
        return groups[["name", "members", "effective_members", "member_groups", "apps"]]


def _joined_by(ids: pd.Series, pairs: pd.DataFrame, key: str, value: str) -> pd.Series:
    # astype(object): with no pairs at all, map() gives float NaN, which "" cannot fill
    return ids.map(_joined(pairs, key, value)).astype(object).fillna("")


def _effective_groups(user_id: str) -> sa.Select:
    """Names of the user's groups and of every group holding one of them."""
    closure = group_closure()
    return (
        sa.select(Group.name)
        .join(closure, closure.c.group_id == Group.id)
        .join(GroupMember, GroupMember.group_id == closure.c.member_group_id)
        .where(GroupMember.user_id == user_id)
        .distinct()
    )
