"""Synapse, the Matrix homeserver (PyPI ``matrix-synapse``), as a real REST app with
cursor pagination and real deactivation: one server per test session, on a free port of
127.0.0.1, with SQLite in a temporary folder and an administrator registered through the
shared-secret API.

Synapse lives in its own virtual environment (``make synapse`` makes ``.venv-synapse``),
not Roster's: its pins are its own. ``ROSTER_SYNAPSE_PYTHON`` names another interpreter.
Without one the tests skip, or fail when ``ROSTER_REQUIRE_SYNAPSE`` is set (``.ci/run``).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "rest" / "synapse.yaml"
SERVER_NAME = "localhost"
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Synapse:
    url: str
    admin_token: str
    log: Path

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def _python() -> Path | None:
    named = os.environ.get("ROSTER_SYNAPSE_PYTHON")
    candidate = Path(named) if named else ROOT / ".venv-synapse" / "bin" / "python"
    return candidate if candidate.exists() else None


def _unavailable(reason: str) -> None:
    if os.environ.get("ROSTER_REQUIRE_SYNAPSE"):
        pytest.fail(f"ROSTER_REQUIRE_SYNAPSE is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(home: Path, port: int, shared_secret: str) -> dict[str, Any]:
    return {
        "server_name": SERVER_NAME,
        "pid_file": str(home / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(home / "homeserver.db")}},
        "media_store_path": str(home / "media"),
        "signing_key_path": str(home / "signing.key"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "enable_metrics": False,
        # A fresh database finishes its schema updates in seconds instead of minutes;
        # until then, re-activating a user fails on SQLite (a missing unique index).
        "background_updates": {
            "sleep_enabled": False,
            "min_batch_size": 1000,
            "default_batch_size": 1000,
        },
    }


def _register_admin(url: str, shared_secret: str) -> str:
    """Synapse's shared-secret registration (HMAC-SHA1 over nonce, user, password, role)."""
    nonce = httpx.get(f"{url}/_synapse/admin/v1/register", timeout=10).json()["nonce"]
    user, password = "rosteradmin", secrets.token_urlsafe(16)
    message = b"\x00".join(part.encode() for part in (nonce, user, password, "admin"))
    mac = hmac.new(shared_secret.encode(), message, hashlib.sha1).hexdigest()
    body = {"nonce": nonce, "username": user, "password": password, "admin": True, "mac": mac}
    response = httpx.post(f"{url}/_synapse/admin/v1/register", json=body, timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


def _wait(check: Any, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    pytest.fail(f"Synapse: {what} took over {START_TIMEOUT:.0f}s; its log ends:\n{tail}")


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    python = _python()
    if python is None:
        _unavailable("Synapse is not installed: `make synapse` (or set ROSTER_SYNAPSE_PYTHON)")
        raise AssertionError  # unreachable: skip and fail raise
    home = tmp_path_factory.mktemp("synapse")
    port, shared_secret = _free_port(), secrets.token_hex(16)
    (home / "homeserver.yaml").write_text(yaml.safe_dump(_config(home, port, shared_secret)))
    subprocess.run(
        [str(python), "-m", "synapse.app.homeserver", "-c", str(home / "homeserver.yaml"),
         "--generate-keys"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    log = home / "out.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "-c", str(home / "homeserver.yaml")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, "start", log)
        token = _register_admin(url, shared_secret)
        status = f"{url}/_synapse/admin/v1/background_updates/status"
        headers = {"Authorization": f"Bearer {token}"}
        _wait(
            lambda: httpx.get(status, headers=headers, timeout=5).json()["current_updates"] == {},
            "schema updates",
            log,
        )
        yield Synapse(url, token, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class MatrixUsers:
    """One test's users: localparts start with a prefix of its own, so tests that share
    the server never see each other's accounts (nor the administrator)."""

    def __init__(self, server: Synapse) -> None:
        self.server = server
        self.prefix = f"rt{secrets.token_hex(3)}."
        self._client = server.client()

    def user_id(self, name: str) -> str:
        return f"@{self.prefix}{name}:{SERVER_NAME}"

    def users(self) -> dict[str, dict[str, Any]]:
        """This test's users by localpart without the prefix, deactivated ones too."""
        found: dict[str, dict[str, Any]] = {}
        params: dict[str, str] = {"deactivated": "true", "limit": "100"}
        while True:
            body = self._client.get("/_synapse/admin/v2/users", params=params).json()
            for user in body["users"]:
                local = user["name"][1:].split(":", 1)[0]
                if local.startswith(self.prefix):
                    found[local[len(self.prefix) :]] = user
            if not body.get("next_token"):
                return found
            params["from"] = str(body["next_token"])

    def put(self, name: str, **body: Any) -> str:
        response = self._client.put(f"/_synapse/admin/v2/users/{self.user_id(name)}", json=body)
        response.raise_for_status()
        return self.user_id(name)

    def entry(self, name: str = "matrix", token_env: str = "ROSTER_SYNAPSE_SECRET") -> dict:
        """The shipped example's entry, pointed at this server and prefix."""
        entry = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text())["apps"][0])
        entry |= {"name": name, "base_url": self.server.url, "token_env": token_env}
        entry["fields"]["userName"] |= {"prefix": f"@{self.prefix}", "suffix": f":{SERVER_NAME}"}
        return dict(entry)

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def matrix(synapse: Synapse) -> Iterator[MatrixUsers]:
    users = MatrixUsers(synapse)
    yield users
    users.close()
