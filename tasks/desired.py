"""What each app should hold: directory users turned into target attributes, pure.

``build_desired`` is the directory half of a plan's input. It reads no database and no
clock: the store's frames come in, one frame keyed by directory user comes out.

A plain field (``userName: user_name``) and a constant are whole columns, as before. An
expression (``directory.expressions``) is compiled once per entry and evaluated per row,
reading only the fields it names. Expressions calling ``unique`` need the values already
taken in the app: ``taken_values`` builds them from the app's accounts and the links, and
``build_desired`` claims each in-scope user's value in turn, so within one run two users
never get the same value (the first in directory order keeps the plain one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from itertools import repeat

import pandas as pd

from directory.config import (
    REFERENCE_FIELDS,
    AppConfig,
    Constant,
    Expression,
    FieldSource,
    GroupsSource,
    Source,
    is_create_only,
    source_field,
)
from directory.expressions import Context, EvaluationError, Holders, TakenValues, Value
from directory.multivalue import encode_set
from directory.scoping import ScopeFilter
from tasks.scoping import evaluate_scoping

DESIRED_KEYS = ("user_id", "user_name", "in_scope")


def build_desired(
    users: pd.DataFrame,
    assigned: Set[str],
    mapping: Mapping[str, Source],
    taken: Mapping[str, Holders] | None = None,
    scoping: Sequence[ScopeFilter] = (),
    failures: dict[str, str] | None = None,
    groups_of: Mapping[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """One row per directory user: ``user_id, user_name, in_scope`` and one column per target.

    ``failures`` collects, per in-scope user, why an expression with no ``default`` could
    not be evaluated for them: the caller leaves those users out of the run rather than
    write a null in place of a value.

    A user is in scope when active, assigned (directly or through a group) and let in by
    the app's ``scoping`` filters (``tasks.scoping``; none: everyone). Reference
    fields (``manager``) hold the referenced user's *directory id*, and only when that user
    is in scope too: an account cannot point at a manager who has no account in the app.
    The apply layer turns the id into the manager's remote id. ``taken``: per target whose
    expression calls ``unique``, who holds which values (``taken_values``); it is updated
    with the values this build hands out. ``groups_of``: user_id -> the names of the
    groups they belong to (nested included), for ``{groups: ...}`` entries.
    """
    in_scope = users["active"].astype(bool) & users["user_id"].isin(list(assigned))
    if scoping:
        in_scope &= evaluate_scoping(users, scoping)["in_scope"].to_numpy(dtype=bool)
    frame = pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy(),
            "user_name": users["user_name"].to_numpy(),
            "in_scope": in_scope.to_numpy(),
        }
    )
    scoped_ids = _scoped_ids_by_user_name(users, in_scope)
    for target, source in mapping.items():
        if isinstance(source, str):
            frame[target] = _field_column(users, source, scoped_ids)
        elif isinstance(source, Constant):
            frame[target] = pd.Series([source.constant] * len(users), dtype=object)
        elif isinstance(source, FieldSource):
            column = _field_column(users, source.field, scoped_ids)
            frame[target] = _with_default(column, source.default)
        elif isinstance(source, GroupsSource):
            frame[target] = _groups_column(users, source, groups_of or {})
        else:
            holders = (taken or {}).get(target)
            frame[target] = evaluate_column(source, users, in_scope, holders, failures, target)
    return frame


def _field_column(users: pd.DataFrame, field: str, scoped_ids: pd.Series) -> pd.Series:
    if field in REFERENCE_FIELDS:
        return _resolve_reference(users[field], scoped_ids)
    return _as_object(users[field])


def _groups_column(
    users: pd.DataFrame, source: GroupsSource, groups_of: Mapping[str, Iterable[str]]
) -> pd.Series:
    values = [encode_set(source.values_for(groups_of.get(u, ()))) for u in users["user_id"]]
    return pd.Series(values, dtype=object)


def _with_default(column: pd.Series, default: str | bool | None) -> pd.Series:
    if default is None:
        return column
    empty = column.isna() | (column == "")
    return column.where(~empty, default)


def evaluate_column(
    source: Expression,
    users: pd.DataFrame,
    in_scope: pd.Series,
    taken: Holders | None = None,
    failures: dict[str, str] | None = None,
    target: str = "",
) -> pd.Series:
    """The expression's value per user, with the entry's default for null, "" or an
    expression that fails for that user (``roster mapping preview`` shows why). A failure
    with no default is recorded in ``failures`` for an in-scope user."""
    compiled = source.compiled
    names = sorted(compiled.fields)
    columns = [_as_object(users[name]).tolist() for name in names]
    rows = zip(*columns, strict=True) if columns else repeat((), len(users))
    values: list[Value] = []
    scope = zip(users["user_id"].tolist(), in_scope.tolist(), strict=True)
    for (user_id, scoped), row in zip(scope, rows, strict=False):  # repeat() has no len
        user = str(user_id)
        context = Context(user, taken.taken_for(user)) if taken is not None else Context(user)
        try:
            value = compiled.evaluate(dict(zip(names, row, strict=True)), context)
        except EvaluationError as exc:
            value = None
            if failures is not None and scoped and source.default is None:
                failures.setdefault(user, f"mapping {target}: {exc}")
        if value is None or value == "":
            value = source.default
        if taken is not None and scoped and isinstance(value, str):
            taken.hold(value, user)
        values.append(value)
    return pd.Series(values, dtype=object)


def unique_targets(mapping: Mapping[str, Source]) -> list[str]:
    """Targets whose expression calls ``unique``: they need ``taken_values``."""
    return [
        target
        for target, source in mapping.items()
        if isinstance(source, Expression) and source.compiled.uses_unique
    ]


def taken_values(
    accounts: pd.DataFrame,
    links: pd.DataFrame,
    targets: Iterable[str],
    owner_keys: Iterable[str] = (),
) -> dict[str, Holders]:
    """Per target, the values the app's accounts hold and whose they are: the linked user,
    else the directory id in an owner key (``externalId``: an account Roster created but
    never linked), else nobody's (None: taken for everyone). An unlinked account that is
    really this person's is taken too: a ``unique`` attribute is best ``create_only``."""
    holders = dict(zip(links["remote_id"], links["user_id"], strict=True))
    owner_columns = [accounts[key].tolist() for key in owner_keys if key in accounts.columns]
    owners = [
        holders.get(remote_id) or next((o for o in found if isinstance(o, str) and o), None)
        for remote_id, *found in zip(accounts["remote_id"], *owner_columns, strict=True)
    ]
    result: dict[str, Holders] = {}
    for target in targets:
        values = accounts[target].tolist() if target in accounts.columns else []
        result[target] = TakenValues(
            (v, owner) for v, owner in zip(values, owners, strict=True) if isinstance(v, str) and v
        )
    return result


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


