"""The Store on SQLite and PostgreSQL: directory reads, links, the action log and the
administrative operations, against a real database each time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from directory.config import DIRECTORY_FIELDS
from directory.models import Group, GroupApp, GroupMember, Link, User, UserApp
from directory.store import (
    AmbiguousUserError,
    DirectoryError,
    GroupNotFoundError,
    InvalidNameError,
    RunNotFoundError,
    Store,
    UserNotFoundError,
    resolve_database_url,
)

USER_COLUMNS = list(DIRECTORY_FIELDS)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.dispose()


@pytest.fixture
def people(store: Store) -> Store:
    """ada (manager of bob), bob, and cy (inactive, sharing bob's email); group eng has
    ada and cy; ada has chat directly; eng has wiki."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(User),
            [
                _user("u-ada", "Ada", "ada@example.com", None, True, department="Eng"),
                _user("u-bob", "bob", "bob@example.com", "Ada", True),
                _user("u-cy", "cy", "BOB@example.com", None, False),
            ],
        )
        eng = conn.execute(sa.insert(Group).values(name="eng").returning(Group.id)).scalar_one()
        conn.execute(
            sa.insert(GroupMember), [{"group_id": eng, "user_id": u} for u in ("u-ada", "u-cy")]
        )
        conn.execute(sa.insert(GroupApp).values(group_id=eng, app="wiki"))
        conn.execute(sa.insert(UserApp).values(user_id="u-ada", app="chat"))
    return store


def _user(
    user_id: str, name: str, email: str, manager: str | None, active: bool, **extra: str
) -> dict:
    row: dict[str, object] = {column: None for column in USER_COLUMNS[1:]}
    row |= {"id": user_id, "user_name": name, "email": email, "manager": manager}
    return row | {"active": active} | extra


def _links(count: int, suffix: str) -> list[dict]:
    return [
        {"user_id": f"u{i}", "remote_id": f"r{i}", "attr_hash": f"h{i}{suffix}", "status": "active"}
        for i in range(count)
    ]


# -- opening -----------------------------------------------------------------------------


def test_resolve_database_url_prefers_env_then_config_then_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROSTER_DATABASE_URL", "sqlite:///from-env.db")
    assert resolve_database_url("sqlite:///from-config.db") == "sqlite:///from-env.db"
    monkeypatch.delenv("ROSTER_DATABASE_URL")
    assert resolve_database_url("sqlite:///from-config.db") == "sqlite:///from-config.db"
    monkeypatch.setenv("ROSTER_HOME", str(tmp_path / "home"))
    assert resolve_database_url(None) == f"sqlite:///{tmp_path / 'home' / 'roster.db'}"
    assert (tmp_path / "home").is_dir()


def test_default_home_is_dot_roster(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    monkeypatch.delenv("ROSTER_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_database_url(None) == f"sqlite:///{Path(tmp_path) / '.roster' / 'roster.db'}"


def test_session_is_one_transaction(store: Store) -> None:
    with store.session() as session:
        session.add(User(id="u1", user_name="one", email="one@example.com"))
    with pytest.raises(RuntimeError), store.session() as session:
        session.add(User(id="u2", user_name="two", email="two@example.com"))
        session.flush()
        raise RuntimeError("rolled back")
    assert list(store.read_users()["user_name"]) == ["one"]


# -- the directory as the sync engine reads it -------------------------------------------


def test_read_users_columns_and_missing_values(people: Store) -> None:
    users = people.read_users()
    assert list(users.columns) == USER_COLUMNS
    assert users["active"].dtype == bool
    bob = users.set_index("user_name").loc["bob"]
    assert bob["manager"] == "Ada"
    assert bob["department"] is None
    assert users["title"].dtype == object
    assert users["title"].tolist() == [None, None, None]


def test_read_users_on_an_empty_directory(store: Store) -> None:
    users = store.read_users()
    assert list(users.columns) == USER_COLUMNS
    assert users.empty


def test_read_assigned_counts_direct_and_group_apps(people: Store) -> None:
    assert people.read_assigned("chat") == {"u-ada"}
    assert people.read_assigned("wiki") == {"u-ada", "u-cy"}  # inactive cy too: plan decides
    assert people.read_assigned("crm") == set()


# -- links -------------------------------------------------------------------------------


def test_read_links_when_there_are_none(store: Store) -> None:
    links = store.read_links("chat")
    assert list(links.columns) == ["user_id", "remote_id", "attr_hash", "status"]
    assert links.empty


def test_upsert_links_inserts_then_updates(store: Store) -> None:
    store.upsert_links("chat", [{"user_id": "u1", "remote_id": "r1", "status": "active"}])
    store.upsert_links(
        "chat",
        [
            {"user_id": "u1", "remote_id": "r1b", "attr_hash": "h", "status": "deactivated"},
            {"user_id": "u2", "remote_id": "r2", "attr_hash": None, "status": "active"},
        ],
    )
    expected = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "remote_id": ["r1b", "r2"],
            "attr_hash": ["h", None],
            "status": ["deactivated", "active"],
        },
        dtype=object,
    )
    pd.testing.assert_frame_equal(store.read_links("chat"), expected)
    assert store.read_links("wiki").empty


