"""Offboarding now: deactivate a person in the directory, then deprovision them in every
linked app at once, without waiting for (or running) a whole sync."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from connectors.errors import ConnectorError
from directory.config import Action, AppConfig, ConfigError, DeprovisionMode, load_config
from directory.store import Store
from tasks.apply import ApplyContext, WorkItem
from tasks.batches import Batch, apply_batch
from tasks.plan import PlannedAction, PlanRules
from tasks.session import current_flow_run_id, open_connector, open_store


@flow(name="offboard", log_prints=False)
def offboard(user: str, dry_run: bool = False, config_path: str | None = None) -> dict[str, Any]:
    """``user`` is a user name or an email."""
    config = load_config(config_path)
    store = open_store(config)
    person = store.find_user(user) if dry_run else store.set_active(user, False)
    run_id = store.start_run("offboard", dry_run=dry_run, flow_run_id=current_flow_run_id())
    linked = set(store.linked_apps(person["user_id"]))
    apps = [app for app in config.apps if app.name in linked]
    futures = {
        app.name: deprovision_in_app.submit(store, app, run_id, person, dry_run) for app in apps
    }
    results = {name: future.result() for name, future in futures.items()}
    store.finish_run(run_id, {"user": person["user_name"], "apps": results})
    return {"run_id": run_id, "user": person["user_name"], "dry_run": dry_run, "apps": results}


@task(name="deprovision", task_run_name="deprovision-{app.name}", cache_policy=NO_CACHE)
def deprovision_in_app(
    store: Store, app: AppConfig, run_id: str, person: dict[str, Any], dry_run: bool
) -> dict[str, Any]:
    """The same batch machinery as a sync (action log, links), for one account; then the
    account is read back, so the report shows what the app says, not what we hoped."""
    links = store.read_links(app.name)
    remote_id = links.loc[links["user_id"] == person["user_id"], "remote_id"].iloc[0]
    action = _deprovision_action(app)
    if action is None:
        return {"action": "none", "outcome": "skipped", "note": "deprovisioning is not enabled"}
    if dry_run:
        return {"action": action.value, "outcome": "planned", "remote_id": remote_id}
    try:
        connector = open_connector(app, dry_run=False)
    except ConfigError as exc:  # its token cannot be read: this app fails, the others go on
        return {
            "action": action.value,
            "outcome": "failed",
            "remote_id": remote_id,
            "error": str(exc),
        }
    try:
        item = _work_item(person, remote_id, action)
        ctx = ApplyContext(app=app, connector=connector, rules=PlanRules.for_app(app))
        batch = Batch(action, 0, (item,))
        state = apply_batch(store, quote(ctx), run_id, quote(batch), return_state=True)
        actions = store.read_actions(run_id, app=app.name)
        last = actions.iloc[-1] if len(actions) else None
        return {
            "action": action.value,
            "outcome": "failed" if state.is_failed() or last is None else last["outcome"],
            "remote_id": remote_id,
            "error": None if last is None else last["error"],
            "active_in_app": _read_active(connector, remote_id, action),
        }
    finally:
        connector.close()


def _deprovision_action(app: AppConfig) -> PlannedAction | None:
    if app.deprovision is DeprovisionMode.DELETE and Action.DELETE in app.actions:
        return PlannedAction.DELETE
    if Action.DEACTIVATE in app.actions:
        return PlannedAction.DEACTIVATE
    return None


def _work_item(person: dict[str, Any], remote_id: str, action: PlannedAction) -> WorkItem:
    return WorkItem(
        user_id=person["user_id"],
        user_name=person["user_name"],
        remote_id=remote_id,
        action=action,
        situation="deprovision",
        changes={"active": [True, False]} if action is PlannedAction.DEACTIVATE else None,
        desired={},
        attr_hash=None,
    )


def _read_active(connector: Any, remote_id: str, action: PlannedAction) -> bool | None:
    """``active`` as the app reports it now; None when the account is gone (deleted)."""
    try:
        value = connector.get_account(remote_id).attributes.get("active")
    except ConnectorError:
        return None
    return value if isinstance(value, bool) else None
