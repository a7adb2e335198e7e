"""Held actions wait for a decision in the Prefect UI: approve applies them, reject or no
answer applies nothing destructive, and the action log keeps who decided what and when.
In local mode the CLI says what was held and how to approve it.

The pause runs on the session's real Prefect server (``prefect_harness``); a thread plays
the approver, resuming the paused flow run with the form's input as the UI would."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from cli.main import app as roster_cli
from flows.sync import sync
from tasks.approval import approvals_in_ui, held_key, held_rows
from tests.health_support import Resumer
from tests.sync_env import FIELDS, Installation, people

LEAVERS = 20


@pytest.fixture
def env(make_installation: Callable[..., Installation]) -> Installation:
    """40 people in chat, synced; then half of them leave: a deactivation the guard holds."""
    env = make_installation(["chat"])
    team = people(40, apps="chat")
    env.import_people(team)
    sync(config_path=env.config_path)
    for p in team[1 : LEAVERS + 1]:
        p["active"] = "false"
    env.import_people(team)
    return env


def inactive(env: Installation) -> int:
    return sum(not u["active"] for u in env.scim.users("chat"))


def decided_rows(env: Installation, run_id: str) -> pd.DataFrame:
    log = env.store.read_actions(run_id, app="chat")
    return log[log["decided_at"].notna()]


def sync_waiting(env: Installation, *answers: dict, timeout: int = 60) -> dict:
    """A sync that waits for decisions, with an approver giving ``answers`` in turn."""
    resumer = Resumer(env.store, *answers)
    resumer.start()
    result = sync(config_path=env.config_path, wait_for_approval=True, approval_timeout=timeout)
    resumer.join(10)
    assert not resumer.errors, resumer.errors
    assert not resumer.answers  # every answer was used
    return result


def test_approve_in_the_ui_applies_the_held_deactivations(env: Installation) -> None:
    result = sync_waiting(
        env, {"approve": True, "approver": "ann", "comment": "leavers confirmed by HR"}
    )
    chat = result["apps"]["chat"]
    assert inactive(env) == LEAVERS
    assert chat["status"] == "ok" and chat["summary"]["deactivated"] == LEAVERS
    assert chat["approval"]["decision"] == "approved" and chat["approval"]["approver"] == "ann"
    decided = decided_rows(env, result["run_id"])
    assert len(decided) == LEAVERS
    assert set(decided["outcome"]) == {"approved"} and set(decided["decided_by"]) == {"ann"}
    assert set(decided["decision_note"]) == {"leavers confirmed by HR"}
    log = env.store.read_actions(result["run_id"], app="chat")
    done = log[(log["action"] == "deactivate") & (log["outcome"] == "succeeded")]
    assert sorted(done["user_name"]) == [f"user{i:04d}" for i in range(1, LEAVERS + 1)]
    assert "held actions approved by ann: leavers confirmed by HR" in chat["notes"]


def test_reject_in_the_ui_leaves_every_account_active(env: Installation) -> None:
    result = sync_waiting(env, {"approve": False, "approver": "bob", "comment": "wrong export"})
    chat = result["apps"]["chat"]
    assert inactive(env) == 0
    assert chat["summary"]["deactivated"] == 0 and chat["approval"]["decision"] == "rejected"
    decided = decided_rows(env, result["run_id"])
    assert len(decided) == LEAVERS and set(decided["outcome"]) == {"rejected"}
    assert set(decided["decided_by"]) == {"bob"}
    log = env.store.read_actions(result["run_id"], app="chat")
    assert not (log["outcome"] == "succeeded").any()
    statuses = {r["status"] for r in chat["drift"] if r["action"] == "deactivate"}
    assert statuses == {"rejected"}


def test_no_answer_before_the_timeout_applies_nothing(env: Installation) -> None:
    result = sync_waiting(env, timeout=2)
    assert inactive(env) == 0
    assert result["apps"]["chat"]["approval"]["decision"] == "expired"
    decided = decided_rows(env, result["run_id"])
    assert len(decided) == LEAVERS and set(decided["outcome"]) == {"expired"}
    assert decided["decided_by"].isna().all()
    flow_run_id = env.store.latest_run("sync")["flow_run_id"]
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    assert state is not None and state.is_failed()  # Prefect: paused and never resumed


def held_in_both_apps(make_installation: Callable[..., Installation]) -> Installation:
    env = make_installation(["chat", "wiki"])
    team = people(30)
    env.import_people(team)
    sync(config_path=env.config_path)
    for p in team[1:16]:
        p["apps"] = ""  # half of everyone leaves both apps
    env.import_people(team)
    return env


def test_each_app_gets_its_own_decision(make_installation: Callable[..., Installation]) -> None:
    env = held_in_both_apps(make_installation)
    result = sync_waiting(
        env, {"approve": True, "approver": "ann"}, {"approve": False, "approver": "bob"}
    )
    assert result["apps"]["chat"]["approval"]["decision"] == "approved"
    assert result["apps"]["wiki"]["approval"]["decision"] == "rejected"
    assert sum(not u["active"] for u in env.scim.users("chat")) == 15
    assert all(u["active"] for u in env.scim.users("wiki"))


def test_after_an_expiry_the_remaining_apps_expire_without_asking(
    make_installation: Callable[..., Installation],
) -> None:
    env = held_in_both_apps(make_installation)
    result = sync_waiting(env, timeout=2)
    chat, wiki = result["apps"]["chat"]["approval"], result["apps"]["wiki"]["approval"]
    assert (chat["decision"], wiki["decision"]) == ("expired", "expired")
    assert wiki["comment"] == "an earlier approval of this run expired"
    decided = env.store.read_actions(result["run_id"]).dropna(subset=["decided_at"])
    assert decided.groupby("app")["outcome"].unique().map(list).to_dict() == {
        "chat": ["expired"],
        "wiki": ["expired"],
    }


def test_the_held_list_is_an_artifact_the_approver_can_read(env: Installation) -> None:
    sync_waiting(env, {"approve": False, "approver": "bob"})
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[held_key("chat")])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert artifact.type == "table" and len(rows) == LEAVERS
    assert {r["action"] for r in rows} == {"deactivate"}
    assert "user0001" in {r["user"] for r in rows}


def test_local_mode_holds_and_the_cli_says_how_to_approve(env: Installation) -> None:
    assert not approvals_in_ui()  # the harness server is this process's own, UI off
    held = CliRunner().invoke(roster_cli, ["--config", env.config_path, "sync", "--app", "chat"])
    assert held.exit_code == 0, held.stderr
    out = " ".join(held.stdout.split())
    assert f"{LEAVERS} actions held and not applied ({LEAVERS} deactivate)" in out
    assert "roster sync --app chat --approve-held" in out
    assert "local mode" in out
    assert inactive(env) == 0
    approved = CliRunner().invoke(
        roster_cli, ["--config", env.config_path, "sync", "--app", "chat", "--approve-held"]
    )
    assert approved.exit_code == 0, approved.stderr
    assert inactive(env) == LEAVERS


def test_a_standalone_server_means_approvals_in_its_ui() -> None:
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert approvals_in_ui()


def test_held_rows_list_only_held_accounts() -> None:
    plan = pd.DataFrame(
        {
            "user_name": ["a", "b"],
            "remote_id": ["1", "2"],
            "action": ["deactivate", "update"],
            "situation": ["deprovision", "drifted"],
            "held": [True, False],
        }
    )
    assert held_rows(plan) == [
        {"user": "a", "remote_id": "1", "action": "deactivate", "situation": "deprovision"}
    ]
    assert held_key("Chat_EU.1") == "held-chat-eu-1"


# -- the real thing: `roster sync` against a standalone Prefect server ---------------------


@pytest.mark.service
def test_roster_sync_against_a_prefect_server_waits_for_the_decision(tmp_path: Path) -> None:
    """No flag forces the pause here: the CLI finds a server in PREFECT_API_URL, pauses,
    and an approval through the server's API (what the UI's form sends) lets it finish."""
    from tests.scim_apps import standalone_scim
    from tests.service_support import BIN, background, make_site, poll, prefect_server

    with standalone_scim(["chat"]) as scim_root, prefect_server(tmp_path / "server") as server:
        site = make_site(tmp_path / "site", server, scim_root, ["chat"], 40)
        team = people(40, apps="chat")
        for p in team[1 : LEAVERS + 1]:
            p["apps"] = ""  # unassigned: deprovisioned, which the guard holds
        write_people(site.root / "people.csv", team)
        site.roster("directory", "import", "people.csv")
        command = [str(BIN / "roster"), "sync", "--app", "chat"]
        with background(command, env=site.env, cwd=site.root, log=tmp_path / "sync.log") as proc:
            paused = poll(lambda: paused_run(server), timeout=120)
            body = {"run_input": {"approve": True, "approver": "ann", "comment": "ok"}}
            server.post(f"/flow_runs/{paused['id']}/resume", body)
            assert proc.wait(timeout=120) == 0, (tmp_path / "sync.log").read_text()
        assert {site.active_in(f"user{i:04d}")["chat"] for i in range(1, LEAVERS + 1)} == {False}
        assert site.active_in("user0030")["chat"] is True
        assert "held-chat" in {a["key"] for a in server.post("/artifacts/filter", {})}


def paused_run(server: Any) -> dict[str, Any] | None:
    runs = server.post(
        "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}
    )
    return runs[0] if runs else None


def write_people(path: Path, team: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(team)


def test_a_decision_is_written_onto_the_run_s_held_rows_only(database_url: str) -> None:
    from datetime import UTC, datetime

    from directory.errors import DirectoryError
    from directory.store import Store

    when = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    row = {"user_id": "u1", "action": "deactivate", "situation": "deprovision"}
    with Store(database_url) as store:
        run_id = store.start_run("sync")
        store.log_actions(run_id, "chat", [{**row, "outcome": "held"}] * 2)
        store.log_actions(run_id, "chat", [{**row, "outcome": "succeeded"}])
        store.log_actions(run_id, "wiki", [{**row, "outcome": "held"}])
        marked = store.record_decision(
            run_id, "chat", "rejected", decided_by="bob", decided_at=when, note="no"
        )
        with pytest.raises(DirectoryError):
            store.record_decision(run_id, "chat", "succeeded", decided_by="x", decided_at=when)
        log = store.read_actions(run_id)
    assert marked == 2
    assert log["outcome"].tolist() == ["rejected", "rejected", "succeeded", "held"]
    assert log["decided_by"].tolist() == ["bob", "bob", None, None]
    assert pd.Timestamp(log.loc[0, "decided_at"]) == when
    assert log.loc[1, "decision_note"] == "no"