def test_upsert_links_keeps_the_last_row_for_a_user(store: Store) -> None:
    rows = [
        {"user_id": "u1", "remote_id": "first", "attr_hash": "a", "status": "active"},
        {"user_id": "u1", "remote_id": "last", "attr_hash": "b", "status": "active"},
    ]
    store.upsert_links("chat", rows)
    assert store.read_links("chat")[["remote_id", "attr_hash"]].values.tolist() == [["last", "b"]]


def test_upsert_5000_links_twice(store: Store) -> None:
    store.upsert_links("chat", _links(5000, "-v1"))
    store.upsert_links("chat", _links(5000, "-v2"))
    links = store.read_links("chat")
    assert len(links) == 5000
    assert set(links["attr_hash"].str.endswith("-v2")) == {True}
    assert links.set_index("user_id").loc["u4999", "remote_id"] == "r4999"


def test_delete_links_and_linked_apps(store: Store) -> None:
    store.upsert_links("chat", _links(3, ""))
    store.upsert_links("wiki", _links(2, ""))
    assert store.linked_apps("u1") == ["chat", "wiki"]
    store.delete_links("chat", ["u0", "u1", "nobody"])
    assert store.read_links("chat")["user_id"].tolist() == ["u2"]
    assert store.linked_apps("u1") == ["wiki"]
    assert store.linked_apps("nobody") == []


def test_a_remote_id_belongs_to_one_user_per_app(store: Store) -> None:
    store.upsert_links("chat", [{"user_id": "u1", "remote_id": "r", "status": "active"}])
    with pytest.raises(sa.exc.IntegrityError):
        store.upsert_links("chat", [{"user_id": "u2", "remote_id": "r", "status": "active"}])


# -- the action log ----------------------------------------------------------------------


def _actions(count: int) -> list[dict]:
    return [
        {
            "user_id": f"u{i}",
            "user_name": f"user{i}",
            "remote_id": None,
            "action": "create",
            "situation": "missing",
            "changes": {"userName": [None, f"user{i}"]},
            "outcome": "pending",
        }
        for i in range(count)
    ]


def test_runs_start_finish_and_latest(store: Store) -> None:
    assert store.latest_run() is None
    sync = store.start_run("sync", dry_run=True, flow_run_id="flow-1")
    offboard = store.start_run("offboard")
    store.finish_run(sync, {"created": 2})
    run = store.latest_run("sync")
    assert run is not None
    assert run["run_id"] == sync
    assert (run["dry_run"], run["flow_run_id"], run["summary"]) == (True, "flow-1", {"created": 2})
    assert run["finished_at"] >= run["started_at"]
    assert run["started_at"].tzinfo is not None
    latest = store.latest_run()
    assert latest is not None and latest["run_id"] == offboard
    assert store.latest_run("import") is None
    with pytest.raises(RunNotFoundError):
        store.finish_run("no-such-run", {})


