"""A whole Roster installation for flow tests: a store, a config file, real SCIM apps
(in-process), and apps of other kinds whose settings name their own servers."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from directory.config import DIRECTORY_FIELDS, Safety
from directory.importer import import_csv
from directory.store import Store
from tasks import session
from tests.scim_apps import InProcessScim

#: the directory CSV's columns: every directory field but the id, and the apps
FIELDS = [f for f in DIRECTORY_FIELDS if f != "user_id"] + ["apps"]


@dataclass
class Installation:
    root: Path
    scim: InProcessScim
    apps: list[str]
    store: Store
    app_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: whole roster.yaml entries of apps of other kinds (REST, ...), reached over their
    #: own sockets rather than the in-process SCIM server
    extra_apps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config_path(self) -> str:
        return str(self.root / "roster.yaml")

    def write_config(self, **overrides: Any) -> None:
        apps = []
        for name in self.apps:
            settings = self.app_settings.get(name, {})
            if settings.get("connector", "scim") != "scim":  # its settings say it all
                apps.append({"name": name, **settings})
                continue
            entry = {
                "name": name,
                "connector": "scim",
                "base_url": self.scim.base_url(name),
                "token_env": "ROSTER_TEST_TOKEN",
                **settings,
            }
            apps.append(entry)
        apps.extend(self.extra_apps)
        document = {
            "database_url": str(self.store.engine.url.render_as_string(False)),
            "apps": apps,
            **overrides,
        }
        (self.root / "roster.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")

    def import_people(self, people: list[dict[str, Any]], *, full: bool = False) -> None:
        path = self.root / "people.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(people)
        import_csv(self.store, path, full=full, safety=Safety(), force=True)

    def accounts(self, app: str) -> dict[str, dict]:
        """The server's accounts for an app, by userName."""
        return {u["userName"]: u for u in self.scim.users(app)}


def person(
    i: int,
    *,
    apps: str = "chat;wiki",
    manager: str = "",
    active: bool = True,
    department: str = "Engineering",
    title: str = "Engineer",
) -> dict[str, Any]:
    return {
        "user_name": f"user{i:04d}",
        "email": f"user{i:04d}@example.com",
        "given_name": f"Given{i}",
        "family_name": f"Family{i}",
        "display_name": f"Given{i} Family{i}",
        "department": department,
        "title": title,
        "employee_number": f"E{i:05d}",
        "manager": manager,
        "active": str(active).lower(),
        "apps": apps,
    }


def people(n: int, **kwargs: Any) -> list[dict[str, Any]]:
    """n people; everyone after the first reports to user0000."""
    return [person(i, manager="" if i == 0 else "user0000", **kwargs) for i in range(n)]


def route_to(scim: InProcessScim, apps: list[str]) -> None:
    for app in apps:
        session.TRANSPORTS[app] = scim.transport()
