"""Provision one person now, in every app they are assigned (or one), without a whole sync:
Roster's "provision on demand". Each app reports its steps; see ``tasks.provision``."""

from __future__ import annotations

from typing import Any

from prefect import flow

from directory.config import AppConfig, RosterConfig, load_config
from tasks.provision import Person, load_person, provision_in_app, publish_provision_report
from tasks.session import current_flow_run_id, open_store


@flow(name="provision-user", log_prints=False)
def provision_user(
    user: str,
    app: str | None = None,
    dry_run: bool = False,
    config_path: str | None = None,
) -> dict[str, Any]:
    """``user`` is a user name or an email; ``app`` limits it to one app."""
    config = load_config(config_path)
    store = open_store(config)
    try:
        person = load_person(store, user)
        apps, unconfigured = _apps_for(config, person, store.linked_apps(person.user_id), app)
        run_id = store.start_run("provision", dry_run=dry_run, flow_run_id=current_flow_run_id())
        futures = {a.name: provision_in_app.submit(store, a, run_id, person, dry_run) for a in apps}
        results = {name: future.result() for name, future in futures.items()}
        publish_provision_report(person.user["user_name"], results, dry_run=dry_run)
        store.finish_run(run_id, {"user": person.user["user_name"], "apps": _brief(results)})
    finally:
        store.dispose()
    return {
        "run_id": run_id,
        "user": person.user["user_name"],
        "dry_run": dry_run,
        "apps": results,
        "not_configured": unconfigured,
    }


def _apps_for(
    config: RosterConfig, person: Person, linked: list[str], only: str | None
) -> tuple[list[AppConfig], list[str]]:
    """The one app asked for, else every configured app the person is assigned or linked
    in (a linked app they lost is where a sync would deprovision them). Also returns the
    assigned apps roster.yaml does not configure."""
    if only:
        return [config.app(only)], []
    wanted = set(person.user["apps"]) | set(linked)
    configured = {a.name for a in config.apps}
    return [a for a in config.apps if a.name in wanted], sorted(wanted - configured)


def _brief(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the run record keeps per app: the decision and its outcome."""
    keys = ("in_scope", "matched_by", "situation", "action", "outcome", "remote_id", "error")
    return {name: {k: r.get(k) for k in keys} for name, r in results.items()}