def test_log_actions_returns_ids_in_row_order(store: Store) -> None:
    run_id = store.start_run("sync")
    ids = store.log_actions(run_id, "chat", _actions(2500))  # three batches
    assert len(ids) == len(set(ids)) == 2500
    actions = store.read_actions(run_id).set_index("id")
    assert [actions.loc[i, "user_id"] for i in ids] == [f"u{i}" for i in range(2500)]
    first = actions.loc[ids[0]]
    assert (first["attempts"], first["error"], first["outcome"]) == (0, None, "pending")
    assert first["changes"] == {"userName": [None, "user0"]}
    assert store.log_actions(run_id, "chat", []) == []


def test_log_actions_rejects_an_unknown_outcome(store: Store) -> None:
    run_id = store.start_run("sync")
    row = _actions(1)[0] | {"outcome": "sucess"}
    with pytest.raises(DirectoryError, match="unknown outcome 'sucess'"):
        store.log_actions(run_id, "chat", [row])


def test_record_outcomes_in_bulk(store: Store) -> None:
    run_id = store.start_run("sync")
    ids = store.log_actions(run_id, "chat", _actions(1200))
    outcomes = [
        {"id": i, "outcome": "succeeded", "attempts": 1, "error": None, "remote_id": f"r{n}"}
        for n, i in enumerate(ids)
    ]
    outcomes[1] = {"id": ids[1], "outcome": "failed", "attempts": 3, "error": "HTTP 500"}
    store.record_outcomes(outcomes)
    actions = store.read_actions(run_id).set_index("id")
    first, second = actions.loc[ids[0]], actions.loc[ids[1]]
    assert (first["outcome"], first["attempts"], first["remote_id"]) == ("succeeded", 1, "r0")
    assert (second["outcome"], second["attempts"], second["error"], second["remote_id"]) == (
        "failed",
        3,
        "HTTP 500",
        None,
    )
    assert store.succeeded_user_ids(run_id, "chat", "create") == {
        f"u{n}" for n in range(1200) if n != 1
    }
    assert store.succeeded_user_ids(run_id, "chat", "update") == set()
    among = [f"u{n}" for n in (0, 1, 2, 1100)] + ["someone-else"]
    assert store.succeeded_user_ids(run_id, "chat", "create", among=among) == {"u0", "u2", "u1100"}


def test_record_outcomes_keeps_a_known_remote_id(store: Store) -> None:
    run_id = store.start_run("sync")
    row = _actions(1)[0] | {"action": "update", "remote_id": "r-known"}
    [action_id] = store.log_actions(run_id, "chat", [row])
    store.record_outcomes([{"id": action_id, "outcome": "succeeded", "attempts": 2}])
    action = store.read_actions(run_id).iloc[0]
    assert (action["remote_id"], action["attempts"]) == ("r-known", 2)


def test_record_outcomes_with_an_unknown_id_changes_nothing(store: Store) -> None:
    run_id = store.start_run("sync")
    [action_id] = store.log_actions(run_id, "chat", _actions(1))
    with pytest.raises(DirectoryError, match="no logged action with id 999999"):
        store.record_outcomes(
            [{"id": action_id, "outcome": "succeeded"}, {"id": 999999, "outcome": "failed"}]
        )
    assert store.read_actions(run_id)["outcome"].tolist() == ["pending"]


def test_read_actions_filters(store: Store) -> None:
    first, second = store.start_run("sync"), store.start_run("sync")
    store.log_actions(first, "chat", _actions(2))
    store.log_actions(first, "wiki", [_actions(1)[0] | {"outcome": "held"}])
    store.log_actions(second, "chat", _actions(1))
    assert len(store.read_actions()) == 4
    assert len(store.read_actions(first)) == 3
    assert store.read_actions(first, app="wiki")["outcome"].tolist() == ["held"]
    assert len(store.read_actions(outcome="pending")) == 3
    empty = store.read_actions("no-such-run")
    assert empty.empty and "changes" in empty.columns


