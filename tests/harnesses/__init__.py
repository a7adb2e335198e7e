"""One harness per connector kind, for the behavioural suite (tests/test_connector_suite.py).

A harness knows how to reach a real server of its kind on 127.0.0.1, how to build a
Roster connector for it, and how to read the server's accounts *directly* (never through
the connector under test), so the suite can check on the server what the connector did.
A new connector is done when the suite passes with its harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from connectors.base import Connector, Value


class ConnectorHarness(Protocol):
    #: the kind, as ``connector:`` names it in roster.yaml
    kind: str
    #: the unique login attribute in the kind's flat namespace ("userName", "uid", ...)
    key: str
    #: an attribute the suite changes with update_account ("displayName", "cn", ...)
    updatable: str

    def connector(self, *, page_size: int = 2, dry_run: bool = False) -> Connector:
        """A connector with the right credentials; small pages so listings span several."""
        ...

    def bad_credentials(self) -> Connector:
        """A connector whose secret is wrong (the server refuses it)."""
        ...

    def attributes(self, i: int) -> dict[str, Value]:
        """A full attribute map for test account ``i``: unique key, active True."""
        ...

    def seed(self, attributes: Mapping[str, Value]) -> str:
        """Create an account directly on the server, bypassing Roster; its remote id."""
        ...

    def server_accounts(self) -> dict[str, dict[str, Any]]:
        """Every account on the server, by key, read directly: at least the key, the
        updatable attribute and ``active`` (None where the kind cannot deactivate)."""
        ...

    def app_config(self) -> dict[str, Any]:
        """The roster.yaml entry for this app (name "suite"), for the sync-level checks;
        the secret is named by token_env ROSTER_SUITE_SECRET (set by ``environment``)."""
        ...

    def environment(self) -> dict[str, str]:
        """Environment variables the app_config needs (its secret)."""
        ...
