"""Groups inside groups: assignment through any depth of nesting, cycles refused (and
survived when they get into the table anyway), the CLI, the assignment path that explain
and provision show, and one sync against a real scim2-server.

Store tests run on SQLite and PostgreSQL (``database_url``), since the recursive CTEs are
SQL each dialect runs itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from cli.directory import directory_app
from directory.config import DIRECTORY_FIELDS, load_config
from directory.models import GroupGroup, User
from directory.store import GroupCycleError, GroupNotFoundError, Store
from tasks.explain import explain_user
from tasks.provision import load_person, scope_of
from tests.scim_apps import TOKEN, InProcessScim
from tests.sync_env import Installation, person, route_to


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.dispose()


@pytest.fixture
def nested(store: Store) -> Store:
    """ann in Platform, inside Team, inside Engineering, which has chat; bob in Team and
    Platform both; cy in Engineering itself; dee in no group."""
    with store.engine.begin() as conn:
        conn.execute(sa.insert(User), [_user(name) for name in ("ann", "bob", "cy", "dee")])
    store.add_to_group("ann", "Platform")
    store.add_to_group("bob", "Platform")
    store.add_to_group("bob", "Team")
    store.add_to_group("cy", "Engineering")
    assert store.add_group_to_group("Platform", "Team") is True
    assert store.add_group_to_group("team", "ENGINEERING") is True  # names in any case
    store.assign_group_app("Engineering", "chat")
    return store


def _user(name: str) -> dict[str, object]:
    row: dict[str, object] = {column: None for column in DIRECTORY_FIELDS[1:]}
    return (
        row
        | {"id": f"u-{name}", "user_name": name, "email": f"{name}@example.com"}
        | {"active": True}
    )


def _members(store: Store) -> set[tuple[str, str]]:
    """(group name, user_id) from ``read_group_members``."""
    names = store.read_groups().set_index("group_id")["name"]
    members = store.read_group_members()
    return {(names[g], u) for g, u in zip(members["group_id"], members["user_id"], strict=True)}


# -- effective membership and assignment ---------------------------------------------


def test_three_deep_nesting_gives_the_app(nested: Store) -> None:
    assert nested.read_assigned("chat") == {"u-ann", "u-bob", "u-cy"}
    ann = nested.find_user("ann")
    assert (ann["apps"], ann["direct_apps"], ann["groups"]) == (["chat"], [], ["Platform"])
    assert ann["effective_groups"] == ["Engineering", "Platform", "Team"]
    assert nested.list_users(app="chat")["user_name"].tolist() == ["ann", "bob", "cy"]
    assert nested.group_chains("ann") == {
        "Platform": ("Platform",),
        "Team": ("Team", "Platform"),
        "Engineering": ("Engineering", "Team", "Platform"),
    }
    # bob is in Team himself: the shortest chain wins
    assert nested.group_chains("bob")["Engineering"] == ("Engineering", "Team")


def test_removing_the_middle_link_takes_the_app_away(nested: Store) -> None:
    assert nested.remove_group_from_group("Team", "engineering") is True
    assert nested.remove_group_from_group("Team", "engineering") is False
    assert nested.read_assigned("chat") == {"u-cy"}
    assert nested.find_user("ann")["effective_groups"] == ["Platform", "Team"]
    assert ("Engineering", "u-ann") not in _members(nested)
    assert ("Team", "u-ann") in _members(nested)  # the lower link stays


def test_read_groups_and_members_for_group_push(nested: Store) -> None:
    groups = nested.read_groups()
    assert list(groups.columns) == ["group_id", "name"]
    assert groups["name"].tolist() == ["Engineering", "Platform", "Team"]
    assert pd.api.types.is_integer_dtype(groups["group_id"])
    members = nested.read_group_members()
    assert list(members.columns) == ["group_id", "user_id"]
    assert pd.api.types.is_integer_dtype(members["group_id"])
    assert not members.duplicated().any()  # bob reaches Engineering twice, listed once
    assert _members(nested) == {
        ("Engineering", "u-ann"),
        ("Engineering", "u-bob"),
        ("Engineering", "u-cy"),
        ("Team", "u-ann"),
        ("Team", "u-bob"),
        ("Platform", "u-ann"),
        ("Platform", "u-bob"),
    }


def test_list_groups_shows_member_groups_and_effective_members(nested: Store) -> None:
    nested.add_to_group("dee", "Sales")
    nested.add_group_to_group("Sales", "Engineering")
    expected = pd.DataFrame(
        {
            "name": ["Engineering", "Platform", "Sales", "Team"],
            "members": [1, 2, 1, 1],
            "effective_members": [4, 2, 1, 2],
            "member_groups": ["Sales;Team", "", "", "Platform"],
            "apps": ["chat", "", "", ""],
        }
    )
    pd.testing.assert_frame_equal(nested.list_groups(), expected, check_dtype=False)


def test_adding_creates_the_parent_but_not_the_child(nested: Store) -> None:
    with pytest.raises(GroupNotFoundError, match="no group named 'Ops'"):
        nested.add_group_to_group("Ops", "Engineering")
    nested.add_to_group("dee", "Ops")
    assert nested.add_group_to_group("ops", "Everyone") is True  # Everyone is new
    assert nested.add_group_to_group("OPS", "everyone") is False
    assert nested.find_user("dee")["effective_groups"] == ["Everyone", "Ops"]
    with pytest.raises(GroupNotFoundError, match="no group named 'Nowhere'"):
        nested.remove_group_from_group("Ops", "Nowhere")
    assert nested.remove_group_from_group("Platform", "Engineering") is False  # not directly


# -- cycles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("child", "parent", "message", "cycle"),
    [
        (
            "team",
            "Team",
            "cannot put group 'Team' inside 'Team': a group cannot be inside itself",
            ("Team", "Team"),
        ),
        (
            "Team",
            "Platform",
            "cannot put group 'Team' inside 'Platform': 'Platform' is already inside 'Team'",
            ("Platform", "Team", "Platform"),
        ),
        (
            "Engineering",
            "platform",
            "'Platform' is already inside 'Engineering'",
            ("Platform", "Engineering", "Team", "Platform"),
        ),
    ],
)
def test_cycles_are_refused_with_the_loop_named(
    nested: Store, child: str, parent: str, message: str, cycle: tuple[str, ...]
) -> None:
    before = _edges(nested)
    with pytest.raises(GroupCycleError, match=message) as refused:
        nested.add_group_to_group(child, parent)
    assert refused.value.cycle == cycle
    assert f"(the cycle {' > '.join(cycle)})" in str(refused.value)
    assert _edges(nested) == before


def _edges(store: Store) -> set[tuple[int, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(GroupGroup.parent_id, GroupGroup.child_id))
        return {(int(parent), int(child)) for parent, child in rows}


@pytest.mark.timeout(120, method="thread")
def test_two_nestings_at_once_cannot_close_a_loop_together(store: Store) -> None:
    """A inside B and B inside A, asked at the same moment from two threads: one wins,
    the other is refused, every time."""
    with store.engine.begin() as conn:
        conn.execute(sa.insert(User), [_user("ann")])
    for round_ in range(10):
        a, b = f"a{round_}", f"b{round_}"
        store.add_to_group("ann", a)
        store.add_to_group("ann", b)
        outcomes = _at_once(store, [(a, b), (b, a)])
        assert sorted(type(o).__name__ for o in outcomes) == ["GroupCycleError", "bool"]
    assert len(_edges(store)) == 10


def _at_once(store: Store, pairs: list[tuple[str, str]]) -> list[object]:
    """``add_group_to_group`` for each pair, in threads released together."""
    barrier = threading.Barrier(len(pairs))
    outcomes: list[object] = []

    def nest(child: str, parent: str) -> None:
        barrier.wait()
        try:
            outcomes.append(store.add_group_to_group(child, parent))
        except GroupCycleError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=nest, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.timeout(60, method="thread")  # a loop would hang in C: fail loudly instead
def test_a_cycle_written_straight_into_the_table_does_not_hang(nested: Store) -> None:
    ids = nested.read_groups().set_index("name")["group_id"]
    nested.add_to_group("dee", "Loop")
    loop = int(nested.read_groups().set_index("name")["group_id"]["Loop"])
    with nested.engine.begin() as conn:
        rows = [
            {"parent_id": int(ids["Platform"]), "child_id": int(ids["Engineering"])},
            {"parent_id": loop, "child_id": loop},
        ]
        conn.execute(sa.insert(GroupGroup), rows)
    # Engineering > Team > Platform > Engineering: everyone in the loop is in all three
    assert nested.read_assigned("chat") == {"u-ann", "u-bob", "u-cy"}
    loop_members = {("Loop", "u-dee")}
    trio = {(g, u) for g in ("Engineering", "Team", "Platform") for u in ("u-ann", "u-bob", "u-cy")}
    assert _members(nested) == trio | loop_members
    assert nested.find_user("cy")["effective_groups"] == ["Engineering", "Platform", "Team"]
    assert nested.group_chains("dee") == {"Loop": ("Loop",)}
    assert nested.group_chains("cy")["Team"] == ("Team", "Platform", "Engineering")
    assert nested.list_groups().set_index("name")["effective_members"].to_dict() == {
        "Engineering": 3,
        "Loop": 1,
        "Platform": 3,
        "Team": 3,
    }


# -- the CLI ---------------------------------------------------------------------------

root = typer.Typer()


@root.callback()
def _root(ctx: typer.Context, config: str | None = typer.Option(None, "--config")) -> None:
    ctx.obj = {"config_path": config}


root.add_typer(directory_app, name="directory")


@pytest.fixture
def roster(nested: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    config = tmp_path / "roster.yaml"
    url = nested.engine.url.render_as_string(hide_password=False)
    config.write_text(f"database_url: '{url}'\napps: []\n")

    def invoke(*args: str):
        return CliRunner().invoke(root, ["--config", str(config), "directory", *args])

    return invoke


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_nests_and_unnests_groups(roster) -> None:
    added = _ok(roster("group-add-group", "Platform", "Everyone"))
    assert "Added group Platform to Everyone." in added
    again = _ok(roster("group-add-group", "platform", "everyone"))
    assert "platform was already in everyone." in again
    assert _ok(roster("group-add-group", "Engineering", "Everyone"))
    groups = {g["name"]: g for g in json.loads(_ok(roster("groups", "--json")))}
    assert groups["Everyone"] == {
        "name": "Everyone",
        "members": 0,
        "effective_members": 3,
        "member_groups": ["Engineering", "Platform"],
        "apps": [],
    }
    table = _ok(roster("groups"))
    assert "groups inside" in table and "Engineering, Platform" in table
    shown = _ok(roster("show", "ann"))
    assert "groups (nested)" in shown and "Engineering, Everyone, Team" in shown
    assert json.loads(_ok(roster("show", "ann", "--json")))["effective_groups"] == [
        "Engineering",
        "Everyone",
        "Platform",
        "Team",
    ]
    removed = _ok(roster("group-remove-group", "Team", "Engineering"))
    assert "Removed group Team from Engineering." in removed
    not_in = _ok(roster("group-remove-group", "team", "engineering"))
    assert "team was not in engineering." in not_in
    assert "chat" not in json.loads(_ok(roster("show", "ann", "--json")))["apps"]


def test_cli_refuses_a_cycle_in_one_line(roster) -> None:
    result = roster("group-add-group", "Engineering", "Platform")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: cannot put group 'Engineering' inside 'Platform': 'Platform' is already inside"
        " 'Engineering' (the cycle Platform > Engineering > Team > Platform)"
    )
    assert "Traceback" not in result.output
    missing = roster("group-remove-group", "Nope", "Team")
    assert (missing.exit_code, missing.stderr) == (2, "error: no group named 'Nope'\n")


def test_cli_unassign_warns_with_the_nested_groups(roster) -> None:
    assert _ok(roster("assign", "ann", "chat"))
    result = roster("unassign", "ann", "chat")
    assert result.exit_code == 0, result.output
    assert "ann still has chat through a group (groups: Engineering, Platform, Team)" in (
        result.stderr
    )


# -- the assignment path in explain and provision ----------------------------------------


@pytest.fixture
def scim_env(
    tmp_path: Path, scim: InProcessScim, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Installation]:
    """user0001 only in Platform, inside Engineering, which has chat; no Prefect."""
    monkeypatch.setenv("ROSTER_TEST_TOKEN", TOKEN)
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    store = Store(f"sqlite:///{tmp_path / 'roster.db'}")
    env = Installation(tmp_path, scim, ["chat"], store)
    env.write_config()
    route_to(scim, ["chat"])
    env.import_people([person(0, apps="chat"), person(1, apps="")])
    store.add_to_group("user0001", "Platform")
    store.add_group_to_group("Platform", "Engineering")
    store.assign_group_app("Engineering", "chat")
    yield env
    store.dispose()


def test_explain_and_provision_name_the_chain(scim_env: Installation) -> None:
    config = load_config(scim_env.config_path)
    explanation = explain_user(scim_env.store, config, "user0001", "chat")
    assert explanation.assignment.describe() == "via group Engineering > Platform"
    assert explanation.as_dict()["assignment"] == {
        "direct": False,
        "groups": ["Engineering"],
        "chains": [["Engineering", "Platform"]],
        "path": "via group Engineering > Platform",
    }
    assert explanation.scope.reason == "active; assigned via group Engineering > Platform"
    assert explanation.plan["action"] == "create"
    person1 = load_person(scim_env.store, "user0001")
    assert scope_of(person1, config.app("chat")) == (
        True,
        "active; assigned via group Engineering > Platform",
    )
    scim_env.store.remove_group_from_group("Platform", "Engineering")
    after = explain_user(scim_env.store, config, "user0001", "chat")
    assert (after.scope.in_scope, after.assignment.describe()) == (False, "not assigned")
    assert scim_env.scim.writes() == 0


# -- a sync against a real scim2-server ------------------------------------------------


def test_sync_follows_nesting_and_then_its_removal(
    make_installation: Callable[..., Installation],
) -> None:
    from flows.sync import sync

    env = make_installation(["chat"])
    env.import_people([person(0, apps="chat"), person(1, apps=""), person(2, apps="")])
    env.store.add_to_group("user0001", "Platform")
    env.store.add_group_to_group("Platform", "Team")
    env.store.add_group_to_group("Team", "Engineering")
    env.store.assign_group_app("Engineering", "chat")

    first = sync(config_path=env.config_path)
    assert first["apps"]["chat"]["summary"]["created"] == 2
    assert set(env.accounts("chat")) == {"user0000", "user0001"}
    assert env.accounts("chat")["user0001"]["active"] is True

    env.store.remove_group_from_group("Team", "Engineering")
    second = sync(config_path=env.config_path)
    assert second["apps"]["chat"]["summary"]["deactivated"] == 1
    assert env.accounts("chat")["user0001"]["active"] is False
    assert env.accounts("chat")["user0000"]["active"] is True

    writes = env.scim.writes()
    third = sync(config_path=env.config_path)
    assert env.scim.writes() == writes
    assert third["apps"]["chat"]["summary"]["created"] == 0
    assert third["apps"]["chat"]["summary"]["deactivated"] == 0
