"""Reading the directory in chunks gives exactly what one ``read_sql`` of the whole
result gave, on SQLite and PostgreSQL: same columns, dtypes, values, None for missing,
bools as bools, dates as UTC, whatever the chunk size and wherever the chunks break."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from directory.config import DIRECTORY_FIELDS
from directory.models import Link, User
from directory.queries import read_frame, users_select
from directory.store import LINK_COLUMNS, Store

USER_COLUMNS = list(DIRECTORY_FIELDS)


def one_shot(
    conn: Connection, stmt: Select, columns: Sequence[str], bools: Sequence[str] = ()
) -> pd.DataFrame:
    """``read_frame`` as it was before chunking (one ``read_sql``): the reference."""
    frame = pd.read_sql(stmt, conn).reindex(columns=list(columns))
    for column in columns:
        if column in bools:
            frame[column] = frame[column].astype(bool)
        elif pd.api.types.is_datetime64_any_dtype(frame[column]):
            dates = frame[column].dt
            aware = getattr(frame[column].dtype, "tz", None) is not None
            frame[column] = dates.tz_convert("UTC") if aware else dates.tz_localize("UTC")
        elif frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            values = frame[column].astype(object)
            frame[column] = values.where(values.notna(), None)
    return frame


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.dispose()


def _users(n: int) -> list[dict[str, object]]:
    """Every kind of edge: None in every optional column, empty strings, inactive users,
    repeated low-cardinality texts, non-ASCII, a chunk of only None for department."""
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": f"{i:032x}",
                "user_name": f"user{i:03d}",
                "email": f"user{i}@example.com",
                "given_name": None if i % 4 == 0 else f"Given{i}",
                "family_name": "" if i % 5 == 0 else "Ünal" if i % 2 else "Smith",
                "display_name": None if i % 3 == 0 else f"Given{i} Smith",
                "department": None if i < 4 else ("Eng", "Sales")[i % 2],
                "title": None if i % 6 == 0 else "Engineer",
                "employee_number": None,
                "manager": None if i == 0 else f"user{i // 3:03d}",
                "active": i % 7 != 3,
            }
        )
    return rows


def _seed(store: Store, n: int) -> None:
    with store.engine.begin() as conn:
        if n:
            conn.execute(sa.insert(User), _users(n))


@pytest.mark.parametrize("n", [0, 1, 4, 17])
@pytest.mark.parametrize("chunk_rows", [1, 4, 5, 1000])
def test_users_in_chunks_equal_one_read(store: Store, n: int, chunk_rows: int) -> None:
    _seed(store, n)
    with store.engine.connect() as conn:
        expected = one_shot(conn, users_select(), USER_COLUMNS, bools=("active",))
        got = read_frame(conn, users_select(), USER_COLUMNS, ("active",), chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.columns) == USER_COLUMNS
    assert got["active"].dtype == bool
    for column in USER_COLUMNS[:-1]:
        assert got[column].dtype == object, column
        assert not any(isinstance(v, float) for v in got[column]), column  # None, never NaN


def test_missing_values_are_none_and_bools_stay_bools(store: Store) -> None:
    _seed(store, 9)
    with store.engine.connect() as conn:
        got = read_frame(conn, users_select(), USER_COLUMNS, ("active",), chunk_rows=2)
    assert got["department"].tolist()[:4] == [None] * 4  # the first two chunks have none
    assert got["employee_number"].tolist() == [None] * 9
    assert got["given_name"][0] is None and got["family_name"][0] == ""
    assert got["active"].tolist() == [i % 7 != 3 for i in range(9)]


def test_repeated_texts_share_one_object_across_chunks(store: Store) -> None:
    _seed(store, 40)
    with store.engine.connect() as conn:
        got = read_frame(conn, users_select(), USER_COLUMNS, ("active",), chunk_rows=8)
    titles = [v for v in got["title"] if v is not None]
    assert len({id(v) for v in titles}) == 1
    assert len({id(v) for v in got["department"] if v is not None}) == 2


def test_store_reads_users_and_links_like_one_read(store: Store) -> None:
    _seed(store, 12)
    links = [
        {
            "user_id": f"{i:032x}",
            "remote_id": f"r{i}",
            "attr_hash": None if i % 2 else f"h{i}",
            "status": "active" if i % 3 else "deactivated",
        }
        for i in range(12)
    ]
    store.upsert_links("chat", links)
    link_stmt = (
        sa.select(Link.user_id, Link.remote_id, Link.attr_hash, Link.status)
        .where(Link.app == "chat")
        .order_by(Link.user_id)
    )
    with store.engine.connect() as conn:
        expected_users = one_shot(conn, users_select(), USER_COLUMNS, bools=("active",))
        expected_links = one_shot(conn, link_stmt, LINK_COLUMNS)
    pd.testing.assert_frame_equal(store.read_users(), expected_users)
    pd.testing.assert_frame_equal(store.read_links("chat"), expected_links)


def test_dates_in_chunks_are_utc_even_when_a_chunk_has_none(store: Store) -> None:
    _seed(store, 6)
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with store.engine.begin() as conn:
        for i in range(6):
            stamp = start + timedelta(hours=i)
            conn.execute(sa.update(User).where(User.id == f"{i:032x}").values(updated_at=stamp))
    # NULL for the first two users: the first chunk of two has no date at all
    late = sa.case((User.user_name >= "user002", User.updated_at), else_=sa.null())
    stmt = sa.select(User.id, late.label("updated_at")).order_by(User.id)
    with store.engine.connect() as conn:
        expected = one_shot(conn, stmt, ["id", "updated_at"])
        whole = read_frame(conn, stmt, ["id", "updated_at"])
        got = read_frame(conn, stmt, ["id", "updated_at"], chunk_rows=2)
    pd.testing.assert_frame_equal(whole, expected)
    pd.testing.assert_frame_equal(got, expected)
    assert got["updated_at"].isna().tolist() == [True, True, False, False, False, False]
    assert got["updated_at"][2] == start + timedelta(hours=2)


def test_streams_through_a_server_side_cursor_and_leaves_the_connection_as_it_was(
    store: Store,
) -> None:
    _seed(store, 3)
    cursors: list[str] = []

    def seen(_conn: object, cursor: object, statement: str, *_: object) -> None:
        if "FROM users" in statement:
            cursors.append(type(cursor).__name__)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    with store.engine.connect() as conn:
        read_frame(conn, users_select(), USER_COLUMNS, ("active",))
        assert "stream_results" not in conn.get_execution_options()
    sa.event.remove(store.engine, "before_cursor_execute", seen)
    if store.engine.dialect.name == "postgresql":
        assert cursors == ["ServerCursor"]  # psycopg's named cursor: rows fetched in chunks
    else:
        assert len(cursors) == 1
