"""The ldap kind in roster.yaml: the example loads, defaults are the inetOrgPerson ones,
and every mistake is a ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from directory.config import ConfigError, LdapAppConfig, load_config

EXAMPLE = Path(__file__).parent.parent / "examples" / "ldap" / "roster.yaml"

MINIMAL = """
apps:
  - name: dir
    connector: ldap
    url: ldap://127.0.0.1:3389
    bind_dn: cn=roster,dc=example,dc=org
    base_dn: ou=people,dc=example,dc=org
    token_env: DIR_PASSWORD
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_loads() -> None:
    (app,) = load_config(EXAMPLE).apps
    assert isinstance(app, LdapAppConfig)
    assert app.url.scheme == "ldaps" and app.tls_verify
    assert app.groups == ["vpn-users"]
    assert app.effective_mapping["ou"] == "department"
    assert "departmentNumber" not in app.effective_mapping


def test_defaults_are_inetorgperson_and_the_password_policy_lock(tmp_path: Path) -> None:
    (app,) = load_config(write(tmp_path, MINIMAL)).apps
    assert isinstance(app, LdapAppConfig)
    assert app.match_on == ["uid", "mail"]
    assert app.effective_mapping["uid"] == "user_name"
    assert app.effective_mapping["sn"] == "family_name"
    assert (app.disable_attribute, app.disabled_value, app.enabled_value) == (
        "pwdAccountLockedTime",
        "000001010000Z",
        None,
    )
    assert (app.disabled_ou, app.rdn_attribute, app.start_tls) == (None, "uid", False)


def test_disabled_ou_replaces_the_default_attribute(tmp_path: Path) -> None:
    text = MINIMAL + "    disabled_ou: ou=disabled,dc=example,dc=org\n"
    (app,) = load_config(write(tmp_path, text)).apps
    assert isinstance(app, LdapAppConfig)
    assert (app.disabled_ou, app.disable_attribute) == ("ou=disabled,dc=example,dc=org", None)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("    url: https://ldap.example.org\n", "apps[0].url: Value error, must start with"),
        (
            "    url: ldap://admin:pw@ldap.example.org\n",
            "apps[0].url: Value error, must not contain a user name or password",
        ),
        ("    url: ldap://h/dc=example\n", "apps[0].url: Value error, must be only"),
        ("    bind_dn: roster\n", "apps[0].bind_dn: Value error, 'roster' is not a distinguished"),
        (
            "    disabled_ou: ou=off,dc=example,dc=org\n    disable_attribute: nsAccountLock\n",
            "set one of disable_attribute and disabled_ou, not both",
        ),
        ("    groups: [staff]\n", "groups needs groups_dn"),
        (
            "    mapping: {uid: null}\n    match_on: [mail]\n",
            "rdn_attribute 'uid' is not mapped",
        ),
        ("    mapping: {'bad name': title}\n", "not LDAP attribute names: bad name"),
        ("    start_tls: true\n    url: ldaps://h\n", "start_tls is for ldap:// URLs"),
        ("    base_url: http://x/v2\n", "apps[0].base_url: Extra inputs are not permitted"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    lines = [
        line
        for line in MINIMAL.splitlines(keepends=True)
        if not any(line.startswith(f"    {k.split(':')[0]}:") for k in extra.strip().splitlines())
    ]
    path = write(tmp_path, "".join(lines) + extra)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: invalid configuration")
    assert expected in message


def test_tls_verify_false_is_warned_about_on_every_report(tmp_path: Path) -> None:
    from tasks.report import config_warnings

    text = MINIMAL.replace("ldap://127.0.0.1:3389", "ldaps://ldap.example.org")
    (verified,) = load_config(write(tmp_path, text)).apps
    (unverified,) = load_config(write(tmp_path, text + "    tls_verify: false\n")).apps
    assert config_warnings(verified) == []
    assert config_warnings(unverified)[0].startswith(
        "warning: TLS certificate verification is off (tls_verify: false)"
    )


def test_an_empty_bind_password_is_refused_not_sent(tmp_path: Path) -> None:
    """RFC 4513 §5.1.2: a simple bind with no password is an anonymous bind, which many
    servers accept; Roster must never mistake it for its service account."""
    from pydantic import SecretStr

    from connectors.build import build_connector

    (app,) = load_config(write(tmp_path, MINIMAL)).apps
    with pytest.raises(ConfigError, match="needs its bind password"):
        build_connector(app, SecretStr(""), dry_run=False)


def test_a_plain_bind_to_another_host_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pydantic import SecretStr

    from connectors.build import build_connector

    remote = MINIMAL.replace("ldap://127.0.0.1:3389", "ldap://ldap.example.org")
    for text, warned in ((MINIMAL, False), (remote, True)):
        caplog.clear()
        (app,) = load_config(write(tmp_path, text)).apps
        build_connector(app, SecretStr("pw"), dry_run=False).close()  # connects lazily
        assert ("its password crosses the network unencrypted" in caplog.text) is warned
