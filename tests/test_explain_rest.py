"""``roster explain`` for an app that is not SCIM: the declarative REST kind against the
strict toy REST app (tests/rest_server.py). Same answers, same promise: nothing written,
not to the app and not to the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from directory.store import Store
from tests.rest_server import SECRET, ToyRestApp, toy_entry
from tests.scim_apps import InProcessScim
from tests.socket_server import serve_wsgi
from tests.sync_env import Installation, person
from tests.test_explain import explain, mapping, roster


@pytest.fixture
def toy_env(
    tmp_path: Path, scim: InProcessScim, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Installation, ToyRestApp]]:
    """user0000 has a toy account of their login (unlinked); user0001 has none;
    user0002's linked account has another display name."""
    monkeypatch.setenv("ROSTER_TOY_SECRET", SECRET)
    monkeypatch.delenv("ROSTER_DATABASE_URL", raising=False)
    app = ToyRestApp(style="none")
    app.seed("user0000")
    linked = app.seed("user0002", profile={"email": "user0002@example.com", "name": "Old"})
    store = Store(f"sqlite:///{tmp_path / 'roster.db'}")
    with serve_wsgi(app) as (url, _):
        entry = toy_entry(url, style="none")
        entry["fields"] = {**entry["fields"], "displayName": "profile.name"}
        env = Installation(tmp_path, scim, [], store, extra_apps=[entry])
        env.write_config()
        env.import_people([person(i, apps="toy") for i in range(3)])
        user_id = store.find_user("user0002")["user_id"]
        store.upsert_links("toy", [{"user_id": user_id, "remote_id": linked, "status": "active"}])
        yield env, app
    store.dispose()


def test_explain_on_a_rest_app_matches_plans_and_writes_nothing(
    toy_env: tuple[Installation, ToyRestApp],
) -> None:
    env, app = toy_env
    before = app.writes()

    matched = explain(env, "user0000", "toy")
    assert matched["match"]["by"] == "userName"
    assert (matched["plan"]["situation"], matched["plan"]["action"]) == ("matched", "link")

    missing = explain(env, "user0001", "toy")
    assert missing["match"]["remote_id"] is None
    assert (missing["plan"]["situation"], missing["plan"]["action"]) == ("missing", "create")
    assert mapping(missing)["userName"]["desired"] == "user0001"

    drifted = explain(env, "user0002", "toy")
    assert drifted["match"]["by"] == "link"
    assert drifted["plan"]["action"] == "update"
    assert drifted["plan"]["changes"]["displayName"] == ["Old", "Given2 Family2"]
    table = roster(env, "user0002", "toy")
    assert table.exit_code == 0 and "Old → Given2 Family2" in table.stdout

    assert app.writes() == before == 0
