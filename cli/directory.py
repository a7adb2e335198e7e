"""``roster directory ...``: import and export people, look them up, assign apps,
(de)activate, put groups inside groups.

Changes made here reach the apps at the next sync; these commands only touch the
directory database. Deactivations also send a ``roster.user.deactivated`` event when
PREFECT_API_URL names a Prefect server, whose ``offboard`` trigger offboards at once
(cli/events.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.context import open_store, warn
from cli.events import announce_deactivated, users_named
from directory.config import RosterConfig
from directory.csvexport import export_csv
from directory.importer import ImportResult, import_csv

directory_app = typer.Typer(
    help="Manage the directory: import a CSV, list and show users, assign apps, "
    "deactivate and reactivate people, nest groups. Apps pick the changes up at the next sync.",
    no_args_is_help=True,
)
#: no markup: names and values come from CSV files and apps, and "[/x]" is not a tag here
stdout = Console(highlight=False, markup=False)

UserArg = Annotated[str, typer.Argument(help="user_name, email or id (any case)")]
AppArg = Annotated[str, typer.Argument(help="app name, as in roster.yaml")]
GroupArg = Annotated[str, typer.Argument(help="group name (any case)")]
ParentArg = Annotated[str, typer.Argument(help="the group to put it in (any case)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document instead")]
#: how many names of deactivated users an import summary lists
MAX_NAMES = 20


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


def _warn_unknown_app(config: RosterConfig, app: str) -> None:
    """An app missing from roster.yaml is allowed (configure it later) but often a typo."""
    names = [configured.name for configured in config.apps]
    if names and app not in names:
        warn(f"no app named {app!r} in the configuration (apps: {', '.join(names)})")


@directory_app.command("import")
def import_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with user_name,email,... columns")],
    full: Annotated[
        bool, typer.Option("--full", help="deactivate active users missing from the file")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="deactivate even past the safety limit")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would change, write nothing")
    ] = False,
) -> None:
    """Import users from a CSV file: all of it, or nothing if any row is bad."""
    with open_store(ctx) as (config, store):
        result = import_csv(
            store, file, full=full, safety=config.safety, force=force, dry_run=dry_run
        )
        deactivated = [] if result.dry_run else users_named(store, result.deactivated_names)
    _print_import(file, result)
    announce_deactivated(deactivated, source="import --full")


@directory_app.command("export")
def export_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV file to write (replaced if it exists)")],
) -> None:
    """Write every user to a CSV file that `roster directory import` reads back. Cells a
    spreadsheet would run as formulas (= + - @) get a ' in front; import drops it."""
    with open_store(ctx) as (_config, store):
        count = export_csv(store, file)
    stdout.print(f"Exported {count} users to {file}.")


def _print_import(file: Path, result: ImportResult) -> None:
    if result.dry_run:
        stdout.print(f"Dry run of {file.name}: nothing was written.")
    else:
        stdout.print(f"Imported {file.name}.")
    table = Table("users", "count")
    for label, count in result.summary().items():
        table.add_row(label, str(count))
    stdout.print(table)
    names = result.deactivated_names
    if names:
        more = f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else ""
        stdout.print(f"Deactivated: {', '.join(names[:MAX_NAMES])}{more}")


