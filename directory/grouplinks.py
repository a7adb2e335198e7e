"""The groups Roster keeps in apps: directory group x app -> the app group's id, and which
groups assign an app. (``Store.read_groups``/``read_group_members`` read the directory's
groups, nested members included.)

A link is written as soon as an app group is created or adopted, and removed once the app
group is deleted (or no longer Roster's to manage), so a crash between the two never
leaves a group Roster would create twice or forget to delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from directory.models import GroupApp, GroupLink, utcnow
from directory.queries import batched, check_app_name, read_frame, upsert_many

GROUP_LINK_COLUMNS = ["group_id", "remote_id", "display_name"]


class GroupLinkMixin:
    engine: Engine

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
            upsert_many(
                conn,
                GroupLink,
                values,
                keys=[GroupLink.group_id, GroupLink.app],
                update=["remote_id", "display_name", "updated_at"],
            )

    def delete_group_links(self, app: str, group_ids: Iterable[int]) -> None:
        with self.engine.begin() as conn:
            for batch in batched(dict.fromkeys(int(g) for g in group_ids)):
                conn.execute(
                    sa.delete(GroupLink).where(GroupLink.app == app, GroupLink.group_id.in_(batch))
                )
