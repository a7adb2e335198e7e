"""Attribute differences between what the directory wants and what the app holds, and
the hash stored on a link of what was last written. Pure pandas/numpy.

Values compare as trimmed text (None equal to ""), case-folded where the attribute is
case-insensitive; exact equality settles most rows before any text is normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tasks.planrules import PlanRules


def diff_attributes(
    desired: pd.DataFrame, actual: pd.DataFrame, rules: PlanRules
) -> list[dict[str, list[object]] | None]:
    """Per row, ``{path: [old, new]}`` for each target that differs, or None when equal.

    Values compare as trimmed text, with None equal to "", and case-folded where the
    attribute is case-insensitive; the returned old/new keep the original values.
    Create-only and ``ignore``-policy targets are not compared.
    """
    n = len(desired)
    result: list[dict[str, list[object]] | None] = [None] * n
    for target in rules.compared:
        new = desired[target].to_numpy(dtype=object)
        old = actual[target].to_numpy(dtype=object)
        folded = target in rules.case_insensitive
        # Exact equality settles most rows cheaply; only the rest pay for normalising.
        # (numpy's object ``==`` treats identical objects as equal, NaN included: they
        # would normalise equal anyway.)
        candidates = np.flatnonzero(~np.equal(new, old))
        differs = _text(new[candidates], folded) != _text(old[candidates], folded)
        for i in candidates[differs]:
            entry = result[i]
            if entry is None:
                entry = result[i] = {}
            entry[target] = [plain_value(old[i]), plain_value(new[i])]
    return result


def split_changes(
    changes: list[dict[str, list[object]] | None], reported: frozenset[str]
) -> tuple[list[dict[str, list[object]] | None], list[dict[str, list[object]] | None]]:
    """``diff_attributes``' rows split into what is written and what is only reported
    (``report``-policy attributes); None where a side has nothing."""
    if not reported:
        return changes, [None] * len(changes)
    written: list[dict[str, list[object]] | None] = []
    shown: list[dict[str, list[object]] | None] = []
    for change in changes:
        if change is None:
            written.append(None)
            shown.append(None)
            continue
        write = {k: v for k, v in change.items() if k not in reported}
        show = {k: v for k, v in change.items() if k in reported}
        written.append(write or None)
        shown.append(show or None)
    return written, shown


def _text(values: np.ndarray, folded: bool) -> np.ndarray:
    text = pd.Series(values, dtype=object).astype("string").fillna("").str.strip()
    if folded:
        text = text.str.lower()
    return text.to_numpy(dtype=object)


def plain_value(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def attribute_hash(desired: pd.DataFrame, targets: Sequence[str]) -> pd.Series:
    """A stable 64-bit hash of each row's desired attributes, as hex; vectorised, so it
    costs nothing at a million rows. Stored on the link after a successful write."""
    if len(desired) == 0:
        return pd.Series([], dtype=object)
    text = desired[list(targets)].astype("string").fillna("\x00")
    # categorize=False gives the same hashes when nothing is missing (fillna above) and
    # skips factorising each column first, which costs more than it saves here.
    hashed = pd.util.hash_pandas_object(text, index=False, categorize=False).to_numpy()
    return pd.Series([f"{h:016x}" for h in hashed], index=desired.index, dtype=object)
