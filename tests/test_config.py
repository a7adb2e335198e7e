"""roster.yaml: the minimal form works; every error names the file, the key path and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from directory.config import (
    DEFAULT_MAPPING,
    ENTERPRISE,
    Action,
    ConfigError,
    DeprovisionMode,
    load_config,
)

MINIMAL = """
apps:
  - name: chat
    connector: scim
    base_url: http://127.0.0.1:8080/chat/v2
    token_env: CHAT_TOKEN        # bearer token from the environment
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return str(error.value)


def test_minimal_config_gets_sensible_defaults(tmp_path: Path) -> None:
    app = load_config(write(tmp_path, MINIMAL)).apps[0]
    assert app.effective_mapping == DEFAULT_MAPPING
    assert app.match_on == ["userName", 'emails[type eq "work"].value']
    assert app.actions == {Action.CREATE, Action.UPDATE, Action.DEACTIVATE}
    assert app.deprovision is DeprovisionMode.DEACTIVATE
    assert (app.page_size, app.concurrency, app.rate_limit, app.tls_verify) == (500, 4, None, True)
    assert (app.token_env, app.token_secret, app.ca_bundle) == ("CHAT_TOKEN", None, None)


def test_mapping_merges_over_defaults_and_null_drops_an_entry(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + f"""    mapping:
      title: department
      "{ENTERPRISE}:costCenter": {{constant: R&D}}
      "{ENTERPRISE}:manager.value": null
"""
    )
    mapping = load_config(write(tmp_path, text)).apps[0].effective_mapping
    assert mapping["title"] == "department"
    assert mapping[f"{ENTERPRISE}:costCenter"].constant == "R&D"  # type: ignore[union-attr]
    assert f"{ENTERPRISE}:manager.value" not in mapping


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("    base_url: not a url\n", "apps[0].base_url: Input should be a valid URL"),
        ("    page_size: 0\n", "apps[0].page_size: Input should be greater than or equal to 1"),
        (
            "    deprovision: shred\n",
            "apps[0].deprovision: Input should be 'deactivate' or 'delete'",
        ),
        ("    colour: blue\n", "apps[0].colour: Extra inputs are not permitted"),
        ("    mapping: {title: shoe_size}\n", "unknown directory field 'shoe_size'"),
        ("    match_on: [nickName]\n", "match_on names unmapped attributes: nickName"),
        ("    deprovision: delete\n", "deprovision: delete needs 'delete' in actions"),
        (
            "    token_secret: chat-token\n",
            "apps[0]: Value error, set exactly one of token_env (an environment variable)"
            " and token_secret (a Prefect Secret block)",
        ),
        ("    token_secret: Chat_Token\n", "apps[0].token_secret: String should match pattern"),
        ("    tls_verify: maybe\n", "apps[0].tls_verify: Input should be a valid boolean"),
        (
            "    ca_bundle: /nonexistent/ca.pem\n",
            "apps[0].ca_bundle: Path does not point to a file",
        ),
    ],
)
def test_errors_name_the_file_the_key_path_and_the_problem(
    tmp_path: Path, extra: str, expected: str
) -> None:
    text = (
        MINIMAL.replace("    base_url: http://127.0.0.1:8080/chat/v2\n", "")
        if "base_url" in extra
        else MINIMAL
    )
    path = write(tmp_path, text + extra)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: invalid configuration")
    assert expected in message


def test_missing_required_key_and_duplicate_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apps:\n  - name: a\n    connector: scim\n    base_url: http://x/v2\n"
        "    token_env: T\n  - name: a\n    connector: scim\n"
        "    base_url: http://y/v2\n",
    )
    message = error_of(path)
    assert "apps[1]: Value error, set exactly one of token_env" in message
    path = write(tmp_path, MINIMAL + MINIMAL.replace("apps:\n", ""))
    assert "app names must be unique: chat" in error_of(path)


def test_config_is_found_by_option_then_env_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    env_file = write(tmp_path / "a", MINIMAL.replace("chat", "from-env"))
    monkeypatch.chdir(tmp_path)
    write(tmp_path, MINIMAL.replace("chat", "from-cwd"))
    assert load_config().apps[0].name == "from-cwd"
    monkeypatch.setenv("ROSTER_CONFIG", str(env_file))
    assert load_config().apps[0].name == "from-env"
    assert load_config(tmp_path / "roster.yaml").apps[0].name == "from-cwd"


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "apps: [\n")
    assert "not valid YAML" in error_of(bad)
    missing = tmp_path / "nope.yaml"
    assert "configuration file not found" in error_of(missing)


