"""roster.yaml for REST apps: every mistake is a ConfigError naming the key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from directory.config import ConfigError, RestAppConfig, parse_config
from tests.rest_server import toy_entry

EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "rest").glob("*.yaml"))


def error_of(entry: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"apps": [entry]}, source="roster.yaml")
    return str(caught.value)


def changed(**keys: Any) -> dict[str, Any]:
    entry = copy.deepcopy(toy_entry("http://127.0.0.1:9"))
    for dotted, value in keys.items():
        *parents, last = dotted.split("__")
        target = entry
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return entry


def test_a_valid_entry_reads_with_the_rest_defaults() -> None:
    app = parse_config({"apps": [toy_entry("http://127.0.0.1:9")]}).apps[0]
    assert isinstance(app, RestAppConfig)
    assert list(app.effective_mapping) == ["userName", "email", "displayName", "active"]
    assert app.match_on == ["userName", "email"]
    assert app.field_specs["email"].path == "profile.email"
    assert "active" not in app.field_specs
    assert app.get_request.path == "/users/{id}"  # GET {list.path}/{id} unless said


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_shipped_examples_are_valid(example: Path) -> None:
    config = parse_config(yaml.safe_load(example.read_text()), source=str(example))
    assert all(isinstance(app, RestAppConfig) for app in config.apps)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"list__pagination": {"style": "cursor", "cursor": "next"}},
            "apps[0].list.pagination.cursor_param: Field required",
        ),
        (
            {"list__pagination": {"style": "pages"}},
            "apps[0].list.pagination: Input tag 'pages' found using 'style' does not match",
        ),
        ({"list__items": "data..users"}, "apps[0].list.items: String should match pattern"),
        ({"list__path": "/users/{id}"}, "apps[0].list.path: Value error, the listing path"),
        ({"list": None}, "apps[0].list: Field required"),
        ({"auth": {"type": "basic"}}, "apps[0].auth.username: Field required"),
        (
            {"auth": {"type": "oauth2_client_credentials", "client_id": "x"}},
            "apps[0].auth.token_url: Field required",
        ),
        ({"auth": {"type": "api_key", "header": "X Key"}}, "apps[0].auth.header: String should"),
        ({"find": {"style": "query"}}, "apps[0].find: Value error, style query needs param"),
        ({"find": {"style": "path", "path": "/u"}}, "style path needs path, with a {value}"),
        (
            {"requests__update__path": "/users/{uid}"},
            "requests.update: unknown placeholder {uid}",
        ),
        (
            {"requests__create__body": {"login": "{userName}", "x": "{id}"}},
            "requests.create: unknown placeholder {id}",
        ),
        ({"requests__create__body": "merged"}, "requests.create.body: merged needs an existing"),
        ({"requests__update__ok": [404]}, "apps[0].requests.update.ok[0]: Input should be less"),
        ({"requests__create": None}, "requests.create: missing (actions include create)"),
        ({"active": None}, "deprovision_strategy: deactivate needs active"),
        (
            {"active": {"style": "status", "path": "s", "active": "on", "inactive": "on"}},
            "apps[0].active: Value error, active and inactive must differ",
        ),
        ({"active": {"style": "boolean", "inverted": "maybe"}}, "apps[0].active.inverted: Input"),
        ({"key": "login"}, "key: 'login' is not a mapped attribute"),
        ({"fields__nickname": "nick"}, "fields.nickname: not a mapped attribute"),
        (
            {"deprovision_strategy": "delete", "active": None},
            "deprovision_strategy: delete needs deprovision: delete as well",
        ),
        (
            {"deprovision_strategy": {"strategy": "strip_roles", "attribute": "roles"}},
            "deprovision_strategy.attribute: 'roles' is not mapped",
        ),
        (
            {"deprovision_strategy": {"strategy": "lock", "path": "status", "value": "x"}},
            "apps[0].deprovision_strategy.unlocked: Field required",
        ),
        (
            {"deprovision_strategy": {"strategy": "strip_roles", "attribute": "displayName"}},
            "active: not used with deprovision_strategy strip_roles",
        ),
        (
            {"connector": "soap"},
            "apps[0].connector: unknown kind 'soap'; use one of: ldap, rest, scim, sql",
        ),
    ],
)
def test_mistakes_name_the_key_path(keys: dict[str, Any], expected: str) -> None:
    message = error_of(changed(**keys))
    assert message.startswith("roster.yaml: invalid configuration")
    assert expected in message


def test_strategy_shorthand_and_delete_with_deprovision_delete() -> None:
    entry = changed(active=None, deprovision_strategy="delete")
    entry |= {"deprovision": "delete", "actions": ["create", "update", "delete"]}
    app = parse_config({"apps": [entry]}).apps[0]
    assert isinstance(app, RestAppConfig)
    assert app.deprovision_strategy.strategy == "delete"