@directory_app.command("users")
def list_users(
    ctx: typer.Context,
    app: Annotated[str | None, typer.Option("--app", help="only users who have this app")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="only active / inactive users")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List users with their effective apps (direct and through groups)."""
    with open_store(ctx) as (_config, store):
        users = store.list_users(app=app, active=active)
    if as_json:
        _print_json([_user_json(record) for record in users.to_dict("records")])
        return
    table = Table("user_name", "name", "email", "department", "active", "apps")
    for user in users.itertuples():
        table.add_row(
            str(user.user_name),
            str(user.display_name or ""),
            str(user.email),
            str(user.department or ""),
            "yes" if user.active else "no",
            str(user.apps).replace(";", ", "),
        )
    stdout.print(table)
    stdout.print(f"{len(users)} users")


def _user_json(record: dict[Any, Any]) -> dict[str, Any]:
    user = {str(key): value for key, value in record.items()}
    user["apps"], user["groups"] = _split(user["apps"]), _split(user["groups"])
    user["active"] = bool(user["active"])
    return user


@directory_app.command("show")
def show_user(ctx: typer.Context, user: UserArg, as_json: JsonOpt = False) -> None:
    """Show one user: attributes, apps (and where they come from), groups, linked apps."""
    with open_store(ctx) as (_config, store):
        found = store.find_user(user)
        found["linked_apps"] = store.linked_apps(found["user_id"])
    if as_json:
        _print_json(found)
        return
    table = Table(show_header=False, box=None)
    for key, value in found.items():
        if key in {"apps", "direct_apps", "effective_groups"}:
            continue
        table.add_row(key, _show_value(value))
    inherited = sorted(set(found["effective_groups"]) - set(found["groups"]))
    table.add_row("groups (nested)", _show_value(inherited))
    table.add_row("apps", _apps_text(found["apps"], found["direct_apps"]))
    stdout.print(table)


def _show_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value) or "-"
    return "-" if value is None else str(value)


def _apps_text(apps: list[str], direct: list[str]) -> str:
    labels = [app if app in direct else f"{app} (via group)" for app in apps]
    return ", ".join(labels) or "-"


@directory_app.command("assign")
def assign(ctx: typer.Context, user: UserArg, app: AppArg) -> None:
    """Assign an app to a user directly."""
    with open_store(ctx) as (config, store):
        changed = store.assign_app(user, app)
        _warn_unknown_app(config, app)
        name = store.find_user(user)["user_name"]
    stdout.print(f"Assigned {app} to {name}." if changed else f"{name} already had {app}.")


@directory_app.command("unassign")
def unassign(ctx: typer.Context, user: UserArg, app: AppArg) -> None:
    """Remove an app assigned to a user directly (group assignments stay)."""
    with open_store(ctx) as (_config, store):
        changed = store.unassign_app(user, app)
        found = store.find_user(user)
    name = found["user_name"]
    stdout.print(
        f"Unassigned {app} from {name}." if changed else f"{name} had no direct {app} assignment."
    )
    if app in found["apps"]:
        groups = ", ".join(found["effective_groups"])
        warn(f"{name} still has {app} through a group (groups: {groups})")


@directory_app.command("deactivate")
def deactivate(ctx: typer.Context, user: UserArg) -> None:
    """Mark a user inactive; their app accounts are deactivated at the next sync, or at
    once through the offboard trigger when PREFECT_API_URL names a Prefect server."""
    with open_store(ctx) as (_config, store):
        found = store.set_active(user, False)
    stdout.print(f"Deactivated {found['user_name']}.")
    announce_deactivated([found], source="deactivate")


@directory_app.command("reactivate")
def reactivate(ctx: typer.Context, user: UserArg) -> None:
    """Mark a user active again; their app accounts are restored at the next sync."""
    with open_store(ctx) as (_config, store):
        found = store.set_active(user, True)
    stdout.print(f"Reactivated {found['user_name']}.")


@directory_app.command("group-assign")
def group_assign(ctx: typer.Context, group: GroupArg, app: AppArg) -> None:
    """Assign an app to every member of a group."""
    with open_store(ctx) as (config, store):
        changed = store.assign_group_app(group, app)
        _warn_unknown_app(config, app)
    stdout.print(f"Assigned {app} to group {group}." if changed else f"{group} already had {app}.")


@directory_app.command("group-unassign")
def group_unassign(ctx: typer.Context, group: GroupArg, app: AppArg) -> None:
    """Remove an app from a group (members keep it if assigned another way)."""
    with open_store(ctx) as (_config, store):
        changed = store.unassign_group_app(group, app)
    stdout.print(f"Unassigned {app} from group {group}." if changed else f"{group} had no {app}.")


@directory_app.command("group-add-group")
def group_add_group(ctx: typer.Context, child: GroupArg, parent: ParentArg) -> None:
    """Put group CHILD inside group PARENT (created if missing): CHILD's members get
    PARENT's apps. A group cannot end up inside itself."""
    with open_store(ctx) as (_config, store):
        changed = store.add_group_to_group(child, parent)
    stdout.print(
        f"Added group {child} to {parent}." if changed else f"{child} was already in {parent}."
    )


@directory_app.command("group-remove-group")
def group_remove_group(ctx: typer.Context, child: GroupArg, parent: ParentArg) -> None:
    """Take group CHILD out of group PARENT (its members keep apps they have another way)."""
    with open_store(ctx) as (_config, store):
        changed = store.remove_group_from_group(child, parent)
    stdout.print(
        f"Removed group {child} from {parent}." if changed else f"{child} was not in {parent}."
    )


@directory_app.command("groups")
def list_groups(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List groups with their members (own, and with nested groups), the groups inside
    them, and their apps."""
    with open_store(ctx) as (_config, store):
        groups = store.list_groups()
    if as_json:
        _print_json([_group_json(record) for record in groups.to_dict("records")])
        return
    table = Table("group", "members", "with nested", "groups inside", "apps")
    for group in groups.itertuples():
        table.add_row(
            str(group.name),
            str(group.members),
            str(group.effective_members),
            str(group.member_groups).replace(";", ", "),
            str(group.apps).replace(";", ", "),
        )
    stdout.print(table)


def _group_json(record: dict[Any, Any]) -> dict[str, Any]:
    return {
        "name": record["name"],
        "members": int(record["members"]),
        "effective_members": int(record["effective_members"]),
        "member_groups": _split(record["member_groups"]),
        "apps": _split(record["apps"]),
    }


def _split(joined: Any) -> list[str]:
    return [name for name in str(joined or "").split(";") if name]
