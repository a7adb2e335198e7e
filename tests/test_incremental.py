"""Incremental sync against a real scim2-server: only changed users cost requests, nothing
outside them is judged, in-app drift waits for the full run, and the watermark advances
only on a successful run. Requests are counted on their way to the server."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from directory.changes import stamp_groups
from directory.models import Group, GroupMember, User, UserApp
from directory.store import Store
from directory.watermarks import OVERLAP, SyncMode, Watermarks
from flows.sync import sync
from tasks import session
from tasks.incremental import match_lookups, settled_users
from tasks.plan import PlanRules, attribute_hash
from tests.sync_env import Installation, people, person

APPS = ["chat", "wiki"]
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class CountingTransport(httpx.BaseTransport):
    """Records (method, path) of every request, then hands it to the real server."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.seen: Counter[tuple[str, str]] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.split("/v2", 1)[-1]
        self.seen[(request.method, path)] += 1
        return self.inner.handle_request(request)

    def take(self) -> Counter[tuple[str, str]]:
        """The requests since the last call, without the one-off /ServiceProviderConfig read."""
        seen = Counter({k: n for k, n in self.seen.items() if k[1] != "/ServiceProviderConfig"})
        self.seen = Counter()
        return seen


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    return make_installation(APPS)


@pytest.fixture
def wire(env: Installation) -> dict[str, CountingTransport]:
    counting = {app: CountingTransport(env.scim.transport()) for app in APPS}
    session.TRANSPORTS.update(counting)
    return counting


def run(env: Installation, **kwargs: object) -> dict:
    return sync(config_path=env.config_path, **kwargs)


def incremental(env: Installation, **kwargs: object) -> dict:
    return run(env, mode="incremental", **kwargs)


def age_directory(store: Store, by: timedelta = timedelta(hours=1)) -> None:
    """Move every user's stamp back, as if they had been written an hour before the last
    sync (so the overlap margin does not bring them back)."""
    with store.engine.begin() as conn:  # in Python: SQLite cannot subtract from a timestamp
        users = conn.execute(sa.select(User.id, User.updated_at)).all()
        for uid, stamp in users:
            conn.execute(sa.update(User).where(User.id == uid).values(updated_at=stamp - by))


def synced(env: Installation, n: int = 20, **kwargs: object) -> list[dict]:
    team = people(n, **kwargs)
    env.import_people(team)
    first = run(env)
    assert all(first["apps"][a]["status"] == "ok" for a in APPS)
    age_directory(env.store)
    return team


def user_id(store: Store, user_name: str) -> str:
    return str(store.find_user(user_name)["user_id"])


def paths(seen: Counter[tuple[str, str]]) -> set[str]:
    return {path for _, path in seen}


# -- the directory stamps what changes ---------------------------------------------------


def test_assignments_and_memberships_stamp_the_users_they_affect(database_url: str) -> None:
    store = Store(database_url)
    try:
        with store.engine.begin() as conn:
            for name in ("ann", "bob", "cy"):
                conn.execute(sa.insert(User).values(id=name, user_name=name, email=f"{name}@x"))
        store.add_to_group("bob", "parent")
        store.add_to_group("cy", "child")

        def stamps() -> dict[str, object]:
            with store.engine.connect() as conn:
                return dict(conn.execute(sa.select(User.id, User.updated_at)).all())

        age_directory(store)
        before = stamps()
        assert store.add_group_to_group("child", "parent")  # cy is now parent's too
        after = stamps()
        assert after["cy"] > before["cy"] and after["bob"] == before["bob"]
        with store.engine.connect() as conn:
            ids = dict(conn.execute(sa.select(Group.name, Group.id)).all())
        age_directory(store)
        before = stamps()
        assert store.assign_group_app("parent", "chat")
        after = stamps()
        # the parent's member and the nested group's member; not ann
        assert after["ann"] == before["ann"]
        assert after["bob"] > before["bob"] and after["cy"] > before["cy"]
        age_directory(store)
        before = stamps()
        assert store.assign_app("ann", "chat")
        assert not store.assign_app("ann", "chat")  # no change, no stamp needed
        after = stamps()
        assert after["ann"] > before["ann"] and after["bob"] == before["bob"]
        age_directory(store)
        with store.engine.begin() as conn:
            assert stamp_groups(conn, [ids["child"]]) == 1
    finally:
        store.dispose()


