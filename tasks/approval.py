"""Approving held actions in the Prefect UI.

When the safety threshold holds destructive actions for an app and the flow runs against a
Prefect server someone can open, the flow publishes the held list as a table artifact
(``held-<app>``) and pauses with ``pause_flow_run(wait_for_input=HeldActionsDecision)``:
the flow run page shows a form (approve, your name, a comment). Approve applies the held
actions; reject, or no answer before the timeout, applies nothing destructive. Either way
the decision, who made it and when are written onto the held rows of the action log.

In local mode (no ``PREFECT_API_URL``) the temporary server Prefect starts inside the
process has no UI and dies with it: nobody could click anything, so the flow does not
pause; the actions stay held and the CLI says how to approve them
(``roster sync --app APP --approve-held``).

Prefect OSS has no user accounts, so the approver is the name typed into the form.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from pydantic import Field

from directory.actionlog import Outcome
from tasks.guard import held_only

#: seconds between checks for a decision while paused (one small GET each)
POLL_SECONDS = 2
#: held accounts named in the form's description (all of them are in the artifact)
DESCRIBED = 15


class HeldActionsDecision(RunInput):
    """The form an approver fills in on the paused flow run's page."""

    approve: bool = Field(
        default=False, description="Apply the held actions. Leave off to reject them."
    )
    approver: str = Field(min_length=1, max_length=255, description="Your name.")
    comment: str = Field(default="", max_length=2000, description="Why (kept in the log).")


@dataclass(frozen=True)
class ApprovalResult:
    app: str
    outcome: Outcome  # APPROVED, REJECTED or EXPIRED
    approver: str | None
    comment: str
    decided_at: datetime

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVED

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.outcome.value,
            "approver": self.approver,
            "comment": self.comment,
            "decided_at": self.decided_at.isoformat(),
        }


def approve_command(app: str) -> str:
    return f"roster sync --app {app} --approve-held"


def approvals_in_ui() -> bool:
    """True when the flow talks to a Prefect server a person can open. False in local mode:
    no ``PREFECT_API_URL``, or it names a temporary server this very process started
    (Prefect's local mode and ``prefect_test_harness`` both start one with the UI off)."""
    api = PREFECT_API_URL.value()
    if not api:
        return False
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:  # never imported: this process started no server
        return True
    started = getattr(server_module.SubprocessASGIServer, "_instances", {})
    return not any(
        getattr(server, "running", False) and server.api_url == api.rstrip("/")
        for server in started.values()
    )


def held_key(app: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return "held-" + "".join(ch if ch.isalnum() else "-" for ch in app.lower())


def held_rows(plan: pd.DataFrame) -> list[dict[str, Any]]:
    """The held actions, one row per account, as the approver reads them."""
    return [
        {
            "user": _plain(r.user_name),
            "remote_id": _plain(r.remote_id),
            "action": str(r.action),
            "situation": str(r.situation),
        }
        for r in held_only(plan).itertuples(index=False)
    ]


def _plain(value: Any) -> Any:
    """JSON has no NaN: a missing name or id is null in the artifact."""
    return None if value is None or pd.isna(value) else value


def publish_held(app: str, rows: list[dict[str, Any]], reasons: list[str]) -> None:
    create_table_artifact(
        table=rows,
        key=held_key(app),
        description=f"Actions held in {app}: " + "; ".join(reasons),
    )


def ask_for_decision(
    app: str,
    rows: list[dict[str, Any]],
    reasons: list[str],
    *,
    timeout: int,
    clock: Callable[[], datetime],
) -> ApprovalResult:
    """Publish the held list, pause until someone decides in the UI (or ``timeout``
    seconds pass) and return the decision. A timeout is an ``expired`` decision."""
    publish_held(app, rows, reasons)
    form = HeldActionsDecision.with_initial_data(
        description=_form_text(app, rows, reasons, timeout), approve=False
    )
    get_run_logger().warning(
        "app %s: %d actions held; approve or reject them on the flow run page%s (waiting up to %s)",
        app,
        len(rows),
        _run_page(),
        _duration(timeout),
    )
    try:
        answer = pause_flow_run(
            wait_for_input=form,
            timeout=timeout,
            poll_interval=POLL_SECONDS,
            key=f"approve-{held_key(app)}",
        )
    except FlowPauseTimeout:
        return ApprovalResult(app, Outcome.EXPIRED, None, "no decision in time", clock())
    outcome = Outcome.APPROVED if answer.approve else Outcome.REJECTED
    return ApprovalResult(app, outcome, answer.approver.strip(), answer.comment, clock())


def not_asked(app: str, reason: str, clock: Callable[[], datetime]) -> ApprovalResult:
    """An expired decision for an app the flow could not ask about (an earlier pause of
    this run timed out, and a run whose pause expired cannot pause again)."""
    return ApprovalResult(app, Outcome.EXPIRED, None, reason, clock())


def _form_text(app: str, rows: list[dict[str, Any]], reasons: list[str], timeout: int) -> str:
    names = ", ".join(str(r["user"] or r["remote_id"]) for r in rows[:DESCRIBED])
    more = f" and {len(rows) - DESCRIBED} more" if len(rows) > DESCRIBED else ""
    counts = pd.Series([r["action"] for r in rows]).value_counts()
    actions = ", ".join(f"{n} {action}" for action, n in counts.items())
    return "\n".join(
        [
            f"## Roster: {len(rows)} actions held in **{app}** ({actions})",
            "",
            *[f"- {reason}" for reason in reasons],
            "",
            f"Accounts: {names}{more}. The full list is the artifact `{held_key(app)}`.",
            "",
            "Turn **approve** on to apply them, or leave it off to reject them. With no"
            f" answer within {_duration(timeout)} nothing destructive is applied.",
        ]
    )


def _duration(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def _run_page() -> str:
    ui, run_id = PREFECT_UI_URL.value(), flow_run.get_id()
    return f" {ui}/runs/flow-run/{run_id}" if ui and run_id else ""
