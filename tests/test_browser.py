"""Checked in a real browser: a sync's drift report, rendered by the Prefect UI in Chromium.

A real Prefect server (``prefect server start``), a real SCIM app (the ``scim2-server``
command), ``roster sync`` run as a user runs it, and Debian's headless Chromium reading the
pages the UI renders. The screenshot it takes is docs/img/drift-report.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from directory.store import Store
from tests.browser_support import (
    CHROMIUM,
    artifact_ids,
    dump_dom_until,
    html_tables,
    prefect_env,
    prefect_server,
    screenshot,
    ui_artifact_url,
    ui_flow_run_artifacts_url,
    ui_flow_run_url,
)
from tests.scim_apps import TOKEN, standalone_scim

pytestmark = pytest.mark.service

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "img" / "drift-report.png"
APPROVAL = REPO / "docs" / "img" / "approval.png"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PEOPLE = """user_name,email,given_name,family_name,display_name,department,title,apps
ada.lovelace,ada@example.com,Ada,Lovelace,Ada Lovelace,Engineering,Engineer,chat
alan.turing,alan@example.com,Alan,Turing,Alan Turing,Research,Scientist,chat
grace.hopper,grace@example.com,Grace,Hopper,Grace Hopper,Engineering,Rear Admiral,chat
"""


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"the browser check needs {CHROMIUM} (apt-get install chromium); .ci/run has it"
        if os.environ.get("ROSTER_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def test_the_drift_report_is_rendered_in_the_prefect_ui(tmp_path: Path, chromium: Path) -> None:
    with standalone_scim(["chat"]) as scim_root, prefect_server(tmp_path / "server") as ui:
        roster = Roster(tmp_path, f"{scim_root}/chat/v2", f"{ui}/api")
        with roster.app_client() as app:
            # made by hand before Roster: one nobody owns, one it adopts with a stale title
            app.post("/Users", json={"schemas": [CORE], "userName": "mallory"})
            app.post("/Users", json={"schemas": [CORE], "userName": "grace.hopper", "title": "x"})
            roster.sync()
            # then changed in the app, behind Roster's back
            change(app, "alan.turing", title="Contractor", displayName="A. Turing (ext)")
            change(app, "ada.lovelace", active=False)
        result = roster.sync()
        summary = result["apps"]["chat"]["summary"]
        assert (summary["updated"], summary["unchanged"], summary["orphans"]) == (2, 1, 1)
        flow_run_id = roster.last_flow_run_id()
        artifacts = artifact_ids(f"{ui}/api", flow_run_id)

        listing = dump_dom_until(
            ui_flow_run_artifacts_url(ui, flow_run_id), lambda dom: "drift-chat-summary" in dom
        )
        assert "drift-chat-summary" in listing and "Drifted, failed and held" in listing

        figures = rendered_tables(ui_artifact_url(ui, artifacts["drift-chat-summary"]))
        assert figures[0] == [{key: str(summary[key]) for key in figures[0][0]}]
        assert {"updated", "unchanged", "orphans", "held"} <= set(figures[0][0])

        drift_page = ui_artifact_url(ui, artifacts["drift-chat"])
        drift = rendered_tables(drift_page)[0]
        expected = {"user": "alan.turing", "situation": "drifted", "origin": "app"}
        assert {**expected, "attribute": "title", "old": "Contractor", "new": "Scientist"} in [
            {k: row.get(k) for k in (*expected, "attribute", "old", "new")} for row in drift
        ]
        assert {row["user"] for row in drift} == {"alan.turing", "ada.lovelace", "mallory"}
        screenshot(drift_page, SCREENSHOT, size=(2240, 520))
    assert SCREENSHOT.stat().st_size > 20_000  # a rendered page, not a blank one


def test_a_held_sync_shows_its_approval_form_in_the_prefect_ui(
    tmp_path: Path, chromium: Path
) -> None:
    """The paused run's page offers the decision; a rejection through the same API the
    form posts to leaves every account active."""
    with standalone_scim(["chat"]) as scim_root, prefect_server(tmp_path / "server") as ui:
        roster = Roster(tmp_path, f"{scim_root}/chat/v2", f"{ui}/api", hold_any=True)
        roster.sync()
        leavers = PEOPLE.replace(",chat\n", ",\n")  # everyone unassigned: held
        (tmp_path / "people.csv").write_text(leavers, encoding="utf-8")
        roster.run("directory", "import", str(tmp_path / "people.csv"))
        with roster.background("sync") as proc:
            paused = wait_for_paused_run(f"{ui}/api", proc)
            page = dump_dom_until(
                ui_flow_run_url(ui, paused["id"], v1=True), lambda dom: "Resume" in dom
            )
            assert "Paused" in page and "Resume" in page
            # what the Resume dialog renders
            form = json.loads(run_input(f"{ui}/api", paused, "schema"))
            assert {"approve", "approver", "comment"} <= set(form["properties"])
            assert "3 actions" in run_input(f"{ui}/api", paused, "description")
            screenshot(ui_flow_run_url(ui, paused["id"], v1=True), APPROVAL, size=(1400, 700))
            assert "held-chat" in artifact_ids(f"{ui}/api", paused["id"])
            decision = {"approve": False, "approver": "ann", "comment": "not today"}
            resumed = httpx.post(
                f"{ui}/api/flow_runs/{paused['id']}/resume",
                json={"run_input": decision},
                timeout=10,
            )
            resumed.raise_for_status()
            assert proc.wait(timeout=120) == 0
        with roster.app_client() as app:
            users = app.get("/Users").json()["Resources"]
        assert len(users) == 3 and all(u["active"] for u in users)


def run_input(api_url: str, flow_run: dict[str, Any], part: str) -> str:
    """One part (the form's JSON schema, its description) of the input a paused run
    waits for, as the UI reads it: the server returns it as text."""
    key = flow_run["state"]["state_details"]["run_input_keyset"][part]
    response = httpx.get(f"{api_url}/flow_runs/{flow_run['id']}/input/{key}", timeout=10)
    response.raise_for_status()
    return response.text


def wait_for_paused_run(api_url: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    body = {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sync ended instead of waiting for a decision"
        runs = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10).json()
        if runs:
            return dict(runs[0])
        time.sleep(1)
    raise AssertionError("no flow run paused within 120 s")


def rendered_tables(url: str) -> list[list[dict[str, str]]]:
    """The page's tables once the app has rendered at least one with rows."""
    dom = dump_dom_until(url, lambda dom: any(html_tables(dom)))
    tables = [table for table in html_tables(dom) if table]
    assert tables, f"no table rendered at {url}"
    return tables


def change(app: httpx.Client, user_name: str, **values: Any) -> None:
    found = app.get("/Users", params={"filter": f'userName eq "{user_name}"'}).json()
    operations = [{"op": "replace", "path": k, "value": v} for k, v in values.items()]
    response = app.patch(
        f"/Users/{found['Resources'][0]['id']}",
        json={"schemas": [PATCH], "Operations": operations},
    )
    response.raise_for_status()


class Roster:
    """An installation driven through the ``roster`` command, against the Prefect server."""

    def __init__(self, root: Path, base_url: str, api_url: str, *, hold_any: bool = False) -> None:
        self.root = root
        self.base_url = base_url
        self.database_url = f"sqlite:///{root / 'roster.db'}"
        config = {
            "database_url": self.database_url,
            "apps": [{"name": "chat", "connector": "scim", "base_url": base_url,
                      "token_env": "CHAT_TOKEN"}],
        }  # fmt: skip
        if hold_any:  # any deprovisioning is held for a decision
            config["safety"] = {"max_deprovision_share": 0, "min_deprovision_count": 0}
        self.config = root / "roster.yaml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.env = prefect_env(root / "client", api_url, CHAT_TOKEN=TOKEN, ROSTER_HOME=str(root))
        (root / "people.csv").write_text(PEOPLE, encoding="utf-8")
        self.run("directory", "import", str(root / "people.csv"))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", "--config", str(self.config), *args]

    @contextlib.contextmanager
    def background(self, *args: str) -> Iterator[subprocess.Popen[bytes]]:
        with subprocess.Popen(self.command(*args), env=self.env, cwd=REPO) as proc:
            try:
                yield proc
            finally:
                if proc.poll() is None:
                    proc.kill()

    def run(self, *args: str) -> str:
        command = self.command(*args)
        done = subprocess.run(
            command, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def sync(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("sync", "--json"))
        return result

    def last_flow_run_id(self) -> str:
        with Store(self.database_url) as store:
            run = store.latest_run("sync")
        assert run is not None and run["flow_run_id"]
        return str(run["flow_run_id"])

    def app_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {TOKEN}"})
