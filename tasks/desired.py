"""What each app should hold: directory users turned into target attributes, pure.

``build_desired`` is the directory half of a plan's input. It reads no database and no
clock: the store's frames come in, one frame keyed by directory user comes out.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

import pandas as pd

from directory.config import REFERENCE_FIELDS, AppConfig, Constant

DESIRED_KEYS = ("user_id", "user_name", "in_scope")


def build_desired(
    users: pd.DataFrame,
    assigned: Set[str],
    mapping: Mapping[str, str | Constant],
) -> pd.DataFrame:
    """One row per directory user: ``user_id, user_name, in_scope`` and one column per target.

    A user is in scope when active and assigned (directly or through a group). Reference
    fields (``manager``) hold the referenced user's *directory id*, and only when that user
    is in scope too: an account cannot point at a manager who has no account in the app.
    The apply layer turns the id into the manager's remote id.
    """
    in_scope = users["active"].astype(bool) & users["user_id"].isin(list(assigned))
    frame = pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy(),
            "user_name": users["user_name"].to_numpy(),
            "in_scope": in_scope.to_numpy(),
        }
    )
    scoped_ids = _scoped_ids_by_user_name(users, in_scope)
    for target, source in mapping.items():
        if isinstance(source, Constant):
            frame[target] = pd.Series([source.constant] * len(users), dtype=object)
        elif source in REFERENCE_FIELDS:
            frame[target] = _resolve_reference(users[source], scoped_ids)
        else:
            frame[target] = _as_object(users[source])
    return frame


def _scoped_ids_by_user_name(users: pd.DataFrame, in_scope: pd.Series) -> pd.Series:
    scoped = users.loc[in_scope.to_numpy(), ["user_name", "user_id"]]
    return pd.Series(scoped["user_id"].to_numpy(), index=scoped["user_name"].str.lower().to_numpy())


def _resolve_reference(user_names: pd.Series, scoped_ids: pd.Series) -> pd.Series:
    keys = user_names.astype(object).where(user_names.notna(), None)
    lowered = pd.Series([k.lower() if isinstance(k, str) else None for k in keys], dtype=object)
    resolved = lowered.map(scoped_ids)
    return resolved.astype(object).where(resolved.notna(), None).reset_index(drop=True)


def _as_object(column: pd.Series) -> pd.Series:
    """Plain Python values with None for missing, so frames compare the same on any backend."""
    values = column.astype(object)
    return values.where(values.notna(), None).reset_index(drop=True)


def desired_attributes(row: Mapping[str, object], targets: list[str]) -> dict[str, object]:
    return {target: row[target] for target in targets}


def targets_of(app: AppConfig) -> list[str]:
    return list(app.effective_mapping)
