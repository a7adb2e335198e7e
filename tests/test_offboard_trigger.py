"""Deactivating someone in the directory offboards them at once, through a Prefect event and
the ``offboard`` deployment's trigger, and without a server nothing is sent.

The service test runs everything for real, each in its own process: ``prefect server
start``, scim2-server with three apps, ``roster`` commands, and ``python -m
deployments.serve`` with the trigger.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scim_apps import free_port, standalone_scim
from tests.service_support import (
    REPO,
    PrefectServer,
    RosterSite,
    background,
    make_site,
    poll,
    prefect_env,
    prefect_server,
    roster,
    serve_command,
)

APPS = ["chat", "wiki", "crm"]
#: a served run starts in a new process: allow for a loaded 2-core machine
RUN_TIMEOUT = 150.0


def test_without_a_server_nothing_is_sent_and_prefect_is_not_imported(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from cli.events import emit_user_deactivated\n"
        "sent = emit_user_deactivated({'user_id': 'u1', 'user_name': 'ann'})\n"
        "print(sent, 'prefect' in sys.modules)\n"
    )
    env = prefect_env(tmp_path / "prefect")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False"]


def test_an_unreachable_server_is_a_warning_and_the_user_stays_deactivated(
    tmp_path: Path,
) -> None:
    (tmp_path / "roster.yaml").write_text(f"database_url: sqlite:///{tmp_path / 'roster.db'}\n")
    (tmp_path / "people.csv").write_text("user_name,email\nann,ann@example.com\n")
    dead = f"http://127.0.0.1:{free_port()}/api"
    env = prefect_env(tmp_path / "prefect", dead, ROSTER_CONFIG=str(tmp_path / "roster.yaml"))
    roster("directory", "import", "people.csv", env=env, cwd=tmp_path)
    result = roster("directory", "deactivate", "ann", env=env, cwd=tmp_path)
    assert "Deactivated ann." in result.stdout
    assert f"the Prefect server at {dead} is unreachable" in result.stderr
    assert "roster offboard USER" in result.stderr
    shown = roster("directory", "users", "--inactive", "--json", env=env, cwd=tmp_path)
    assert '"ann"' in shown.stdout


def test_a_server_that_refuses_the_events_is_a_warning(tmp_path: Path) -> None:
    """Any HTTP server that is not Prefect's answers something other than 204."""
    (tmp_path / "roster.yaml").write_text(f"database_url: sqlite:///{tmp_path / 'roster.db'}\n")
    (tmp_path / "people.csv").write_text("user_name,email\nann,ann@example.com\n")
    with standalone_scim(["other"]) as root:
        env = prefect_env(
            tmp_path / "prefect", f"{root}/api", ROSTER_CONFIG=str(tmp_path / "roster.yaml")
        )
        roster("directory", "import", "people.csv", env=env, cwd=tmp_path)
        result = roster("directory", "deactivate", "ann", env=env, cwd=tmp_path)
    assert "Deactivated ann." in result.stdout
    assert "refused the events (HTTP 404)" in result.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as running:
        yield running


@pytest.fixture
def site(tmp_path: Path, server: PrefectServer) -> Iterator[RosterSite]:
    """Six people with an active account in each of three apps, synced through the server."""
    with standalone_scim(APPS) as scim_root:
        yield make_site(tmp_path / "site", server, scim_root, APPS, people_count=6)


def _completed_runs(server: PrefectServer, users: set[str]) -> dict[str, dict[str, Any]] | None:
    deployment = server.deployment("offboard", "offboard")
    runs = {r["parameters"].get("user"): r for r in server.flow_runs(deployment["id"])}
    failed = [r for r in runs.values() if r["state_type"] in ("FAILED", "CRASHED")]
    if failed:
        raise AssertionError(f"offboarding run failed: {failed[0]['state']}")
    done = {u: runs[u] for u in users if u in runs and runs[u]["state_type"] == "COMPLETED"}
    return done if len(done) == len(users) else None


def _offboard_served(server: PrefectServer, serving: subprocess.Popen[bytes]) -> bool | None:
    assert serving.poll() is None, "deployments.serve exited"
    try:
        server.deployment("offboard", "offboard")
    except Exception:
        return None
    return True if server.post("/automations/filter", {}) else None


@pytest.mark.service
def test_deactivating_in_the_directory_offboards_in_every_app(
    site: RosterSite, server: PrefectServer, tmp_path: Path
) -> None:
    assert all(site.active_in("user0001").values())
    assert all(site.active_in("user0002").values())
    log = tmp_path / "serve.log"
    with background(serve_command(poll=1), env=site.env, cwd=REPO, log=log) as serving:
        poll(lambda: _offboard_served(server, serving), timeout=120, interval=0.5)

        deactivated = site.roster("directory", "deactivate", "user0001")
        assert "Sent roster.user.deactivated to Prefect for 1 user(s)." in deactivated.stdout

        people = (site.root / "people.csv").read_text().splitlines()
        kept = [line for line in people if not line.startswith("user0002,")]
        (site.root / "people.csv").write_text("\n".join(kept) + "\n")
        imported = site.roster("directory", "import", "people.csv", "--full")
        assert "Sent roster.user.deactivated to Prefect for 1 user(s)." in imported.stdout

        runs = poll(lambda: _completed_runs(server, {"user0001", "user0002"}), timeout=RUN_TIMEOUT)
    assert set(runs) == {"user0001", "user0002"}
    for user in ("user0001", "user0002"):
        assert site.active_in(user) == dict.fromkeys(APPS, False), user
    assert site.active_in("user0003") == dict.fromkeys(APPS, True)
