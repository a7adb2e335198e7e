"""CSV import on SQLite and PostgreSQL: upserts, replacement of apps and groups, every bad
row reported with its line and nothing written, BOM, full imports and the safety hold."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from directory.config import Safety
from directory.importer import ImportResult, import_csv
from directory.models import Group, GroupMember, Run, User, UserApp
from directory.store import CsvImportError, DirectoryError, SafetyHoldError, Store

SAMPLE = Path(__file__).resolve().parents[1] / "directory" / "sample" / "people.csv"
SAFETY = Safety(max_deprovision_share=0.2, min_deprovision_count=2)

BASE = """\
user_name,email,given_name,family_name,department,title,manager,active,apps,groups
ada,ada@example.com,Ada,Lovelace,Engineering,CTO,,true,chat,eng;leads
bob,bob@example.com,Bob,Builder,Engineering,Engineer,ada,yes,chat;wiki,eng
cy,cy@example.com,Cy,Young,Sales,Rep,Ada,1,crm,
"""


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.dispose()


def write(tmp_path: Path, text: str, name: str = "people.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def run_import(store: Store, path: Path, **options) -> ImportResult:
    return import_csv(store, path, safety=options.pop("safety", SAFETY), **options)


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            model.__tablename__: conn.scalar(sa.select(sa.func.count()).select_from(model)) or 0
            for model in (User, Group, GroupMember, UserApp, Run)
        }


def users(store: Store) -> dict[str, dict]:
    return {row["user_name"]: row for row in store.read_users().to_dict("records")}


def test_import_the_sample_directory(store: Store) -> None:
    result = run_import(store, SAMPLE)
    assert (result.created, result.updated, result.unchanged, result.deactivated) == (199, 0, 0, 0)
    people = store.read_users()
    assert len(people) == 199
    assert (~people["active"]).sum() == 6
    managers = dict(zip(people["user_name"], people["manager"], strict=True))
    depth = {name: _depth(name, managers) for name in managers}
    assert max(depth.values()) == 4  # CEO, department heads, team leads, individuals
    by_department = people.groupby("department")["user_id"].apply(set)
    expected_crm = (
        by_department["Sales"]
        | by_department["Support"]
        | by_department["Product"]
        | by_department["Executive"]
    )
    assert store.read_assigned("crm") == expected_crm
    assert store.read_assigned("chat") == set(people["user_id"])
    again = run_import(store, SAMPLE)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 199)


def _depth(name: str, managers: dict[str, str | None]) -> int:
    manager = managers[name]
    return 1 if manager is None else 1 + _depth(manager, managers)


def test_first_import_creates_users_groups_and_apps(store: Store, tmp_path: Path) -> None:
    result = run_import(store, write(tmp_path, BASE))
    assert result.created_names == ["ada", "bob", "cy"]
    ada = store.find_user("ada")
    assert (ada["given_name"], ada["title"], ada["active"]) == ("Ada", "CTO", True)
    assert (ada["groups"], ada["direct_apps"]) == (["eng", "leads"], ["chat"])
    assert users(store)["cy"]["manager"] == "ada"  # "Ada" in the file, spelled as stored
    assert store.find_user("cy")["groups"] == []
    assert store.latest_run("import")["summary"] == result.summary()  # type: ignore[index]


def test_reimport_updates_only_what_changed(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, BASE))
    changed = """\