def test_watermarks_keep_the_later_start_and_look_back_by_the_overlap(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert store.read_watermarks("chat") == Watermarks("chat")
        assert Watermarks("chat").since() is None
        from directory.models import utcnow

        now = utcnow().replace(microsecond=0)
        store.save_watermark("chat", SyncMode.FULL, now)
        store.save_watermark("chat", SyncMode.FULL, now - timedelta(hours=1))  # finished late
        store.save_watermark("chat", SyncMode.INCREMENTAL, now - timedelta(minutes=1))
        marks = store.read_watermarks("chat")
        assert (marks.full, marks.incremental) == (now, now - timedelta(minutes=1))
        assert marks.since() == now - OVERLAP
    finally:
        store.dispose()


# -- incremental runs against scim2-server ---------------------------------------------------


def test_one_changed_user_costs_requests_for_that_user_only(
    env: Installation, wire: dict[str, CountingTransport]
) -> None:
    team = synced(env)
    target = env.accounts("chat")["user0005"]["id"]
    team[5]["title"] = "Principal Engineer"
    env.import_people(team)
    wire["chat"].take()
    result = incremental(env, app="chat")
    chat = result["apps"]["chat"]
    assert (chat["status"], chat["mode"]) == ("ok", "incremental")
    assert chat["summary"]["considered"] == 1
    assert chat["summary"]["updated"] == 1
    assert wire["chat"].take() == Counter(
        {("GET", f"/Users/{target}"): 1, ("PATCH", f"/Users/{target}"): 1}
    )
    # the manager reference was translated, not taken for drift: only the title changed
    assert {r["attribute"] for r in chat["drift"] if r["user"] == "user0005"} == {"title"}
    assert env.accounts("chat")["user0005"]["title"] == "Principal Engineer"
    again = incremental(env, app="chat")
    assert again["apps"]["chat"]["summary"]["updated"] == 0
    assert wire["chat"].take() == Counter()


def test_within_the_overlap_settled_users_are_considered_but_not_read(
    env: Installation, wire: dict[str, CountingTransport]
) -> None:
    team = people(12)
    env.import_people(team)
    run(env)  # everyone was stamped just before it: all inside the overlap
    team[3]["department"] = "Sales"
    env.import_people(team)
    wire["wiki"].take()
    result = incremental(env, app="wiki")["apps"]["wiki"]
    assert result["summary"]["considered"] == 12
    assert result["summary"]["updated"] == 1
    assert {path for _, path in wire["wiki"].take()} == {
        f"/Users/{env.accounts('wiki')['user0003']['id']}"
    }
    assert any("11 of them already as last written" in note for note in result["notes"])


def test_second_incremental_run_with_no_changes_reads_and_writes_nothing(
    env: Installation, wire: dict[str, CountingTransport]
) -> None:
    synced(env)
    for app in APPS:
        wire[app].take()
    result = incremental(env)
    for app in APPS:
        assert result["apps"][app]["summary"]["considered"] == 0
        assert result["apps"][app]["status"] == "ok"
        assert wire[app].take() == Counter()


def test_in_app_drift_waits_for_the_full_run(
    env: Installation, wire: dict[str, CountingTransport]
) -> None:
    synced(env)
    target = env.accounts("chat")["user0003"]["id"]
    with env.scim.client("chat") as client:
        client.patch(
            f"/Users/{target}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "path": "title", "value": "Hacked"}],
            },
        )
    wire["chat"].take()
    incremental(env, app="chat")
    assert wire["chat"].take() == Counter()
    assert env.accounts("chat")["user0003"]["title"] == "Hacked"
    full = run(env, app="chat")
    assert full["apps"]["chat"]["mode"] == "full"
    assert full["apps"]["chat"]["summary"]["updated"] == 1
    assert env.accounts("chat")["user0003"]["title"] == "Engineer"


def test_leaver_and_new_joiner_are_handled_incrementally(
    env: Installation, wire: dict[str, CountingTransport]
) -> None:
    team = synced(env)
    team[7]["active"] = "false"
    env.import_people([*team, person(50, manager="user0000")])
    wire["chat"].take()
    result = incremental(env, app="chat")["apps"]["chat"]
    assert result["summary"]["deactivated"] == 1 and result["summary"]["created"] == 1
    assert result["summary"]["orphans"] == 0  # nothing outside the changed users is judged
    chat = env.accounts("chat")
    assert chat["user0007"]["active"] is False
    new = chat["user0050"]
    assert (
        new["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"]
        == chat["user0000"]["id"]
    )
    methods = Counter(method for method, _ in wire["chat"].take().elements())
    # the leaver read and deactivated; the joiner searched (by userName, then email) and created
    assert methods == Counter({"GET": 3, "PATCH": 1, "POST": 1})


