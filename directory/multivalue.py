"""Sets of values in one flat attribute: how a multi-valued target (SCIM ``roles.value``,
``entitlements.value``) travels through plans, hashes and reports that compare scalars.

A set is written as the JSON list of its values, sorted and without duplicates, so two
equal sets are the same text and a drift report shows ``["admin", "dev"]``. The empty set
is None, like a missing attribute: an app that drops an empty ``roles`` is in sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterable


def encode_set(values: Iterable[str]) -> str | None:
    """The canonical text of a set of values; None when it is empty."""
    unique = sorted({v for v in values if isinstance(v, str) and v})
    return json.dumps(unique, ensure_ascii=False) if unique else None


def decode_set(text: object) -> list[str]:
    """The values of ``encode_set``'s text (sorted); a plain string is a set of one."""
    if text is None or text == "":
        return []
    if isinstance(text, str) and text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError:
            return [text]
        if isinstance(values, list):
            return sorted({str(v) for v in values if v not in (None, "")})
    return [str(text)]
