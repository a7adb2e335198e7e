"""Roster's Prefect events: ``roster.user.deactivated`` when the directory deactivates someone.

A deployment trigger on the ``offboard`` deployment (prefect.yaml, deployments/triggers.py)
turns each event into an offboarding run at once, instead of waiting for the next sync.

The events go to the Prefect server's REST endpoint, ``POST $PREFECT_API_URL/events``
("Create Events"), in one request per batch; the server answers 204 once it has taken
them, so the command knows they were delivered before it exits. Prefect's own
``emit_event`` was measured first (docs/benchmarks-offboard.md): importing Prefect and
draining its background events worker before exit made ``roster directory deactivate``
cost 3.3-4.0 s of CPU instead of 1.7-2.0 s. On a 2-core machine that CPU competes with the
offboarding run starting up: deactivate-to-inactive took 11.6-13.6 s instead of 8.8-9.3 s
in the same conditions. Directory commands therefore never import Prefect.

Events are sent only when PREFECT_API_URL names a server: in local mode nothing could act
on them. An event carries the user's id and user name, never an email or a token.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console

from cli.context import warn
from directory.store import Store

USER_DEACTIVATED = "roster.user.deactivated"
#: resource ids are ``roster.user.<user_id>``
USER_RESOURCE_PREFIX = "roster.user."
#: the label the offboard trigger reads the ``user`` parameter from
USER_NAME_LABEL = "roster.user-name"
#: events per request; a --full import may deactivate hundreds of people
BATCH_SIZE = 500
TIMEOUT = httpx.Timeout(10.0, connect=2.0)

stdout = Console(highlight=False)


class EventsUnavailableError(Exception):
    """The configured Prefect server could not be reached, or refused the events."""


def server_api_url() -> str | None:
    """The server events go to; None in local mode (no PREFECT_API_URL in the environment)."""
    return os.environ.get("PREFECT_API_URL") or None


def user_resource(user: Mapping[str, Any]) -> dict[str, str]:
    """The event's resource: ``roster.user.<user_id>``, named and labelled by user name."""
    name = str(user["user_name"])
    return {
        "prefect.resource.id": f"{USER_RESOURCE_PREFIX}{user['user_id']}",
        "prefect.resource.name": name,
        USER_NAME_LABEL: name,
    }


def deactivation_event(user: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """One ``roster.user.deactivated`` event, as Prefect's Event schema has it."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": USER_DEACTIVATED,
        "resource": user_resource(user),
        "related": [],
        "payload": {"source": source},
    }


def emit_user_deactivated(user: Mapping[str, Any], *, source: str = "deactivate") -> int:
    """Send ``roster.user.deactivated`` for one user; see ``emit_users_deactivated``."""
    return emit_users_deactivated([user], source=source)


def emit_users_deactivated(users: Sequence[Mapping[str, Any]], *, source: str) -> int:
    """Send one ``roster.user.deactivated`` event per user; returns how many the server
    took (0 when no server is configured). Raises ``EventsUnavailableError`` when the
    server is configured but unreachable or refuses them."""
    api_url = server_api_url()
    if not users or api_url is None:
        return 0
    events = [deactivation_event(user, source=source) for user in users]
    with httpx.Client(headers=_auth_headers(), timeout=TIMEOUT) as client:
        for start in range(0, len(events), BATCH_SIZE):
            _post(client, api_url, events[start : start + BATCH_SIZE])
    return len(events)


def _auth_headers() -> dict[str, str]:
    """What Prefect's own client sends: basic auth for a server with an auth string,
    else the API key (Prefect Cloud)."""
    if auth := os.environ.get("PREFECT_API_AUTH_STRING"):
        return {"Authorization": f"Basic {base64.b64encode(auth.encode()).decode()}"}
    if key := os.environ.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {key}"}
    return {}


def _post(client: httpx.Client, api_url: str, events: list[dict[str, Any]]) -> None:
    try:
        response = client.post(f"{api_url.rstrip('/')}/events", json=events)
    except httpx.HTTPError as exc:
        raise EventsUnavailableError(
            f"the Prefect server at {api_url} is unreachable ({type(exc).__name__})"
        ) from exc
    if response.status_code != httpx.codes.NO_CONTENT:
        raise EventsUnavailableError(
            f"the Prefect server at {api_url} refused the events (HTTP {response.status_code})"
        )


def users_named(store: Store, names: Iterable[str]) -> list[dict[str, Any]]:
    """The directory rows of these user names, in one query (an import can deactivate
    hundreds)."""
    wanted = set(names)
    if not wanted:
        return []
    users = store.read_users()
    return [dict(row) for row in users[users["user_name"].isin(wanted)].to_dict("records")]


def announce_deactivated(users: Sequence[Mapping[str, Any]], *, source: str) -> None:
    """Send the events and say so in one line; a failure is a warning, never an error:
    the directory change is made, and the next sync deprovisions them anyway."""
    try:
        sent = emit_users_deactivated(users, source=source)
    except EventsUnavailableError as exc:
        warn(
            f"{exc}: no offboarding was triggered for {len(users)} user(s); "
            "run `roster offboard USER` or wait for the next sync"
        )
        return
    if sent:
        stdout.print(f"Sent {USER_DEACTIVATED} to Prefect for {sent} user(s).")