def test_an_existing_account_of_a_new_user_is_found_and_linked_not_duplicated(
    env: Installation,
) -> None:
    synced(env, n=5)
    with env.scim.client("chat") as client:
        client.post(
            "/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "USER0009",
            },
        )
    env.import_people([person(9, apps="chat")])
    result = incremental(env, app="chat")["apps"]["chat"]
    assert (result["summary"]["linked"], result["summary"]["created"]) == (1, 0)
    assert len(env.scim.users("chat")) == 6


def test_unassignment_through_a_group_deprovisions_its_members(
    env: Installation, wire: dict[str, CountingTransport]
) -> None:
    env.import_people(people(20, apps="wiki"))
    for i in (2, 3, 4):
        env.store.add_to_group(f"user{i:04d}", "support")
    env.store.assign_group_app("support", "chat")
    run(env)
    assert len(env.accounts("chat")) == 3
    age_directory(env.store)
    assert env.store.unassign_group_app("support", "chat")
    wire["chat"].take()
    wire["wiki"].take()
    result = incremental(env)
    assert result["apps"]["chat"]["summary"]["deactivated"] == 3
    assert result["apps"]["chat"]["summary"]["considered"] == 3
    assert not any(u["active"] for u in env.scim.users("chat"))
    # wiki considered the same three, found them as last written, and read nothing
    assert result["apps"]["wiki"]["summary"]["considered"] == 3
    assert wire["wiki"].take() == Counter()


def test_a_user_deleted_from_the_directory_is_deprovisioned_once(
    env: Installation, wire: dict[str, CountingTransport]
) -> None:
    synced(env)
    gone = user_id(env.store, "user0011")
    with env.store.engine.begin() as conn:
        conn.execute(sa.delete(UserApp).where(UserApp.user_id == gone))
        conn.execute(sa.delete(GroupMember).where(GroupMember.user_id == gone))
        conn.execute(sa.delete(User).where(User.id == gone))
    result = incremental(env, app="chat")["apps"]["chat"]
    assert (result["summary"]["deactivated"], result["summary"]["considered"]) == (1, 1)
    assert env.accounts("chat")["user0011"]["active"] is False
    wire["chat"].take()
    again = incremental(env, app="chat")["apps"]["chat"]
    assert again["summary"]["deactivated"] == 0
    assert wire["chat"].take() == Counter()  # already deactivated: settled, not read


