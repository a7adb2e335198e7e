"""An app's token comes from its environment variable or its Prefect Secret block (saved on
the session's real Prefect test server); a missing or unusable one is a TokenError naming
the app and the variable or block, never the value; nothing's repr shows the token."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prefect.blocks.system import Secret
from pydantic import SecretStr

from directory.config import AppConfig, ScimAppConfig, TokenError
from flows.sync import sync
from tasks import session
from tasks.tokens import check_env_token, resolve_token
from tests.scim_apps import TOKEN
from tests.sync_env import Installation, people


def app_config(**token: str) -> AppConfig:
    return ScimAppConfig.model_validate(
        {"name": "chat", "connector": "scim", "base_url": "http://scim.test/chat/v2", **token}
    )


def test_a_token_from_the_environment_is_a_secret_str_without_surrounding_whitespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAT_TOKEN", "  s3cret-from-env\n")  # as read from a mounted file
    token = resolve_token(app_config(token_env="CHAT_TOKEN"))
    assert isinstance(token, SecretStr)
    assert token.get_secret_value() == "s3cret-from-env"
    assert "s3cret" not in repr(token) and "s3cret" not in str(token)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "app 'chat': environment variable CHAT_TOKEN is not set"),
        (" \n", "app 'chat': environment variable CHAT_TOKEN is empty"),
        (
            "s3cret\nsecond-line",
            "app 'chat': environment variable CHAT_TOKEN holds spaces, control or non-ASCII"
            " characters inside the token: it cannot be sent in an Authorization header",
        ),
        ("s3cret with-space", "environment variable CHAT_TOKEN holds spaces"),
        ("s3cret-café", "environment variable CHAT_TOKEN holds spaces"),
    ],
)
def test_a_missing_or_unsendable_env_token_is_named_never_shown(
    monkeypatch: pytest.MonkeyPatch, value: str | None, problem: str
) -> None:
    if value is None:
        monkeypatch.delenv("CHAT_TOKEN", raising=False)
    else:
        monkeypatch.setenv("CHAT_TOKEN", value)
    app = app_config(token_env="CHAT_TOKEN")
    with pytest.raises(TokenError) as caught:
        resolve_token(app)
    with pytest.raises(TokenError):
        check_env_token(app)  # what `roster sync` checks before Prefect starts
    assert problem in str(caught.value)
    assert (caught.value.app, caught.value.source) == ("chat", "environment variable CHAT_TOKEN")
    assert "s3cret" not in str(caught.value) and caught.value.__cause__ is None


def test_the_cli_check_leaves_secret_blocks_for_the_sync() -> None:
    check_env_token(app_config(token_secret="not-read-before-prefect-starts"))


def test_a_token_from_a_prefect_secret_block(prefect_harness: None) -> None:
    Secret(value="s3cret-from-block").save("roster-chat-token", overwrite=True)
    Secret(value="12345678901234567890").save("roster-digits", overwrite=True)
    Secret(value={"user": "u", "password": "p"}).save("roster-json", overwrite=True)
    token = resolve_token(app_config(token_secret="roster-chat-token"))
    assert token.get_secret_value() == "s3cret-from-block"
    # Secret.get() parses JSON, so an all-digit token comes back as an int: the stored text wins
    assert resolve_token(app_config(token_secret="roster-digits")).get_secret_value() == (
        "12345678901234567890"
    )
    with pytest.raises(TokenError, match="Prefect Secret block 'roster-json' holds a JSON value"):
        resolve_token(app_config(token_secret="roster-json"))
    with pytest.raises(TokenError) as missing:
        resolve_token(app_config(token_secret="roster-nope"))
    assert str(missing.value) == "app 'chat': Prefect Secret block 'roster-nope' was not found"
    assert missing.value.__cause__ is None


def test_sync_reads_a_secret_block_and_a_bad_token_fails_only_its_app(
    make_installation: Callable[..., Installation], monkeypatch: pytest.MonkeyPatch
) -> None:
    """chat's token is a Secret block; wiki names a block nobody saved; crm's variable holds
    a token with a line break (h11 would quote it in "Illegal header value b'Bearer ...'")."""
    Secret(value=TOKEN).save("roster-sync-chat", overwrite=True)
    monkeypatch.setenv("CRM_TOKEN", TOKEN + "\nx")
    env = make_installation(
        ["chat", "wiki", "crm"],
        chat={"token_env": None, "token_secret": "roster-sync-chat"},
        wiki={"token_env": None, "token_secret": "roster-sync-missing"},
        crm={"token_env": "CRM_TOKEN"},
    )
    env.import_people(people(4, apps="chat;wiki;crm"))
    apps = sync(config_path=env.config_path)["apps"]
    assert apps["chat"]["summary"]["created"] == 4
    assert len(env.accounts("chat")) == 4
    assert apps["wiki"] == {
        "status": "failed",
        "error": "app 'wiki': Prefect Secret block 'roster-sync-missing' was not found",
        "notes": [],
    }
    assert apps["crm"]["status"] == "failed"
    assert apps["crm"]["error"].startswith("app 'crm': environment variable CRM_TOKEN holds")
    assert TOKEN not in str(apps)
    assert {tenant for (_, tenant) in env.scim.requests} == {"chat"}  # nothing sent elsewhere
    assert env.store.read_app_health("wiki").failures == 0  # a config error is no app outage


def test_no_repr_of_config_client_or_connector_shows_the_token(
    make_installation: Callable[..., Installation],
) -> None:
    Secret(value=TOKEN).save("roster-repr-chat", overwrite=True)
    env = make_installation(["chat"], chat={"token_env": None, "token_secret": "roster-repr-chat"})
    from directory.config import load_config

    app = load_config(env.config_path).apps[0]
    connector = session.open_connector(app, dry_run=True)
    try:
        assert connector.find_account("userName", "nobody") is None  # the token works
        client = connector._wire.client  # type: ignore[attr-defined]
        shown = [repr(app), str(app), app.model_dump_json(), repr(connector), str(connector)]
        shown += [repr(vars(connector)), repr(vars(connector._wire)), repr(client)]  # type: ignore[attr-defined]
        shown += [repr(client.auth), str(client.auth)]
        shown += [repr(vars(client.auth)), repr(client.headers)]
    finally:
        connector.close()
    assert [text for text in shown if TOKEN in text] == []
    assert "SecretStr('**********')" in repr(vars(client.auth))


def test_offboard_and_provision_go_on_when_one_apps_block_is_gone(
    make_installation: Callable[..., Installation],
) -> None:
    """Secret blocks are not checked before a flow starts, so a deleted one must fail its
    app only: the person is still deprovisioned everywhere else."""
    from flows.offboard import offboard
    from flows.provision import provision_user

    Secret(value=TOKEN).save("roster-offboard-wiki", overwrite=True)
    env = make_installation(
        ["chat", "wiki"], wiki={"token_env": None, "token_secret": "roster-offboard-wiki"}
    )
    env.import_people(people(3))
    sync(config_path=env.config_path)
    Secret.delete("roster-offboard-wiki")
    gone = "app 'wiki': Prefect Secret block 'roster-offboard-wiki' was not found"

    provisioned = provision_user(user="user0002", config_path=env.config_path)["apps"]
    assert (provisioned["wiki"]["outcome"], provisioned["wiki"]["error"]) == ("failed", gone)
    assert provisioned["chat"]["outcome"] != "failed"
    result = offboard(user="user0001", config_path=env.config_path)["apps"]
    assert (result["wiki"]["outcome"], result["wiki"]["error"]) == ("failed", gone)
    assert result["chat"]["outcome"] == "succeeded"
    assert env.accounts("chat")["user0001"]["active"] is False
    assert env.accounts("wiki")["user0001"]["active"] is True  # could not be reached