user_name,email,given_name,title,apps,groups,active
ADA,ada@example.com,Ada,CTO,chat,eng;leads,
bob,bob@example.com,,Staff Engineer,wiki,eng;oncall,
cy,cy@example.com,Cy,Rep,,Sales,false
"""
    result = run_import(store, write(tmp_path, changed, "changed.csv"))
    assert (result.created, result.updated, result.unchanged) == (0, 2, 1)
    assert result.updated_names == ["bob", "cy"]
    after = users(store)
    assert set(after) == {"ada", "bob", "cy"}  # "ADA" matched ada and kept its spelling
    assert after["bob"]["given_name"] is None  # an empty cell clears the value
    assert after["bob"]["title"] == "Staff Engineer"
    assert after["bob"]["family_name"] == "Builder"  # an absent column leaves it alone
    assert after["bob"]["manager"] == "ada"
    assert after["ada"]["active"] is True  # an empty active cell keeps the value
    assert after["cy"]["active"] is False
    bob, cy = store.find_user("bob"), store.find_user("cy")
    assert (bob["direct_apps"], bob["groups"]) == (["wiki"], ["eng", "oncall"])
    assert (cy["direct_apps"], cy["groups"]) == ([], ["Sales"])


def test_without_apps_and_groups_columns_assignments_stay(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, BASE))
    result = run_import(
        store, write(tmp_path, "user_name,email\nbob,bob@example.com\n", "names.csv")
    )
    assert (result.updated, result.unchanged) == (0, 1)
    assert store.find_user("bob")["direct_apps"] == ["chat", "wiki"]


def test_manager_may_be_an_existing_directory_user(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, BASE))
    run_import(
        store, write(tmp_path, "user_name,email,manager\ndee,dee@example.com,BOB\n", "d.csv")
    )
    assert users(store)["dee"]["manager"] == "bob"
    both = "user_name,email,manager\nADA,ada@example.com,\neve,eve@example.com,Ada\n"
    run_import(store, write(tmp_path, both, "e.csv"))
    assert users(store)["eve"]["manager"] == "ada"  # the directory's spelling wins


def test_unknown_columns_are_named(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "user_name,email,nickname,Shoe Size\nada,ada@example.com,A,9\n")
    with pytest.raises(CsvImportError) as caught:
        run_import(store, path)
    [error] = caught.value.errors
    assert error.line == 1
    assert "'nickname', 'shoe size'" in error.reason
    assert counts(store)["users"] == 0


def test_missing_required_column(store: Store, tmp_path: Path) -> None:
    with pytest.raises(CsvImportError, match="missing required column"):
        run_import(store, write(tmp_path, "user_name,title\nada,CTO\n"))


def test_every_bad_row_is_reported_and_nothing_is_written(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path, BASE))
    before = counts(store)
    bad = """\
