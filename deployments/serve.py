"""Run Roster's deployments in one process, without a work pool or worker (Prefect's ``serve``).

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve [--interval S] [--poll S]

The same five deployments as prefect.yaml (``sync-all`` and ``sync-incremental`` on their
intervals, ``sync-app``, ``offboard`` with the deactivation trigger, ``provision-user``),
so the UI, the trigger and
``prefect deployment run`` work the same either way. Run it from the repository root:
served deployments load their flows from paths relative to the working directory.

``--poll`` is how often the runner asks the server for runs to start. Prefect's default
(10 s) alone would eat the offboarding latency budget (docs/benchmarks-offboard.md); one
small query a second costs the server next to nothing.
"""

from __future__ import annotations

import argparse
import os

from cli.prefect_env import apply_prefect_defaults

# Runs log to the server at INFO, for the UI; the roster command keeps its terminal quiet.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
apply_prefect_defaults()

from prefect import serve  # noqa: E402
from prefect.deployments.runner import RunnerDeployment  # noqa: E402

from deployments.triggers import offboard_trigger  # noqa: E402

#: seconds between scheduled full syncs; ROSTER_SYNC_INTERVAL overrides (prefect.yaml too)
DEFAULT_INTERVAL = 3600
#: seconds between scheduled incremental syncs; ROSTER_INCREMENTAL_INTERVAL overrides
DEFAULT_INCREMENTAL_INTERVAL = 300
DEFAULT_POLL_SECONDS = 1.0


def sync_interval() -> int:
    """ROSTER_SYNC_INTERVAL, else an hour: the one knob for both ways of deploying."""
    return int(os.environ.get("ROSTER_SYNC_INTERVAL") or DEFAULT_INTERVAL)


def incremental_interval() -> int:
    """ROSTER_INCREMENTAL_INTERVAL, else 5 minutes."""
    return int(os.environ.get("ROSTER_INCREMENTAL_INTERVAL") or DEFAULT_INCREMENTAL_INTERVAL)


def build_deployments(
    interval: int = DEFAULT_INTERVAL, incremental: int = DEFAULT_INCREMENTAL_INTERVAL
) -> list[RunnerDeployment]:
    """The deployments ``serve`` runs; building them talks to no server. (``from_flow``
    is what ``flow.to_deployment`` calls, without its sync/async dual return type.)"""
    from flows.offboard import offboard
    from flows.provision import provision_user
    from flows.sync import sync, sync_one_app

    return [
        RunnerDeployment.from_flow(
            sync,
            name="sync-all",
            interval=interval,
            description="Bring every configured app in line with the directory: a full"
            " reconciliation, which also repairs drift made inside the apps.",
        ),
        RunnerDeployment.from_flow(
            sync,
            name="sync-incremental",
            interval=incremental,
            parameters={"mode": "incremental"},
            description="Sync only the people changed in the directory since each app's"
            " last successful sync (apps never synced yet run in full).",
        ),
        RunnerDeployment.from_flow(
            sync_one_app,
            name="sync-app",
            description="Sync one app: the `app` parameter is required.",
        ),
        RunnerDeployment.from_flow(
            offboard,
            name="offboard",
            description="Deactivate one person (`user`) and deprovision them in every "
            "linked app now. Triggered by roster.user.deactivated events.",
            triggers=[offboard_trigger()],
        ),
        RunnerDeployment.from_flow(
            provision_user,
            name="provision-user",
            description="Provision one person (`user`) now, with a step report per app.",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Serve Roster's deployments from this process (no worker needed)."
    )
    parser.add_argument(
        "--interval",
        type=int,
        default=sync_interval(),
        help="seconds between full syncs (default: $ROSTER_SYNC_INTERVAL or 3600)",
    )
    parser.add_argument(
        "--incremental-interval",
        type=int,
        default=incremental_interval(),
        help="seconds between incremental syncs (default: $ROSTER_INCREMENTAL_INTERVAL or 300)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help="seconds between the runner's queries for runs to start (default: 1)",
    )
    args = parser.parse_args()
    deployments = build_deployments(args.interval, args.incremental_interval)
    serve(*deployments, query_seconds=args.poll)


if __name__ == "__main__":
    main()
