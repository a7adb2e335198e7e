"""The SCIM harness: a fresh in-process scim2-server per test, read back over SCIM with
its own client (not Roster's connector)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.base import Connector, Value
from connectors.build import build_connector
from directory.config import ScimAppConfig
from tasks import session
from tests.scim_apps import TOKEN, InProcessScim

APP = "suite"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


class ScimHarness:
    kind = "scim"
    key = "userName"
    updatable = "displayName"

    def __init__(self) -> None:
        self.scim = InProcessScim()

    def app_config(self) -> dict[str, Any]:
        return {
            "name": APP,
            "connector": "scim",
            "base_url": self.scim.base_url(APP),
            "token_env": "ROSTER_SUITE_SECRET",
        }

    def environment(self) -> dict[str, str]:
        return {"ROSTER_SUITE_SECRET": TOKEN}

    def connector(self, *, page_size: int = 2, dry_run: bool = False) -> Connector:
        return self._build(TOKEN, page_size, dry_run)

    def bad_credentials(self) -> Connector:
        return self._build("not-the-token-4b1d", 2, False)

    def _build(self, token: str, page_size: int, dry_run: bool) -> Connector:
        app = ScimAppConfig.model_validate({**self.app_config(), "page_size": page_size})
        return build_connector(
            app, SecretStr(token), dry_run=dry_run, transport=self.scim.transport()
        )

    def attributes(self, i: int) -> dict[str, Value]:
        return {
            "userName": f"suite{i:03d}",
            "displayName": f"Suite User {i}",
            "name.givenName": f"Suite{i}",
            "name.familyName": "User",
            "active": True,
        }

    def seed(self, attributes: Mapping[str, Value]) -> str:
        body = {
            "schemas": [CORE],
            "userName": attributes["userName"],
            "displayName": attributes.get("displayName"),
            "active": attributes.get("active", True),
        }
        with self.scim.client(APP) as client:
            response = client.post("/Users", json=body)
            response.raise_for_status()
            return str(response.json()["id"])

    def server_accounts(self) -> dict[str, dict[str, Any]]:
        return {
            u["userName"]: {
                "userName": u["userName"],
                "displayName": u.get("displayName"),
                "active": u.get("active"),
            }
            for u in self.scim.users(APP)
        }


@contextlib.contextmanager
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScimHarness]:
    made = ScimHarness()
    session.TRANSPORTS[APP] = made.scim.transport()  # the sync flow's route to the app
    try:
        yield made
    finally:
        session.TRANSPORTS.pop(APP, None)