user_name,email,manager,active,apps,title
good,good@example.com,ada,true,chat,"a title
that spans two lines"
,nobody@example.com,,,,
noemail,,,,,
bad-email,not-an-email,,,,
bad-active,ba@example.com,,maybe,,
good,dup@example.com,,,,
orphan,orphan@example.com,zed,,,
selfish,selfish@example.com,Selfish,,,
bad-app,bad-app@example.com,,,crm;no spaces,
"""
    with pytest.raises(CsvImportError) as caught:
        run_import(store, write(tmp_path, bad, "bad.csv"))
    reasons = [(error.line, error.reason.split(" (")[0]) for error in caught.value.errors]
    assert reasons == [
        (4, "missing user_name"),
        (5, "missing email"),
        (6, "invalid email 'not-an-email'"),
        (7, "bad active value 'maybe'"),
        (8, "duplicate user_name 'good'"),
        (9, "manager 'zed' not found in the file or the directory"),
        (10, "a user cannot be their own manager"),
        (11, "invalid app name 'no spaces': use letters, digits, '_', '.', '-'"),
    ]
    assert "also on line 2" in caught.value.errors[4].reason
    assert str(caught.value) == f"{tmp_path / 'bad.csv'}: 8 problems, nothing imported"
    assert counts(store) == before
    assert store.find_user("ada")["title"] == "CTO"


def test_a_row_with_too_many_fields(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "user_name,email\nada,ada@example.com,extra\n")
    with pytest.raises(CsvImportError, match="line 2: 3 fields, but the header has 2"):
        run_import(store, path)


def test_empty_and_missing_files(store: Store, tmp_path: Path) -> None:
    with pytest.raises(CsvImportError, match="the file is empty"):
        run_import(store, write(tmp_path, "\n\n"))
    with pytest.raises(DirectoryError, match="file not found"):
        run_import(store, tmp_path / "absent.csv")


def test_a_utf8_bom_is_ignored(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "user_name,email,display_name\nzoë,zoe@example.com,Zoë Ünal\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert run_import(store, path).created == 1
    assert users(store)["zoë"]["display_name"] == "Zoë Ünal"


def test_dry_run_writes_nothing(store: Store, tmp_path: Path) -> None:
    result = run_import(store, write(tmp_path, BASE), dry_run=True)
    assert (result.created, result.dry_run) == (3, True)
    assert counts(store) == {name: 0 for name in counts(store)}


def _directory_of(count: int) -> str:
    rows = [f"user{i},user{i}@example.com" for i in range(count)]
    return "user_name,email\n" + "\n".join(rows) + "\n"


def test_full_import_deactivates_users_missing_from_the_file(store: Store, tmp_path) -> None:
    run_import(store, write(tmp_path, _directory_of(20)))
    result = run_import(store, write(tmp_path, _directory_of(17), "fewer.csv"), full=True)
    assert result.deactivated_names == ["user17", "user18", "user19"]
    assert result.deactivated == 3
    assert not any(users(store)[f"user{i}"]["active"] for i in (17, 18, 19))
    again = run_import(store, write(tmp_path, _directory_of(17), "fewer.csv"), full=True)
    assert again.deactivated == 0  # already inactive users are not deactivated again


def test_full_import_past_the_safety_limit_is_held(store: Store, tmp_path) -> None:
    run_import(store, write(tmp_path, _directory_of(20)))
    before = counts(store)
    half = write(tmp_path, _directory_of(10), "half.csv")
    with pytest.raises(SafetyHoldError, match="refusing to deactivate 10 of 20 active users"):
        run_import(store, half, full=True)
    assert counts(store) == before
    assert store.read_users()["active"].all()
    forced = run_import(store, half, full=True, force=True)
    assert forced.deactivated == 10


def test_small_deactivations_pass_the_minimum_count(store: Store, tmp_path) -> None:
    run_import(store, write(tmp_path, _directory_of(3)))
    safety = Safety(max_deprovision_share=0.2, min_deprovision_count=10)
    result = run_import(
        store, write(tmp_path, _directory_of(1), "one.csv"), full=True, safety=safety
    )
    assert result.deactivated == 2  # two thirds, but not more than ten


def test_group_assigned_apps_count_for_read_assigned(store: Store, tmp_path) -> None:
    run_import(store, write(tmp_path, BASE))
    store.assign_group_app("eng", "jira")
    ids = {name: user["user_id"] for name, user in users(store).items()}
    assert store.read_assigned("jira") == {ids["ada"], ids["bob"]}
    moved = BASE.replace("Sales,Rep,Ada,1,crm,", "Sales,Rep,Ada,1,crm,ENG")
    run_import(store, write(tmp_path, moved, "moved.csv"))
    assert store.read_assigned("jira") == {ids["ada"], ids["bob"], ids["cy"]}
    assert store.list_groups()["name"].tolist() == ["eng", "leads"]


def test_import_5000_rows_in_bulk(store: Store, tmp_path) -> None:
    header = "user_name,email,department,manager,apps,groups\n"
    rows = [
        f"user{i},user{i}@example.com,D{i % 7},{'user0' if i else ''},chat;wiki,g{i % 5}"
        for i in range(5000)
    ]
    path = write(tmp_path, header + "\n".join(rows) + "\n")
    started = time.monotonic()
    assert run_import(store, path).created == 5000
    assert run_import(store, path).unchanged == 5000
    assert time.monotonic() - started < 30
    assert len(store.read_assigned("wiki")) == 5000
    assert counts(store)["group_members"] == 5000
