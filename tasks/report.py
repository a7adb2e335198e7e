"""Report: what a run did to each app, as a summary and a table of every drifted account.

The same data feeds the Prefect artifacts (markdown summary, table keyed ``drift-<app>``)
and the CLI. Outcomes come from the action log, the record of what was actually sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from directory.config import AppConfig
from tasks.plan import PlannedAction, Situation

SUMMARY_KEYS = (
    "created",
    "updated",
    "deactivated",
    "deleted",
    "linked",
    "unchanged",
    "orphans",
    "unmanaged",
    "disputed",
    "failed",
    "waiting",
    "held",
    "reported",
)
_DONE = {"succeeded", "adopted"}


class ReportRows(Sequence[dict[str, Any]]):
    """A run's report rows, in a sequence Prefect does not walk.

    A flow's return value is visited object by object when the flow ends (Prefect looks
    for futures to resolve), and it descends into lists and dicts: about 0.1 ms of CPU
    per row, so a tenth of Roster's own cost per account in an initial sync. Prefect
    leaves other objects alone; this one reads like the list it holds (iteration,
    indexing, ``len``, equality with a list) and is pickled with it (Dask, results).
    ``jsonable`` turns it back into a list for ``json.dumps``.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterable[dict[str, Any]] = ()) -> None:
        self._rows = list(rows)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReportRows):
            return self._rows == other._rows
        return isinstance(other, list) and self._rows == other

    __hash__ = None  # type: ignore[assignment]  # mutable contents, like a list

    def __repr__(self) -> str:
        return f"ReportRows({self._rows!r})"

    def as_list(self) -> list[dict[str, Any]]:
        return list(self._rows)


def jsonable(value: object) -> object:
    """``json.dumps``' ``default``: report rows as their list, anything else as text."""
    return value.as_list() if isinstance(value, ReportRows) else str(value)