def test_a_failed_run_does_not_advance_the_watermark(
    env: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = synced(env)
    before = env.store.read_watermarks("chat")
    team[4]["title"] = "Lead"
    env.import_people(team)
    monkeypatch.setenv("ROSTER_TEST_TOKEN", "not-the-token")
    failed = incremental(env, app="chat")["apps"]["chat"]
    assert failed["status"] in ("failed", "stopped")
    assert env.store.read_watermarks("chat") == before
    monkeypatch.setenv("ROSTER_TEST_TOKEN", env.scim.token)
    fixed = incremental(env, app="chat")["apps"]["chat"]
    assert (fixed["status"], fixed["summary"]["updated"]) == ("ok", 1)
    assert env.accounts("chat")["user0004"]["title"] == "Lead"
    after = env.store.read_watermarks("chat")
    assert after.incremental is not None and after.full == before.full


def test_a_dry_or_held_run_does_not_advance_the_watermark(env: Installation) -> None:
    team = synced(env, n=40)
    before = env.store.read_watermarks("chat")
    incremental(env, app="chat", dry_run=True)
    assert env.store.read_watermarks("chat") == before
    for p in team[1:21]:
        p["active"] = "false"
    env.import_people(team)
    held = incremental(env, app="chat")["apps"]["chat"]
    # the guard counts against every linked account, not the 20 considered
    assert (held["status"], held["summary"]["held"]) == ("held", 20)
    assert "20 of 40 linked accounts" in " ".join(held["notes"])
    assert env.store.read_watermarks("chat") == before


def test_apps_without_a_watermark_or_with_unique_run_full_and_say_so(env: Installation) -> None:
    env.import_people(people(3))
    first = incremental(env)
    for app in APPS:
        assert first["apps"][app]["mode"] == "full"
        assert any("no successful run yet" in n for n in first["apps"][app]["notes"])
        assert first["apps"][app]["summary"]["created"] == 3
    env.app_settings = {
        "wiki": {"mapping": {"userName": {"expression": "AppendSuffixIfTaken(Lower([user_name]))"}}}
    }
    env.write_config()
    second = incremental(env)
    assert second["apps"]["chat"]["mode"] == "incremental"
    assert second["apps"]["wiki"]["mode"] == "full"
    assert any("calls unique" in n for n in second["apps"]["wiki"]["notes"])


# -- the pure parts ----------------------------------------------------------------------------


def _rules() -> PlanRules:
    return PlanRules(targets=("userName", "title"))


def _desired(rows: list[tuple[str, bool, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "user_name": [r[0] for r in rows],
            "in_scope": [r[1] for r in rows],
            "userName": [r[0] for r in rows],
            "title": [r[2] for r in rows],
        }
    )


def test_settled_users_are_those_already_as_last_written() -> None:
    rules = _rules()
    desired = _desired(
        [("same", True, "A"), ("changed", True, "B"), ("left", False, "A"), ("gone", False, "A")]
    )
    written = attribute_hash(
        _desired([("same", True, "A"), ("changed", True, "old")]), ("userName", "title")
    )
    links = pd.DataFrame(
        {
            "user_id": ["same", "changed", "left", "gone", "vanished", "vanished-done"],
            "remote_id": ["r1", "r2", "r3", "r4", "r5", "r6"],
            "attr_hash": [written[0], written[1], None, None, None, None],
            "status": ["active", "active", "deactivated", "active", "active", "deactivated"],
        }
    )
    assert settled_users(desired, links, rules) == {"same", "left", "vanished-done"}
    # nobody changed, only links whose user is gone
    assert settled_users(desired.iloc[0:0], links.iloc[4:], rules) == {"vanished-done"}


def test_only_unlinked_users_in_scope_are_searched_in_match_order() -> None:
    rules = PlanRules(targets=("userName", "title"), match_on=("userName", "title"))
    desired = _desired(
        [("new", True, "T"), ("linked", True, "T"), ("out", False, "T"), ("blank", True, " ")]
    )
    links = pd.DataFrame(
        {"user_id": ["linked"], "remote_id": ["r"], "attr_hash": [None], "status": ["active"]}
    )
    found = match_lookups(desired, links, rules)
    assert [(lk.user_id, lk.attribute, lk.value) for lk in found] == [
        ("new", "userName", "new"),
        ("new", "title", "T"),
        ("blank", "userName", "blank"),
    ]


def test_roster_sync_incremental_prints_the_mode_and_the_users_considered(
    env: Installation,
) -> None:
    from typer.testing import CliRunner

    from cli.main import app as roster

    synced(env, n=4)
    result = CliRunner().invoke(roster, ["--config", env.config_path, "sync", "--incremental"])
    assert result.exit_code == 0, result.stderr
    assert re.search(r"mode\s+│\s+incremental\s+│\s+incremental", result.stdout)
    assert re.search(r"considered\s+│\s+0\s+│\s+0", result.stdout)
    as_json = CliRunner().invoke(
        roster, ["--config", env.config_path, "sync", "--incremental", "--json"]
    )
    document = json.loads(as_json.stdout)
    assert document["mode"] == "incremental"
    assert document["apps"]["chat"]["mode"] == "incremental"


def test_a_changed_app_setting_makes_the_next_run_full(env: Installation) -> None:
    synced(env, n=5)
    env.app_settings = {"chat": {"mapping": {"title": {"constant": "Staff"}}}}
    env.write_config()
    first = incremental(env)
    assert (first["apps"]["chat"]["mode"], first["apps"]["wiki"]["mode"]) == (
        "full",
        "incremental",
    )
    assert any("settings changed" in n for n in first["apps"]["chat"]["notes"])
    assert first["apps"]["chat"]["summary"]["updated"] == 5
    assert incremental(env)["apps"]["chat"]["mode"] == "incremental"