@dataclass(frozen=True)
class PreviewRow:
    target: str
    #: field, constant or expression
    kind: str
    source: str
    value: object
    notes: tuple[str, ...]


def preview_mapping(user: Mapping[str, object], mapping: Mapping[str, Source]) -> list[PreviewRow]:
    """Each target's value for one directory user, with where it comes from and notes
    (default used, create-only, a failing expression): what ``roster mapping preview``
    shows. Nothing is read from the app, so ``unique`` sees no taken values."""
    rows: list[PreviewRow] = []
    for target, source in mapping.items():
        kind, text = describe_source(source)
        notes: list[str] = []
        value: object
        if isinstance(source, Constant):
            value = source.constant
        elif isinstance(source, GroupsSource):
            groups = user.get("effective_groups") or user.get("groups") or ()
            value = encode_set(source.values_for(groups))
            notes.append("from the person's groups, nested included")
        elif isinstance(source, Expression):
            try:
                value = source.compiled.evaluate(user, Context(str(user.get("user_id", ""))))
            except EvaluationError as exc:
                value = None
                notes.append(f"fails: {exc}")
            if source.compiled.uses_unique:
                notes.append("unique: not checked against the app's accounts")
        else:
            value = user.get(source_field(source) or "")
            if source_field(source) in REFERENCE_FIELDS:
                notes.append("reference: the manager's account id in the app")
        default = getattr(source, "default", None)
        if (value is None or value == "") and default is not None:
            value = default
            notes.append("default used")
        if is_create_only(source):
            notes.append("create-only: written on create, never updated")
        rows.append(PreviewRow(target, kind, text, value, tuple(notes)))
    return rows


def describe_source(source: Source) -> tuple[str, str]:
    """(field | constant | expression, its text) for tables and messages."""
    if isinstance(source, Constant):
        return "constant", repr(source.constant)
    if isinstance(source, Expression):
        return "expression", source.expression
    if isinstance(source, GroupsSource):
        shown = source.groups if isinstance(source.groups, str) else dict(source.groups)
        return "groups", str(shown)
    return "field", source_field(source) or ""
