"""The groups Roster keeps in apps: directory group x app -> the app group's id, and the
directory's groups as the group sync reads them.

A link is written as soon as an app group is created or adopted, and removed once the app
group is deleted (or no longer Roster's to manage), so a crash between the two never
leaves a group Roster would create twice or forget to delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from directory.models import Group, GroupApp, GroupLink, GroupMember, utcnow
from directory.queries import batched, check_app_name, read_frame, upsert

GROUP_LINK_COLUMNS = ["group_id", "remote_id", "display_name"]


class GroupLinkMixin:
    engine: Engine

    def read_groups(self) -> pd.DataFrame:
        """Every directory group: ``group_id``, ``name``, by name."""
        stmt = sa.select(Group.id.label("group_id"), Group.name).order_by(Group.name)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, ["group_id", "name"])

    def read_group_members(self) -> pd.DataFrame:
        """Every (group_id, user_id) membership."""
        stmt = sa.select(GroupMember.group_id, GroupMember.user_id)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, ["group_id", "user_id"])

    def read_app_groups(self, app: str) -> set[int]:
        """Ids of the groups that assign ``app`` to their members."""
        stmt = sa.select(GroupApp.group_id).where(GroupApp.app == app)
        with self.engine.connect() as conn:
            return {int(g) for g in conn.scalars(stmt)}

    def read_group_links(self, app: str) -> pd.DataFrame:
        stmt = (
            sa.select(GroupLink.group_id, GroupLink.remote_id, GroupLink.display_name)
            .where(GroupLink.app == app)
            .order_by(GroupLink.group_id)
        )
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, GROUP_LINK_COLUMNS)

    def upsert_group_links(self, app: str, rows: Sequence[Mapping[str, object]]) -> None:
        check_app_name(app)
        now = utcnow()
        values = [
            {
                "group_id": int(str(row["group_id"])),
                "app": app,
                "remote_id": str(row["remote_id"]),
                "display_name": str(row["display_name"]),
                "updated_at": now,
            }
            for row in rows
        ]
        with self.engine.begin() as conn:
            for batch in batched(values):
                stmt = upsert(conn, GroupLink)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[GroupLink.group_id, GroupLink.app],
                    set_={
                        "remote_id": stmt.excluded.remote_id,
                        "display_name": stmt.excluded.display_name,
                        "updated_at": stmt.excluded.updated_at,
                    },
                )
                conn.execute(stmt, batch)

    def delete_group_links(self, app: str, group_ids: Iterable[int]) -> None:
        with self.engine.begin() as conn:
            for batch in batched(dict.fromkeys(int(g) for g in group_ids)):
                conn.execute(
                    sa.delete(GroupLink).where(GroupLink.app == app, GroupLink.group_id.in_(batch))
                )
