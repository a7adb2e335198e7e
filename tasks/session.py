"""Opening the things a run needs, from the configuration: the store and the connectors."""

from __future__ import annotations

import gc

import httpx
from prefect.runtime import flow_run

from connectors.base import Connector
from connectors.build import build_connector
from directory.config import AppConfig, RosterConfig
from directory.store import Store, resolve_database_url
from tasks.tokens import resolve_token

#: Tests and benchmarks route apps to in-process servers; None means real sockets.
TRANSPORTS: dict[str, httpx.BaseTransport] = {}


def open_store(config: RosterConfig) -> Store:
    return Store(resolve_database_url(config.database_url))


def open_connector(app: AppConfig, *, dry_run: bool) -> Connector:
    """The app's connector, with its token read now from its variable or Secret block."""
    token = resolve_token(app) if app.has_secret else None
    return build_connector(app, token, dry_run=dry_run, transport=TRANSPORTS.get(app.name))


def current_flow_run_id() -> str | None:
    """The Prefect flow run this code runs in, kept with Roster's own run record."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def settle_memory() -> None:
    """Collect, then move what survives (Prefect, pandas, pydantic and their imports:
    some 400,000 objects) out of the garbage collector's sight for the rest of the process.

    A sync allocates many small objects per account, so the collector runs hundreds of
    times in an apply, and its full passes walked every one of those objects: about 0.14
    ms of CPU per account, 0.06 ms once they are frozen (docs/benchmarks.md). Frozen
    objects are still freed when nothing refers to them; only reference cycles among
    them stay, and the collect before the freeze clears the ones that exist.
    """
    gc.collect()
    gc.freeze()
