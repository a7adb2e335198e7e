"""settle_memory: garbage from before a sync is collected, what survives is frozen."""

from __future__ import annotations

import gc
import weakref

from tasks.session import settle_memory


class Node:
    loop: Node


def test_cycles_are_collected_before_the_rest_is_frozen() -> None:
    node = Node()
    node.loop = node  # a reference cycle: only the collector frees it
    gone = weakref.ref(node)
    kept = Node()
    del node
    try:
        settle_memory()
        assert gone() is None
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())  # frozen: out of the collector's sight
    finally:
        gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())
