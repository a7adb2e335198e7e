"""The REST kind's harness: RabbitMQ's management API, configured by the shipped
``examples/rest/rabbitmq.yaml`` (basic auth, no pagination, ``strip_roles``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.base import Connector, Value
from connectors.build import build_connector
from directory.config import RestAppConfig, parse_config
from tests.rabbitmq import RabbitUsers

SECRET_ENV = "ROSTER_SUITE_SECRET"


class RabbitMQHarness:
    """Satisfies tests.harnesses.ConnectorHarness. RabbitMQ cannot deactivate a user:
    deprovisioning strips its tags, so ``active`` on the server is "has tags"."""

    kind = "rest"
    key = "userName"
    updatable = "tags"
    #: RabbitMQ answers GET /api/users in one piece (it has no paging for users)
    paginates = False

    def __init__(self, users: RabbitUsers) -> None:
        self.users = users

    def _app(self, name: str = "suite") -> RestAppConfig:
        app = parse_config({"apps": [self.app_config() | {"name": name}]}).apps[0]
        assert isinstance(app, RestAppConfig)
        return app

    def connector(self, *, page_size: int = 2, dry_run: bool = False) -> Connector:
        # RabbitMQ lists users in one answer: page_size has nothing to split
        app = self._app().model_copy(update={"page_size": page_size})
        return build_connector(app, SecretStr(self.users.admin.password), dry_run=dry_run)

    def bad_credentials(self) -> Connector:
        return build_connector(self._app(), SecretStr("not-the-password-1"), dry_run=False)

    def attributes(self, i: int) -> dict[str, Value]:
        return {"userName": f"suite{i:03d}", "tags": "management", "active": True}

    def seed(self, attributes: Mapping[str, Value]) -> str:
        tags = str(attributes.get("tags") or "")
        return self.users.put(str(attributes["userName"]), [t for t in tags.split(",") if t])

    def server_accounts(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "userName": name,
                "tags": ",".join(sorted(user["tags"])),
                "active": bool(user["tags"]),
            }
            for name, user in self.users.users().items()
        }

    def app_config(self) -> dict[str, Any]:
        return self.users.entry(name="suite", token_env=SECRET_ENV)

    def environment(self) -> dict[str, str]:
        return {SECRET_ENV: self.users.admin.password}


@contextlib.contextmanager
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RabbitMQHarness]:
    """Needs the session's RabbitMQ administrator (skips, or fails under
    ROSTER_REQUIRE_RABBITMQ, without a broker); this test's users go afterwards."""
    users = RabbitUsers(request.getfixturevalue("rabbitmq_admin"))
    try:
        yield RabbitMQHarness(users)
    finally:
        users.clean()
