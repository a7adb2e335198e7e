"""Groups inside groups, as a small graph read whole: for refusing a cycle and for naming
the chain through which a person has an app.

The SQL side (``queries.group_closure``) answers "who is in this group" for every group at
once; these functions answer "by which path", which needs the edges themselves. The
``group_groups`` table is one row per nesting, so reading it whole is cheap next to the
users, and a breadth-first search gives the shortest chain, stable across runs because
groups are visited in name order. Every search keeps a visited set, so a cycle that got
into the table anyway cannot make it loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from directory.models import Group, GroupGroup

#: how a chain of groups is written: the outer group first, ``Engineering > Platform``
CHAIN_SEPARATOR = " > "


@dataclass(frozen=True)
class Nesting:
    """Group names by id, and the nesting both ways (ids in group-name order)."""

    names: dict[int, str]
    children: dict[int, list[int]] = field(default_factory=dict)
    parents: dict[int, list[int]] = field(default_factory=dict)

    def named(self, ids: Iterable[int]) -> tuple[str, ...]:
        return tuple(self.names[i] for i in ids)

    def path_down(self, start: int, goal: int) -> list[int] | None:
        """The shortest chain ``start > ... > goal`` through member groups, None if
        ``goal`` is not nested in ``start`` (``[start]`` when they are the same group)."""
        before: dict[int, int | None] = {start: None}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            if current == goal:
                return _walk_back(before, goal)
            for child in self.children.get(current, []):
                if child not in before:
                    before[child] = current
                    queue.append(child)
        return None

    def chains_up(self, direct: Iterable[int]) -> dict[int, list[int]]:
        """For every group holding one of ``direct`` (itself included, at any depth), the
        shortest chain from that group down to one of ``direct``."""
        below: dict[int, int | None] = {}
        queue: deque[int] = deque()
        for group in sorted(set(direct), key=self.names.__getitem__):
            below[group] = None
            queue.append(group)
        while queue:
            current = queue.popleft()
            for parent in self.parents.get(current, []):
                if parent not in below:
                    below[parent] = current
                    queue.append(parent)
        return {group: _walk_back(below, group)[::-1] for group in below}


def _walk_back(links: dict[int, int | None], end: int) -> list[int]:
    """``end`` and the nodes it was reached from, back to the start: [start, ..., end]."""
    path = [end]
    while (previous := links[path[-1]]) is not None:
        path.append(previous)
    return path[::-1]


def read_nesting(conn: Connection) -> Nesting:
    """Every group's name and every nesting, in two queries."""
    names = {int(i): str(n) for i, n in conn.execute(sa.select(Group.id, Group.name))}
    nesting = Nesting(names)
    order = sorted(names, key=names.__getitem__)
    rank = {group: position for position, group in enumerate(order)}
    for parent, child in conn.execute(sa.select(GroupGroup.parent_id, GroupGroup.child_id)):
        nesting.children.setdefault(int(parent), []).append(int(child))
        nesting.parents.setdefault(int(child), []).append(int(parent))
    for adjacent in (*nesting.children.values(), *nesting.parents.values()):
        adjacent.sort(key=rank.__getitem__)
    return nesting


def chain_text(chain: Iterable[str]) -> str:
    return CHAIN_SEPARATOR.join(chain)
