"""What the chaos and crash-safety suites share: a directory that changes between runs, and
a census of what the SCIM server really holds, judged against the directory.

The census reads the server directly (never through the fault proxy, never through
Roster's connector) and compares through Roster's own mapping (``build_desired``), so it
checks Roster's promises, not its report of them.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import pandas as pd

from connectors.scim.paths import flatten
from directory.config import REFERENCE_FIELDS, WORK_EMAIL, AppConfig, Constant
from directory.store import Store
from tasks.desired import build_desired
from tests.scim_apps import TOKEN

APP_CHOICES = ("a;b", "a;b", "a;b", "a;b", "a", "b")
TITLES = ("Engineer", "Senior Engineer", "Manager", "Analyst", "Designer", "Director")
DEPARTMENTS = ("Engineering", "Sales", "Finance", "Support", "Legal", "Research")


@dataclass
class ChangeCounts:
    joiners: int = 0
    leavers: int = 0
    rehires: int = 0
    attribute_changes: int = 0
    reassignments: int = 0


@dataclass
class Directory:
    """The people of the test's HR system, as CSV rows, changed by a seeded ``Random``.

    Managers form a tree (each person reports to ``(i - 1) // 10``), so creates span
    several reference depths. A changed manager may leave, which empties their reports'
    manager reference: that too is an attribute Roster must converge.
    """

    rng: random.Random
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_index: int = 0

    @classmethod
    def initial(cls, size: int, seed: int) -> Directory:
        directory = cls(random.Random(seed))
        for _ in range(size):
            directory.join()
        return directory

    def rows(self) -> list[dict[str, Any]]:
        return list(self.people.values())

    def join(self) -> dict[str, Any]:
        i = self.next_index
        self.next_index += 1
        manager = f"user{(i - 1) // 10:05d}" if i else ""
        person = {
            "user_name": f"user{i:05d}",
            "email": f"user{i:05d}@example.com",
            "given_name": f"Given{i}",
            "family_name": f"Family{i}",
            "display_name": f"Given{i} Family{i}",
            "department": self.rng.choice(DEPARTMENTS),
            "title": self.rng.choice(TITLES),
            "employee_number": f"E{i:06d}",
            "manager": manager if manager in self.people else "",
            "active": "true",
            "apps": self.rng.choice(APP_CHOICES),
        }
        self.people[person["user_name"]] = person
        return person

    def evolve(
        self, joiners: int, leavers: int, changes: int, reassign: int, rehires: int
    ) -> ChangeCounts:
        """Joiners, leavers (deactivated), rehires, attribute changes and app reassignments."""
        counts = ChangeCounts()
        for _ in range(joiners):
            self.join()
            counts.joiners += 1
        for person in self._pick(active=True, n=leavers):
            person["active"] = "false"
            counts.leavers += 1
        for person in self._pick(active=False, n=rehires):
            person["active"] = "true"
            counts.rehires += 1
        for person in self._pick(active=True, n=changes):
            self._change_attribute(person)
            counts.attribute_changes += 1
        for person in self._pick(active=True, n=reassign):
            person["apps"] = self.rng.choice([a for a in APP_CHOICES if a != person["apps"]])
            counts.reassignments += 1
        return counts

    def _pick(self, *, active: bool, n: int) -> list[dict[str, Any]]:
        pool = [p for p in self.people.values() if (p["active"] == "true") is active]
        return self.rng.sample(pool, min(n, len(pool)))

    def _change_attribute(self, person: dict[str, Any]) -> None:
        what = self.rng.choice(["title", "department", "name", "email", "manager"])
        n = self.rng.randrange(10_000)
        if what == "title":
            person["title"] = self.rng.choice([t for t in TITLES if t != person["title"]])
        elif what == "department":
            person["department"] = self.rng.choice(
                [d for d in DEPARTMENTS if d != person["department"]]
            )
        elif what == "name":
            person["family_name"] = f"Renamed{n}"
            person["display_name"] = f"{person['given_name']} Renamed{n}"
        elif what == "email":
            person["email"] = f"{person['user_name']}.{n}@example.org"
        else:
            others = [p["user_name"] for p in self._pick(active=True, n=5)]
            person["manager"] = next((o for o in others if o != person["user_name"]), "")


@dataclass
class Census:
    """One app's accounts on the server, judged against the directory. Every field but
    ``accounts`` and ``in_scope`` counts a broken promise and must be 0."""

    accounts: int = 0
    in_scope: int = 0
    #: userNames held by more than one account (extra accounts counted)
    duplicates: int = 0
    #: active and assigned in the directory, no account at all (never made, or deleted)
    missing: int = 0
    #: active and assigned in the directory, but the account is inactive
    wrongly_deactivated: int = 0
    #: in-scope users whose account differs in some mapped attribute
    not_converged: int = 0
    #: left or unassigned in the directory, but their account is still active
    leavers_still_active: int = 0
    #: in-scope users whose link points at another account than the one with their userName
    wrong_links: int = 0
    examples: list[str] = field(default_factory=list)

    def failures(self) -> dict[str, int]:
        counts = asdict(self)
        return {k: v for k, v in counts.items() if k not in ("accounts", "in_scope", "examples")}


def server_users(scim_root: str, app: str) -> list[dict[str, Any]]:
    """Every account of ``app``, read straight from the server, all pages."""
    found: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"{scim_root}/{app}/v2", headers=headers, timeout=60) as client:
        start = 1
        while True:
            response = client.get("/Users", params={"startIndex": start, "count": 1000})
            response.raise_for_status()
            body = response.json()
            page = body.get("Resources", [])
            found.extend(page)
            start += len(page)
            if not page or start > body["totalResults"]:
                return found


def take_census(store: Store, app: AppConfig, accounts: list[dict[str, Any]]) -> Census:
    """Judge ``accounts`` (as the server returned them) against the directory in ``store``."""
    census = Census(accounts=len(accounts))
    by_name: dict[str, list[dict[str, Any]]] = {}
    for account in accounts:
        by_name.setdefault(str(account["userName"]).lower(), []).append(account)
    census.duplicates = sum(len(same) - 1 for same in by_name.values())
    users = store.read_users()
    desired = build_desired(users, store.read_assigned(app.name), app.effective_mapping)
    manager_names = dict(zip(users["user_id"], users["user_name"].str.lower(), strict=True))
    links = store.read_links(app.name)
    linked = dict(zip(links["user_id"], links["remote_id"], strict=True))
    paths = list(app.effective_mapping)
    for row in desired.to_dict(orient="records"):
        mine = by_name.get(str(row["user_name"]).lower(), [])
        if not row["in_scope"]:
            if any(a.get("active") for a in mine):
                census.leavers_still_active += 1
                census.examples.append(f"{row['user_name']}: left, still active")
            continue
        census.in_scope += 1
        if not mine:
            census.missing += 1
            census.examples.append(f"{row['user_name']}: missing")
            continue
        account = mine[0]
        if not account.get("active"):
            census.wrongly_deactivated += 1
            census.examples.append(f"{row['user_name']}: inactive")
        if linked.get(row["user_id"]) != account["id"]:
            census.wrong_links += 1
            census.examples.append(f"{row['user_name']}: link {linked.get(row['user_id'])}")
        differs = _differences(row, account, paths, app, by_name, manager_names)
        if differs:
            census.not_converged += 1
            census.examples.append(f"{row['user_name']}: {differs}")
    census.examples = census.examples[:20]
    return census


def _differences(
    row: dict[str, Any],
    account: dict[str, Any],
    paths: list[str],
    app: AppConfig,
    by_name: dict[str, list[dict[str, Any]]],
    manager_names: dict[str, str],
) -> dict[str, tuple[Any, Any]]:
    """Mapped attributes whose server value differs from the directory's, compared as
    trimmed text (None as ""), userName and work email without case (RFC 7643 §4.1.1)."""
    actual = flatten(account, paths)
    differs = {}
    for path in paths:
        want = row[path]
        source = app.effective_mapping[path]
        if not isinstance(source, Constant) and source in REFERENCE_FIELDS and want is not None:
            manager = by_name.get(manager_names.get(want, ""), [])
            want = manager[0]["id"] if manager else f"<no account for {want}>"
        folded = path in ("userName", WORK_EMAIL)
        if _text(want, folded) != _text(actual[path], folded):
            differs[path] = (actual[path], want)
    return differs


def _text(value: Any, folded: bool) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value).strip()
    return text.lower() if folded else text


def total(censuses: dict[str, Census]) -> dict[str, int]:
    """The broken-promise counts summed over apps."""
    summed: Counter[str] = Counter()
    for census in censuses.values():
        summed.update(census.failures())
    return {key: summed[key] for key in Census().failures()}


REPORT_ENV = "ROSTER_CHAOS_REPORT"


def write_report(section: str, figures: dict[str, Any]) -> None:
    """Put ``figures`` under ``section`` of the JSON file named by ROSTER_CHAOS_REPORT (if
    set), keeping the other suites' sections: one file for docs/reliability.md."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        document = {}
    document[section] = figures
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, default=str)
