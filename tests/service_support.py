"""Real services for the slow (``service``) tests and the offboarding benchmark: a Prefect
server started with ``prefect server start`` on a free port and a throwaway PREFECT_HOME,
and helpers to run Roster's own commands against it as subprocesses.

Why subprocesses: the test session already has an in-process Prefect test server
(``prefect_harness``); a second server and the clients that talk to it live in their own
processes so neither can pick up the other's settings.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from cli.prefect_env import prefect_defaults
from tests.scim_apps import TOKEN, free_port
from tests.sync_env import FIELDS, people

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: a fresh database is migrated on first start (~18 s measured); slow CI gets headroom
SERVER_START_TIMEOUT = 180.0
T = TypeVar("T")


def prefect_env(home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a Prefect process: this one's, Roster's fast Prefect settings
    (cli/prefect_env.py), its own PREFECT_HOME, and the server to use (or none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(prefect_defaults())
    env["PREFECT_HOME"] = str(home)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    log: Path

    def client_env(self, home: Path, **extra: str) -> dict[str, str]:
        """Environment for a client process (roster, serve, worker) of this server."""
        home.mkdir(parents=True, exist_ok=True)
        return prefect_env(home, self.api_url, **extra)

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api_url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        response = httpx.post(f"{self.api_url}{path}", json=dict(body), timeout=10)
        response.raise_for_status()
        return response.json()

    def flow_runs(self, deployment_id: str) -> list[dict[str, Any]]:
        body = {"deployments": {"id": {"any_": [deployment_id]}}}
        return list(self.post("/flow_runs/filter", body))

    def deployment(self, flow_name: str, name: str) -> dict[str, Any]:
        return dict(self.get(f"/deployments/name/{flow_name}/{name}"))


@contextlib.contextmanager
def prefect_server(home: Path, *, ui: bool = False) -> Iterator[PrefectServer]:
    """``prefect server start`` on 127.0.0.1 and a free port, SQLite in ``home``.

    The UI is off unless asked for: serving it costs start-up time the API tests do not need.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log = home / "server.log"
    env = prefect_env(home, PREFECT_UI_ENABLED=str(ui).lower())
    args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(api_url, proc, log)
        yield PrefectServer(api_url=api_url, home=home, log=log)
    finally:
        stop_process(proc, grace=20)


def _wait_healthy(api_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited early:\n{tail(log)}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"prefect server not healthy after {SERVER_START_TIMEOUT} s:\n{tail(log)}")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGINT first (Prefect's serve and server shut down cleanly on it), then kill."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def roster(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``roster`` command; fails with its output when it fails."""
    result = subprocess.run(
        [str(BIN / "roster"), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"roster {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


@contextlib.contextmanager
def background(
    args: list[str], *, env: Mapping[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running process (serve, worker) with its output in ``log``; stopped after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    except BaseException:
        print(f"--- {log.name} (last lines) ---\n{tail(log)}", file=sys.stderr)
        raise
    finally:
        stop_process(proc)


def poll(check: Callable[[], T | None], *, timeout: float, interval: float = 0.2) -> T:
    """Call ``check`` until it returns something other than None; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing after {timeout} s")
        time.sleep(interval)


@dataclass
class RosterSite:
    """A Roster installation for service tests and benchmarks: roster.yaml and a SQLite
    directory in ``root``, apps on a standalone scim2-server, commands run as subprocesses
    against a Prefect server."""

    root: Path
    env: dict[str, str]
    scim_root: str
    apps: list[str]

    def roster(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return roster(*args, env=self.env, cwd=self.root, timeout=timeout)

    def account(self, app: str, user_name: str) -> dict[str, Any] | None:
        """The app's account for ``user_name``, read over SCIM (RFC 7644 §3.4.2.2 filter)."""
        response = httpx.get(
            f"{self.scim_root}/{app}/v2/Users",
            params={"filter": f'userName eq "{user_name}"'},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        resources = response.json().get("Resources", [])
        return dict(resources[0]) if resources else None

    def active_in(self, user_name: str) -> dict[str, bool | None]:
        """``active`` per app for one person, as each app reports it (None: no account)."""
        found = {app: self.account(app, user_name) for app in self.apps}
        return {app: None if acc is None else bool(acc.get("active")) for app, acc in found.items()}


def make_site(
    root: Path,
    server: PrefectServer,
    scim_root: str,
    apps: list[str],
    people_count: int,
    *,
    synced: bool = True,
) -> RosterSite:
    """Write roster.yaml and a directory of ``people_count`` people assigned every app,
    import it and (``synced``) sync once, so every person has a linked, active account in
    every app."""
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "database_url": f"sqlite:///{root / 'roster.db'}",
        "apps": [
            {
                "name": app,
                "connector": "scim",
                "base_url": f"{scim_root}/{app}/v2",
                "token_env": "ROSTER_TEST_TOKEN",
            }
            for app in apps
        ],
    }
    (root / "roster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with (root / "people.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(people(people_count, apps=";".join(apps)))
    env = server.client_env(
        root / "prefect",
        ROSTER_HOME=str(root),
        ROSTER_CONFIG=str(root / "roster.yaml"),
        ROSTER_TEST_TOKEN=TOKEN,
    )
    env.pop("ROSTER_DATABASE_URL", None)
    site = RosterSite(root=root, env=env, scim_root=scim_root, apps=apps)
    site.roster("directory", "import", "people.csv")
    if synced:
        site.roster("sync")
    return site


def serve_command(poll: float = 1.0) -> list[str]:
    """``python -m deployments.serve`` as ``make serve`` runs it (from the repository root)."""
    return [sys.executable, "-m", "deployments.serve", "--poll", str(poll)]
