"""Nested groups benchmark: what following ``group_groups`` costs the reads a sync makes.

One directory of N users in leaf groups (each user in one, a fifth of them in a second),
written twice with the same effective assignments:

- **flat**: every leaf group is assigned its apps itself, no nesting;
- **nested**: leaves sit inside middle groups inside top groups (three levels), and only
  the top groups are assigned apps.

Timed in the same process, best of ``--repeat`` interleaved rounds:

- baseline: the query ``effective_apps`` was before nesting (group_members ⋈ group_apps,
  union the direct assignments), on the flat directory, for every app;
- ``Store.read_assigned`` (the recursive CTE) on the flat and on the nested directory;
- ``Store.read_group_members`` (every group's effective members) on the nested directory.

The ratios to the baseline are what to compare between runs on a shared machine. Every
variant is checked to give the same users per app.

    python -m bench.nested_groups [--users 100000] [--repeat 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import machine
from directory.config import DIRECTORY_FIELDS
from directory.models import Group, GroupApp, GroupGroup, GroupMember, User, UserApp
from directory.queries import batched
from directory.store import Store

LEAVES = 400
MIDDLES = 40
TOPS = 8
APPS = ("chat", "wiki", "crm", "hr")


def build(store: Store, users: int, *, nested: bool) -> None:
    """Users, groups and assignments; the same effective apps in both shapes."""
    blank = {column: None for column in DIRECTORY_FIELDS[1:]}
    people = (
        blank | {"id": f"u{i}", "user_name": f"user{i}", "email": f"user{i}@x", "active": True}
        for i in range(users)
    )
    names = [f"leaf{i}" for i in range(LEAVES)]
    names += [f"middle{i}" for i in range(MIDDLES)] + [f"top{i}" for i in range(TOPS)]
    with store.engine.begin() as conn:
        for batch in batched(people):
            conn.execute(sa.insert(User), batch)
        conn.execute(sa.insert(Group), [{"id": i + 1, "name": n} for i, n in enumerate(names)])
        members = [{"group_id": i % LEAVES + 1, "user_id": f"u{i}"} for i in range(users)]
        members += [
            {"group_id": (i * 7 + 3) % LEAVES + 1, "user_id": f"u{i}"}
            for i in range(0, users, 5)
            if (i * 7 + 3) % LEAVES != i % LEAVES
        ]
        for batch in batched(members):
            conn.execute(sa.insert(GroupMember), batch)
        conn.execute(sa.insert(UserApp), [{"user_id": f"u{i}", "app": "chat"} for i in range(50)])
        conn.execute(sa.insert(GroupApp), _group_apps(nested))
        if nested:
            conn.execute(sa.insert(GroupGroup), _nesting())


def _middle(leaf: int) -> int:
    return LEAVES + leaf % MIDDLES + 1


def _top(middle_id: int) -> int:
    return LEAVES + MIDDLES + (middle_id - LEAVES - 1) % TOPS + 1


def _top_apps(top_id: int) -> list[str]:
    index = top_id - LEAVES - MIDDLES - 1
    return [APPS[index % len(APPS)], APPS[(index + 1) % len(APPS)]]


def _group_apps(nested: bool) -> list[dict[str, Any]]:
    if nested:
        tops = range(LEAVES + MIDDLES + 1, LEAVES + MIDDLES + TOPS + 1)
        return [{"group_id": t, "app": a} for t in tops for a in _top_apps(t)]
    leaves = range(1, LEAVES + 1)
    return [
        {"group_id": leaf, "app": a} for leaf in leaves for a in _top_apps(_top(_middle(leaf - 1)))
    ]


def _nesting() -> list[dict[str, int]]:
    rows = [{"parent_id": _middle(leaf), "child_id": leaf + 1} for leaf in range(LEAVES)]
    middles = range(LEAVES + 1, LEAVES + MIDDLES + 1)
    return rows + [{"parent_id": _top(m), "child_id": m} for m in middles]


def flat_assigned(store: Store, app: str) -> set[str]:
    """The query before nesting: direct assignments and one level of group."""
    direct = sa.select(UserApp.user_id, UserApp.app)
    via_group = sa.select(GroupMember.user_id, GroupApp.app).join(
        GroupApp, GroupApp.group_id == GroupMember.group_id
    )
    assigned = sa.union(direct, via_group).subquery()
    with store.engine.connect() as conn:
        return set(conn.scalars(sa.select(assigned.c.user_id).where(assigned.c.app == app)))


def best_of(rounds: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best wall time of each function, rounds interleaved so load hits all alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", help="two empty schemas' URLs: FLAT,NESTED")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            flat_url, nested_url = args.database_url.split(",")
        else:
            flat_url = f"sqlite:///{Path(tmp) / 'flat.db'}"
            nested_url = f"sqlite:///{Path(tmp) / 'nested.db'}"
        with Store(flat_url) as flat, Store(nested_url) as nested:
            build(flat, args.users, nested=False)
            build(nested, args.users, nested=True)
            for app in APPS:
                expected = flat_assigned(flat, app)
                assert flat.read_assigned(app) == expected == nested.read_assigned(app), app
            members = nested.read_group_members()
            print(machine())
            print(f"{args.users} users, {flat.engine.dialect.name}, {len(members)} memberships")
            timings = best_of(
                args.repeat,
                {
                    "baseline: flat query, flat directory": lambda: [
                        flat_assigned(flat, a) for a in APPS
                    ],
                    "read_assigned, flat directory": lambda: [flat.read_assigned(a) for a in APPS],
                    "read_assigned, nested directory": lambda: [
                        nested.read_assigned(a) for a in APPS
                    ],
                    "read_group_members, nested": nested.read_group_members,
                },
            )
    baseline = timings["baseline: flat query, flat directory"]
    for name, seconds in timings.items():
        print(f"{name:40s} {seconds:8.3f} s  ratio {seconds / baseline:5.2f}")


if __name__ == "__main__":
    main()
