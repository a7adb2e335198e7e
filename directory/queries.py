"""Shared building blocks of the store: frames from SELECTs, batches, dialect upserts,
and the queries that say which apps a user has (directly or through a group) and who is
in a group.

Groups nest (``group_groups``): a member of a group inside a group is a member of both,
at any depth, unlike Entra, where assignment through a group ignores nested groups.
The nesting is followed by recursive CTEs with ``UNION``, not ``UNION ALL``: both SQLite
and PostgreSQL drop a row already produced, so a cycle that got into the table anyway
(the admin operations refuse one, a hand-written INSERT does not) ends the recursion
instead of looping."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from directory.config import DIRECTORY_FIELDS
from directory.errors import InvalidNameError, shown
from directory.models import Group, GroupApp, GroupGroup, GroupMember, User, UserApp

#: rows per INSERT/UPDATE batch: well under SQLite's 32,766 bound parameters per statement
BATCH_SIZE = 1000
#: rows per chunk when a SELECT is read into a frame (``read_frame``)
CHUNK_ROWS = 50_000
#: rows a chunk's text column is sampled on before it is factorised to share its values
SAMPLE_ROWS = 1000
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
#: the pattern AppConfig.name allows, so an assignment can always name a configurable app
APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

USER_COLUMNS = list(DIRECTORY_FIELDS)

T = TypeVar("T")


def batched(items: Iterable[T], size: int = BATCH_SIZE) -> Iterator[list[T]]:
    """Successive lists of at most ``size`` items (itertools.batched is Python 3.12+)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def plain(value: Any) -> Any:
    """A value the DB-API takes: numpy scalars become Python ones, NaN/NA/NaT become None,
    because rows often come from ``DataFrame.to_dict("records")``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_frame(
    conn: Connection,
    stmt: Select,
    columns: Sequence[str],
    bools: Sequence[str] = (),
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """``read_sql`` with exactly ``columns``; text columns are object dtype with None for
    missing values (pandas 3 would otherwise give its ``str`` dtype with NaN).

    The rows arrive in chunks of ``chunk_rows`` through a server-side cursor on
    PostgreSQL (``stream_results``), so the driver never holds the whole result as
    tuples beside the frame: at a million users the peak is the frame plus one chunk.
    Within a column, equal short texts repeated across rows (department, title, manager)
    become one shared ``str`` object, as they would be in a frame built in memory."""
    # on the statement, not the connection: Connection.execution_options changes the
    # caller's connection in place, and its later statements need no server-side cursor
    streamed = stmt.execution_options(stream_results=True)
    shared: dict[str, dict[object, object]] = {column: {} for column in columns}
    parts = [
        _normalised(chunk.reindex(columns=list(columns)), bools, shared)
        for chunk in pd.read_sql(streamed, conn, chunksize=chunk_rows)
    ]
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat(parts, ignore_index=True)
    for column in columns:  # a chunk of only None leaves an object column beside the dates
        if _is_dates(frame[column]) or not any(_is_dates(part[column]) for part in parts):
            continue
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _is_dates(values: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(values)


def _normalised(
    frame: pd.DataFrame, bools: Sequence[str], shared: dict[str, dict[object, object]]
) -> pd.DataFrame:
    for column in frame.columns:
        if column in bools:
            frame[column] = frame[column].astype(bool)
        elif pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = _utc(frame[column])
        elif frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            # a Series, not the array: pandas 3 would infer its ``str`` dtype from one
            text = _shared_text(frame[column], shared[column])
            frame[column] = pd.Series(text, index=frame.index, dtype=object)
    return frame


def _shared_text(values: pd.Series, shared: dict[object, object]) -> np.ndarray:
    """Object values with None for missing. A text column with few distinct values gets
    one object per distinct value across all chunks (``shared``), by factorising rather
    than a loop over rows."""
    if pd.api.types.infer_dtype(values, skipna=True) != "string":
        return values.to_numpy(dtype=object, na_value=None)  # JSON, numbers: as they came
    head = values.iloc[:SAMPLE_ROWS]
    if len(values) > SAMPLE_ROWS and len(pd.unique(head)) * 2 > len(head):
        return values.to_numpy(dtype=object, na_value=None)  # ids, names: all different
    codes, uniques = pd.factorize(values.astype(object))
    if len(uniques) * 2 > len(values):
        return values.to_numpy(dtype=object, na_value=None)
    canonical = np.array([shared.setdefault(u, u) for u in uniques] + [None], dtype=object)
    return canonical[codes]  # code -1 (missing) picks the trailing None


def _utc(values: pd.Series) -> pd.Series:
    """UTC-aware timestamps on both dialects: SQLite hands back naive UTC values."""
    if getattr(values.dtype, "tz", None) is None:
        return values.dt.tz_localize("UTC")
    return values.dt.tz_convert("UTC")


def aware(value: datetime | None) -> datetime | None:
    """A datetime from the database as UTC-aware (SQLite stores it naive, in UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def users_select() -> Select:
    """Every user, with the column names the sync engine and DIRECTORY_FIELDS use."""
    return sa.select(
        User.id.label("user_id"),
        User.user_name,
        User.email,
        User.given_name,
        User.family_name,
        User.display_name,
        User.department,
        User.title,
        User.employee_number,
        User.manager,
        User.active,
    ).order_by(User.user_name)


def read_users_frame(conn: Connection) -> pd.DataFrame:
    return read_frame(conn, users_select(), USER_COLUMNS, bools=("active",))


def effective_apps(app: str | None = None, *, distinct: bool = True) -> sa.CompoundSelect[Any]:
    """(user_id, app) for every assignment: direct, from a group the user is in, or from
    a group that holds (at any depth) a group the user is in. With ``app``, only that
    app's: the filter goes inside the recursion, which PostgreSQL cannot push it into.
    ``distinct=False`` leaves duplicates for a caller that makes a set anyway (UNION ALL:
    PostgreSQL then skips sorting every row)."""
    direct = sa.select(UserApp.user_id, UserApp.app)
    if app is not None:
        direct = direct.where(UserApp.app == app)
    granted = _granted_groups(app)
    via_group = sa.select(GroupMember.user_id, granted.c.app).join(
        granted, granted.c.group_id == GroupMember.group_id
    )
    return sa.union(direct, via_group) if distinct else sa.union_all(direct, via_group)


def _granted_groups(app: str | None) -> sa.CTE:
    """(group_id, app): the groups assigned an app, and every group nested in them."""
    seed = sa.select(GroupApp.group_id, GroupApp.app)
    if app is not None:
        seed = seed.where(GroupApp.app == app)
    granted = seed.cte("granted", recursive=True)
    inherited = sa.select(GroupGroup.child_id, granted.c.app).join(
        granted, GroupGroup.parent_id == granted.c.group_id
    )
    return granted.union(inherited)


def group_closure() -> sa.CTE:
    """(group_id, member_group_id): each group with itself and every group nested in it,
    at any depth."""
    seed = sa.select(Group.id.label("group_id"), Group.id.label("member_group_id"))
    closure = seed.cte("closure", recursive=True)
    nested = sa.select(closure.c.group_id, GroupGroup.child_id).join(
        closure, GroupGroup.parent_id == closure.c.member_group_id
    )
    return closure.union(nested)


def group_members_select() -> Select:
    """Distinct (group_id, user_id): the group's own members and those of every group
    nested in it."""
    closure = group_closure()
    return (
        sa.select(closure.c.group_id, GroupMember.user_id)
        .join(GroupMember, GroupMember.group_id == closure.c.member_group_id)
        .distinct()
        .order_by(closure.c.group_id, GroupMember.user_id)
    )


def upsert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT construct, which has ``on_conflict_do_update/nothing``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert_many(
    conn: Connection,
    table: Any,
    rows: Iterable[Mapping[str, Any]],
    keys: Sequence[Any],
    update: Sequence[str],
) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` the ``update`` columns to the new row's
    values, ``BATCH_SIZE`` rows per statement. Rows must not repeat a key within a batch
    (PostgreSQL refuses a statement that touches one row twice)."""
    for batch in batched(rows):
        stmt = upsert(conn, table)
        excluded = {column: getattr(stmt.excluded, column) for column in update}
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=excluded), batch)


def check_app_name(app: str) -> str:
    if not isinstance(app, str) or not APP_NAME.match(app):
        raise InvalidNameError(
            f"invalid app name {shown(str(app))}: use letters, digits, '_', '.', '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return app


def check_group_name(group: str) -> str:
    name = group.strip() if isinstance(group, str) else ""
    if not name or ";" in name or len(name) > 255:
        raise InvalidNameError(
            f"invalid group name {shown(str(group))}: it must be 1-255 characters without ';'"
        )
    return name