def test_token_secret_and_tls_settings_are_read(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the configuration", encoding="utf-8")
    text = MINIMAL.replace("token_env: CHAT_TOKEN", "token_secret: chat-token")
    app = load_config(write(tmp_path, text + f"    ca_bundle: {ca}\n")).apps[0]
    assert (app.token_env, app.token_secret, app.token_source) == (
        None,
        "chat-token",
        "Prefect Secret block 'chat-token'",
    )
    assert (app.tls_verify, app.ca_bundle) == (True, ca)
    off = load_config(write(tmp_path, MINIMAL + "    tls_verify: false\n")).apps[0]
    older = load_config(write(tmp_path, MINIMAL + "    verify_tls: false\n")).apps[0]
    assert off.tls_verify is older.tls_verify is False
    both = write(tmp_path, MINIMAL + f"    tls_verify: false\n    ca_bundle: {ca}\n")
    assert "apps[0]: Value error, ca_bundle is set but tls_verify is false" in error_of(both)


EXPRESSION = 'Lower(Join(".", [given_name], [family_name]))'


def test_mapping_entries_with_options(tmp_path: Path) -> None:
    from directory.config import ApplyMode, Expression, FieldSource

    text = MINIMAL + (
        "    mapping:\n"
        f"      userName: {{expression: '{EXPRESSION}', default: x, apply: create_only}}\n"
        "      title: {field: title, default: Staff}\n"
        "      nickName: {constant: n, apply: create_only}\n"
        "      displayName: display_name\n"
    )
    app = load_config(write(tmp_path, text)).apps[0]
    mapping = app.effective_mapping
    assert mapping["userName"] == Expression(
        expression=EXPRESSION, default="x", apply=ApplyMode.CREATE_ONLY
    )
    assert mapping["title"] == FieldSource(field="title", default="Staff")
    assert mapping["displayName"] == "display_name"
    assert app.create_only == {"userName", "nickName"}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            """{expression: 'Lower(Joinn(".", [given_name]))'}""",
            "apps[0].mapping.userName.expression: at column 7: unknown function 'Joinn';"
            " known functions: append_suffix_if_taken, coalesce,",
        ),
        (
            "{expression: 'Left([given_name])'}",
            "apps[0].mapping.userName.expression: at column 1: Left takes 2 arguments, got 1",
        ),
        (
            "{expression: 'Lower([shoe_size])'}",
            "apps[0].mapping.userName.expression: at column 8: unknown field [shoe_size]",
        ),
        (
            """{expression: 'Join(".", [given_name]'}""",
            "apps[0].mapping.userName.expression: at column 23: expected ',' or ')'",
        ),
        ("{field: shoe_size}", "apps[0].mapping.userName.field: Value error, unknown directory"),
        (
            "{expression: 'Lower([title])', apply: sometimes}",
            "apps[0].mapping.userName.apply: Input should be 'always' or 'create_only'",
        ),
        (
            "{expression: 'Lower([title])', constant: x}",
            "apps[0].mapping.userName: give a directory field name, or a mapping with exactly"
            " one of field, constant, expression and groups",
        ),
        ("{expression: 'Lower([title])', colour: red}", "apps[0].mapping.userName.colour: Extra"),
    ],
)
def test_mapping_entry_errors_name_the_key_and_the_column(
    tmp_path: Path, entry: str, expected: str
) -> None:
    message = error_of(write(tmp_path, MINIMAL + f"    mapping:\n      userName: {entry}\n"))
    assert expected in message
    assert message.count("\n") <= 3  # one problem, not one per kind of entry


def test_an_expression_error_shows_a_caret_under_the_column(tmp_path: Path) -> None:
    entry = """{expression: 'Lower(Joinn(".", [given_name]))'}"""
    message = error_of(write(tmp_path, MINIMAL + f"    mapping:\n      userName: {entry}\n"))
    assert message.splitlines()[-2:] == [
        '      Lower(Joinn(".", [given_name]))',
        "            ^",
    ]


def test_scoping_and_remediation_are_read(tmp_path: Path) -> None:
    extra = """    scoping:
      - all:
          - {attribute: department, op: equals, value: Engineering}
          - {attribute: title, op: regex, value: "^Sen"}
      - all: [{attribute: employee_number, op: greater, value: 1000}]
    remediation: {attributes: {title: report, displayName: ignore}, status: report}
"""
    app = load_config(write(tmp_path, MINIMAL + extra)).app("chat")
    assert [len(f.all) for f in app.scoping] == [2, 1]
    assert app.scoping[0].all[1].describe() == "title regex ^Sen"
    assert app.remediation.for_target("title") == "report"
    assert app.remediation.for_target("userName") == "enforce"
    assert app.remediation.status == "report"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "    scoping: [{all: [{attribute: title, op: regex, value: '^(Sen'}]}]\n",
            "apps[0].scoping[0].all[0]: Value error, clause (title regex ^(Sen): invalid"
            " regular expression: missing ), unterminated subpattern",
        ),
        (
            "    scoping: [{all: [{attribute: colour, op: equals, value: red}]}]\n",
            "apps[0].scoping[0].all[0]: Value error, unknown directory field 'colour'",
        ),
        (
            "    scoping: [{all: [{attribute: title, op: like, value: x}]}]\n",
            "apps[0].scoping[0].all[0].op: Input should be 'equals'",
        ),
        (
            "    scoping: [{all: [{attribute: title, op: is_null, value: x}]}]\n",
            "apps[0].scoping[0].all[0]: Value error, clause (title is_null): takes no value",
        ),
        (
            "    scoping: [{all: [{attribute: title, op: in, value: Eng}]}]\n",
            "clause (title in Eng): needs a non-empty list of values",
        ),
        (
            "    scoping: [{all: [{attribute: title, op: greater, value: soon}]}]\n",
            "clause (title greater soon): needs a number or an ISO date",
        ),
        ("    scoping: [{all: []}]\n", "apps[0].scoping[0].all: List should have at least 1 item"),
        (
            "    remediation: {attributes: {title: fix}}\n",
            "apps[0].remediation.attributes.title: Input should be 'enforce', 'report' or 'ignore'",
        ),
        (
            "    remediation: {status: ignore}\n",
            "apps[0].remediation.status: Value error, use enforce or report",
        ),
        (
            "    remediation: {attributes: {nickName: report}}\n",
            "remediation.attributes names unmapped attributes: nickName",
        ),
    ],
)
def test_scoping_and_remediation_errors_name_the_clause(
    tmp_path: Path, extra: str, expected: str
) -> None:
    message = error_of(write(tmp_path, MINIMAL + extra))
    assert expected in message
