"""Prefect settings Roster's commands start with, set before Prefect is imported.

From ../shared/PREFECT-NOTES.md: local mode's temporary server needs more than the default
20 s to start on a fresh home; larger recorder batches cut the server's CPU threefold; and
Prefect's state belongs to Roster's home, not the user's global ~/.prefect. Anything the
user set in the environment wins.
"""

from __future__ import annotations

import os
from pathlib import Path


def roster_home() -> Path:
    return Path(os.environ.get("ROSTER_HOME") or Path.home() / ".roster")


def prefect_defaults() -> dict[str, str]:
    return {
        "PREFECT_HOME": str(roster_home() / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "50",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "50",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }


def apply_prefect_defaults() -> None:
    for key, value in prefect_defaults().items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
