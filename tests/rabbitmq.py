"""RabbitMQ's management HTTP API, the real server on this machine, for the REST connector's
tests: a dedicated administrator made with rabbitmqctl for the session, and direct access
to the server's users (never through the connector under test).

The broker is found at ``ROSTER_RABBITMQ_URL`` (default http://127.0.0.1:15672). Without
it (or without rabbitmqctl) the tests skip, or fail when ``ROSTER_REQUIRE_RABBITMQ`` is
set (``.ci/run`` sets it and enables the management plugin first).
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

URL = os.environ.get("ROSTER_RABBITMQ_URL", "http://127.0.0.1:15672")
EXAMPLE = Path(__file__).parent.parent / "examples" / "rest" / "rabbitmq.yaml"


@dataclass(frozen=True)
class RabbitAdmin:
    url: str
    username: str
    password: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(self.username, self.password), timeout=10)


def unavailable(reason: str) -> None:
    """Skip, or fail when the run requires RabbitMQ."""
    if os.environ.get("ROSTER_REQUIRE_RABBITMQ"):
        pytest.fail(f"ROSTER_REQUIRE_RABBITMQ is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def _rabbitmqctl(*args: str, stdin: str | None = None) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def rabbitmq_admin() -> Iterator[RabbitAdmin]:
    """An administrator of the management API for this session, removed afterwards."""
    try:
        status = httpx.get(f"{URL}/api/overview", timeout=5).status_code
    except httpx.HTTPError as exc:
        unavailable(
            f"RabbitMQ's management API is not reachable at {URL} ({type(exc).__name__});"
            " run `rabbitmq-plugins enable rabbitmq_management`"
        )
    if status != 401:
        unavailable(f"{URL}/api/overview answered {status}, not RabbitMQ's 401")
    if shutil.which("rabbitmqctl") is None:
        unavailable("rabbitmqctl is not installed (the tests make their admin user with it)")
    admin = RabbitAdmin(URL, f"rosteradmin-{secrets.token_hex(3)}", secrets.token_urlsafe(18))
    _rabbitmqctl("add_user", admin.username, stdin=admin.password + "\n")
    try:
        _rabbitmqctl("set_user_tags", admin.username, "administrator")
        yield admin
    finally:
        _rabbitmqctl("delete_user", admin.username)


class RabbitUsers:
    """One test's users: their names start with ``prefix``, so tests (and runs) that share
    the broker never see each other's; removed at the end."""

    def __init__(self, admin: RabbitAdmin) -> None:
        self.admin = admin
        self.prefix = f"roster-{secrets.token_hex(3)}-"
        self._client = admin.client()

    def users(self) -> dict[str, dict[str, Any]]:
        """This test's users, by name without the prefix, as RabbitMQ holds them."""
        response = self._client.get("/api/users")
        response.raise_for_status()
        return {
            u["name"][len(self.prefix) :]: u
            for u in response.json()
            if u["name"].startswith(self.prefix)
        }

    def put(self, name: str, tags: list[str], password: str | None = None) -> str:
        body: dict[str, Any] = {"tags": tags}
        body |= {"password": password} if password else {"password_hash": ""}
        response = self._client.put(f"/api/users/{self.prefix}{name}", json=body)
        response.raise_for_status()
        return self.prefix + name

    def all_names(self) -> set[str]:
        response = self._client.get("/api/users")
        response.raise_for_status()
        return {u["name"] for u in response.json()}

    def clean(self) -> None:
        for name in self.users():
            self._client.delete(f"/api/users/{self.prefix}{name}")
        self._client.close()

    def entry(self, name: str = "rabbitmq", token_env: str = "ROSTER_RABBITMQ_SECRET") -> dict:
        """The shipped example's entry, pointed at this broker, admin and prefix."""
        entry = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text())["apps"][0])
        entry |= {"name": name, "base_url": self.admin.url, "token_env": token_env}
        entry["auth"]["username"] = self.admin.username
        entry["fields"]["userName"]["prefix"] = self.prefix
        return dict(entry)


@pytest.fixture
def rabbitmq(rabbitmq_admin: RabbitAdmin) -> Iterator[RabbitUsers]:
    users = RabbitUsers(rabbitmq_admin)
    try:
        yield users
    finally:
        users.clean()