# -- administration ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["Ada", "ada", "ADA@example.com", "u-ada", " ada "])
def test_find_user_by_name_email_or_id(people: Store, key: str) -> None:
    user = people.find_user(key)
    assert user["user_id"] == "u-ada"
    assert (user["apps"], user["direct_apps"], user["groups"], user["effective_groups"]) == (
        ["chat", "wiki"],
        ["chat"],
        ["eng"],
        ["eng"],
    )


def test_find_user_errors(people: Store) -> None:
    with pytest.raises(UserNotFoundError, match="no user with user_name, email or id 'zed'"):
        people.find_user("zed")
    assert people.find_user("bob")["user_id"] == "u-bob"  # a user_name beats an email
    with people.engine.begin() as conn:
        conn.execute(sa.update(User).where(User.id == "u-bob").values(user_name="bobby"))
    with pytest.raises(AmbiguousUserError, match="bobby, cy"):
        people.find_user("bob@example.com")


def test_set_active(people: Store) -> None:
    assert people.set_active("cy", True)["active"] is True
    assert people.set_active("Ada", False)["active"] is False
    active = people.read_users().set_index("user_name")["active"]
    assert active.to_dict() == {"Ada": False, "bob": True, "cy": True}


def test_assign_and_unassign_apps(people: Store) -> None:
    assert people.assign_app("bob", "crm") is True
    assert people.assign_app("BOB", "crm") is False
    assert people.read_assigned("crm") == {"u-bob"}
    assert people.unassign_app("bob", "crm") is True
    assert people.unassign_app("bob", "crm") is False
    assert people.unassign_app("cy", "wiki") is False  # through a group, not direct
    assert people.read_assigned("crm") == set()
    with pytest.raises(InvalidNameError):
        people.assign_app("bob", "not an app")
    with pytest.raises(UserNotFoundError):
        people.assign_app("zed", "crm")


def test_group_apps_and_memberships(people: Store) -> None:
    assert people.assign_group_app("ENG", "crm") is True
    assert people.assign_group_app("eng", "crm") is False
    assert people.read_assigned("crm") == {"u-ada", "u-cy"}
    assert people.add_to_group("bob", "Eng") is True
    assert people.read_assigned("crm") == {"u-ada", "u-bob", "u-cy"}
    assert people.remove_from_group("cy", "eng") is True
    assert people.remove_from_group("cy", "eng") is False
    assert people.unassign_group_app("eng", "crm") is True
    assert people.read_assigned("crm") == set()
    assert people.add_to_group("bob", "support") is True  # creates the group
    with pytest.raises(GroupNotFoundError, match="no group named 'sales'"):
        people.assign_group_app("sales", "crm")
    with pytest.raises(GroupNotFoundError):
        people.remove_from_group("bob", "sales")


def test_list_users(people: Store) -> None:
    users = people.list_users()
    assert list(users.columns) == [*USER_COLUMNS, "apps", "groups"]
    assert users.set_index("user_name")["apps"].to_dict() == {
        "Ada": "chat;wiki",
        "bob": "",
        "cy": "wiki",
    }
    assert people.list_users(app="wiki")["user_name"].tolist() == ["Ada", "cy"]
    assert people.list_users(app="wiki", active=True)["user_name"].tolist() == ["Ada"]
    assert people.list_users(active=False)["user_name"].tolist() == ["cy"]
    assert people.list_users(app="crm").empty


def test_list_groups(people: Store) -> None:
    people.add_to_group("bob", "sales")
    expected = pd.DataFrame(
        {
            "name": ["eng", "sales"],
            "members": [2, 1],
            "effective_members": [2, 1],
            "member_groups": ["", ""],
            "apps": ["wiki", ""],
        }
    )
    pd.testing.assert_frame_equal(people.list_groups(), expected, check_dtype=False)


def test_deleting_a_user_cascades(people: Store) -> None:
    with people.engine.begin() as conn:
        conn.execute(sa.delete(User).where(User.id == "u-ada"))
        memberships = conn.scalar(sa.select(sa.func.count()).select_from(GroupMember))
        assignments = conn.scalar(sa.select(sa.func.count()).select_from(UserApp))
        links = conn.scalar(sa.select(sa.func.count()).select_from(Link))
    assert (memberships, assignments, links) == (1, 0, 0)