def with_outcomes(plan: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """The plan with each row's final outcome, attempts and error from the action log."""
    plan = plan.copy()
    if actions.empty:
        plan["outcome"], plan["attempts"], plan["error"] = None, 0, None
        return plan
    last = actions.sort_values("id").groupby(["user_id", "action"], as_index=False).last()
    attempts = actions.groupby(["user_id", "action"], as_index=False)["attempts"].sum()
    last = last.drop(columns=["attempts"]).merge(attempts, on=["user_id", "action"])
    merged = plan.merge(
        last[["user_id", "action", "outcome", "attempts", "error"]],
        on=["user_id", "action"],
        how="left",
    )
    merged["attempts"] = merged["attempts"].fillna(0).astype(int)
    for column in ("outcome", "error"):  # rows never applied (reports) have no log entry
        merged[column] = merged[column].astype(object).where(merged[column].notna(), None)
    return merged


def summarize(plan: pd.DataFrame, *, dry_run: bool) -> dict[str, int]:
    """Counts per outcome class. In a dry run, planned actions count as if applied."""
    action, situation = plan["action"], plan["situation"]
    held = plan["held"].astype(bool)
    outcome = plan["outcome"] if "outcome" in plan else pd.Series(None, index=plan.index)
    done = pd.Series(True, index=plan.index) if dry_run else outcome.isin(list(_DONE))
    adopted = outcome == "adopted"
    counts = {
        "created": (action == PlannedAction.CREATE) & done & ~adopted & ~held,
        "updated": (action == PlannedAction.UPDATE) & done,
        "deactivated": (action == PlannedAction.DEACTIVATE) & done & ~held,
        "deleted": (action == PlannedAction.DELETE) & done & ~held,
        "linked": ((action == PlannedAction.LINK) | adopted) & done,
        "unchanged": situation.isin([Situation.IN_SYNC, Situation.DEPROVISIONED]),
        "orphans": situation == Situation.ORPHAN,
        "unmanaged": situation == Situation.UNMANAGED,
        "disputed": situation == Situation.DISPUTED,
        "failed": outcome.isin(["failed", "pending"]) & ~pd.Series(dry_run, index=plan.index),
        "held": held,
        # drift only shown (remediation ``report``), nothing written for it
        "reported": plan.get("reported", pd.Series(None, index=plan.index)).map(bool),
    }
    return {key: int(mask.sum()) for key, mask in counts.items()}


def config_warnings(app: AppConfig) -> list[str]:
    """Settings a person should be reminded of on every report."""
    # every kind that speaks TLS (HTTP apps, LDAP) names the switch tls_verify
    if getattr(app, "tls_verify", True):
        return []
    return [
        "warning: TLS certificate verification is off (tls_verify: false); anyone on the"
        " network path can pose as this app and read its secret"
    ]


def drift_rows(app: str, plan: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per attribute difference of every account written, held, failed or reported;
    a ``report``-policy difference is a row with action ``report`` (nothing written)."""
    interesting = plan[
        plan["action"].ne(PlannedAction.NONE)
        | plan.get("outcome", pd.Series(None, index=plan.index)).isin(["failed"])
    ]
    rows: list[dict[str, Any]] = []
    for r in interesting.itertuples(index=False):
        base = {
            "app": app,
            "user": r.user_name,
            "remote_id": r.remote_id,
            "situation": str(r.situation),
            #: "app" when someone changed the account in the app, "directory" when we did
            "origin": r.origin,
            "action": str(r.action),
            "status": _status(r),
            "attempts": int(getattr(r, "attempts", 0) or 0),
            "error": getattr(r, "error", None) or r.note,
        }
        # A new account is one row: its attributes are the directory's, not drift, and
        # listing each would make an initial sync's table ten times the people.
        changes = {} if r.action == PlannedAction.CREATE else (r.changes or {})
        # remediation ``report``: shown with its own action, whatever the row's
        reported = getattr(r, "reported", None) or {}
        if not changes and not reported:
            rows.append({**base, "attribute": None, "old": None, "new": None})
        for path, (old, new) in changes.items():
            rows.append({**base, "attribute": path, "old": _show(old), "new": _show(new)})
        for path, (old, new) in reported.items():
            shown = {"attribute": path, "old": _show(old), "new": _show(new)}
            rows.append({**base, "action": str(PlannedAction.REPORT), **shown})
    return rows


def unmapped_rows(app: str, failures: dict[str, str]) -> list[dict[str, Any]]:
    """Users left alone because an expression of the app's mapping failed for them."""
    return [
        {
            "app": app,
            "user": name,
            "remote_id": None,
            "situation": "unmapped",
            "action": "none",
            "status": "failed",
            "attempts": 0,
            "attribute": None,
            "old": None,
            "new": None,
            "error": f"{why}; left untouched (give the entry a default, or fix the data)",
        }
        for name, why in sorted(failures.items())
    ]


def unreadable_rows(app: str, user_names: list[str]) -> list[dict[str, Any]]:
    """Users left alone because the app returned their account malformed."""
    return [
        {
            "app": app,
            "user": name,
            "remote_id": None,
            "situation": "unreadable",
            "action": "none",
            "status": "failed",
            "attempts": 0,
            "attribute": None,
            "old": None,
            "new": None,
            "error": "the app returned this account malformed (or, without an id, an account"
            " that may be this one); left untouched",
        }
        for name in user_names
    ]


def _status(row: Any) -> str:
    if row.held:
        return "held"
    return str(getattr(row, "outcome", None) or "planned")


def _show(value: object) -> str | None:
    return None if value is None else str(value)


def summary_markdown(app: str, summary: dict[str, int], *, dry_run: bool, notes: list[str]) -> str:
    title = f"# Roster sync: {app}" + (" (dry run: nothing was written)" if dry_run else "")
    lines = [title, "", "| " + " | ".join(SUMMARY_KEYS) + " |", "|" + "---|" * len(SUMMARY_KEYS)]
    lines.append("| " + " | ".join(str(summary.get(k, 0)) for k in SUMMARY_KEYS) + " |")
    groups = [k for k in summary if k.startswith(("groups_", "members_"))]
    if groups:  # the app's groups are kept (push_groups)
        lines += ["", "| " + " | ".join(groups) + " |", "|" + "---|" * len(groups)]
        lines.append("| " + " | ".join(str(summary[k]) for k in groups) + " |")
    lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines)


@task(name="report", task_run_name="report-{app}", cache_policy=NO_CACHE)
def publish_report(
    app: str,
    summary: dict[str, int],
    rows: list[dict[str, Any]],
    *,
    dry_run: bool,
    notes: list[str],
) -> None:
    """Prefect artifacts: the summary, and the drift table under the key ``drift-<app>`` so
    the Artifacts page keeps the latest report and its history."""
    key = "drift-" + "".join(ch if ch.isalnum() else "-" for ch in app.lower())
    create_markdown_artifact(
        markdown=summary_markdown(app, summary, dry_run=dry_run, notes=notes),
        key=f"{key}-summary",
        description=f"Roster sync summary for {app}",
    )
    create_table_artifact(
        table=json.loads(json.dumps(rows, default=str)),
        key=key,
        description=f"Drifted, failed and held accounts in {app}",
    )
