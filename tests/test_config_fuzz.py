"""roster.yaml under fuzzing: whatever the bytes, loading gives a RosterConfig or a
ConfigError that names the file (and the key path or line), never another exception, and
the ``roster`` command turns it into one red line, exit code 2 and no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app as roster_app
from directory.config import (
    UNION_LABELS,
    ConfigError,
    RosterConfig,
    ScimAppConfig,
    load_config,
    parse_config,
)

APP = {
    "name": "chat",
    "connector": "scim",
    "base_url": "http://127.0.0.1:8080/chat/v2",
    "token_env": "CHAT_TOKEN",
}

# -- strategies ---------------------------------------------------------------------------

huge_text = st.builds(lambda ch, n: ch * n, st.sampled_from("x=é\t"), st.integers(1000, 100_000))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # nan and inf included
    st.text(max_size=30),
    huge_text,
)
#: what YAML can hold: scalars, lists and mappings (keys of any scalar kind), nested
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=12), st.integers(), st.none()), inner, max_size=4
        ),
    ),
    max_leaves=12,
)
app_names = st.from_regex(r"\A[a-z][a-z0-9_.-]{0,10}\Z")
valid_apps = st.fixed_dictionaries(
    {"name": app_names},
    optional={
        "page_size": st.integers(1, 10_000),
        "concurrency": st.integers(1, 64),
        "timeout": st.floats(0.1, 600),
        "rate_limit": st.none() | st.floats(0.1, 1000),
        "verify_tls": st.booleans(),
        "deprovision": st.just("deactivate"),
        "on_missing": st.sampled_from(["recreate", "report"]),
        "update_method": st.sampled_from(["auto", "patch", "put"]),
        "mapping": st.just({"title": "department", "nickName": {"constant": "x"}}),
        "safety": st.fixed_dictionaries(
            {"max_deprovision_share": st.floats(0, 1), "min_deprovision_count": st.integers(0, 99)}
        ),
    },
).map(lambda extra: APP | extra)
valid_configs = st.fixed_dictionaries(
    {"apps": st.lists(valid_apps, max_size=3, unique_by=lambda app: app["name"])},
    optional={"database_url": st.just("sqlite://")},  # in memory: never a file
)
#: keys an app may have; pydantic's union-branch labels are not shown in key paths
TAKEN_KEYS = set(ScimAppConfig.model_fields) | UNION_LABELS


@st.composite
def broken_configs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid configuration with one thing wrong, and the key path the error must name."""
    config = draw(valid_configs.filter(lambda c: c["apps"]))
    index = draw(st.integers(0, len(config["apps"]) - 1))
    app = config["apps"][index]
    kind = draw(st.sampled_from(["unknown", "missing", "wrong_type", "bad_url", "top_unknown"]))
    if kind == "unknown":
        key = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in TAKEN_KEYS))
        app[key] = draw(documents)
        return config, f"apps[{index}].{key}"
    if kind == "missing":
        key = draw(st.sampled_from(["name", "connector", "base_url", "token_env"]))
        del app[key]
        if key == "connector":  # the union of kinds has no branch to pick: it says so
            return config, f"apps[{index}].connector: missing; say which kind of app this is"
        if key == "token_env":  # optional alone: one of token_env and token_secret is not
            return config, f"apps[{index}]: Value error, set exactly one of token_env"
        return config, f"apps[{index}].{key}: Field required"
    if kind == "wrong_type":
        key = draw(st.sampled_from(["page_size", "concurrency", "verify_tls", "actions", "safety"]))
        app[key] = draw(
            st.lists(st.integers(), min_size=1)
            | st.dictionaries(st.text(max_size=5), st.integers(), min_size=1)
        )
        return config, f"apps[{index}].{key}"
    if kind == "bad_url":
        app["base_url"] = draw(
            st.sampled_from(["not a url", "ftp://x/", "http://", "http://[::1", "http://u:p@x/"])
        )
        return config, f"apps[{index}].base_url"
    key = draw(st.sampled_from(["colour", "app", "Apps", "safety_"]))
    config[key] = draw(documents)
    return config, key


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def _load(path: Path) -> RosterConfig | ConfigError:
    """load_config's result or its ConfigError; any other exception fails the test."""
    try:
        return load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        assert "Traceback" not in message
        assert len(message) < 5000, "a message is for a person to read"
        return exc


# -- properties ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example of a module (hypothesis reruns a test body, not its
    function-scoped fixtures); each example rewrites the same file."""
    return tmp_path_factory.mktemp("fuzz")


@given(data=st.binary(max_size=300))
def test_any_bytes_load_or_raise_a_config_error(workdir: Path, data: bytes) -> None:
    path = workdir / "roster.yaml"
    path.write_bytes(data)
    _load(path)


@given(document=documents | st.fixed_dictionaries({"apps": st.lists(documents, max_size=3)}))
def test_any_yaml_structure_loads_or_raises_a_config_error(workdir: Path, document: Any) -> None:
    path = workdir / "roster.yaml"
    path.write_text(_dump(document), encoding="utf-8")
    _load(path)


@given(case=broken_configs())
def test_one_wrong_key_is_named_with_its_path(
    workdir: Path, case: tuple[dict[str, Any], str]
) -> None:
    config, key_path = case
    path = workdir / "roster.yaml"
    path.write_text(_dump(config), encoding="utf-8")
    error = _load(path)
    assert isinstance(error, ConfigError)
    message = str(error)
    assert message.startswith(f"{path}: invalid configuration\n")
    shown = key_path if len(key_path) < 60 else key_path[:40]
    assert f"  {shown}" in message


@given(config=valid_configs, encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_a_valid_file_loads_in_any_unicode_encoding(
    workdir: Path, config: dict[str, Any], encoding: str
) -> None:
    path = workdir / "roster.yaml"
    path.write_text(_dump(config), encoding=encoding)
    assert load_config(path) == parse_config(config)


@given(config=valid_configs.filter(lambda c: c["apps"]), data=st.data())
def test_latin1_bytes_are_named_with_their_line(
    workdir: Path, config: dict[str, Any], data: st.DataObject
) -> None:
    lines = _dump(config).splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    lines[index] += " # café"
    path = workdir / "roster.yaml"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: line {index + 1}: not utf-8 text")


@given(config=valid_configs.filter(lambda c: c["apps"]), cut=st.floats(0, 1))
def test_a_truncated_file_loads_or_raises_a_config_error(
    workdir: Path, config: dict[str, Any], cut: float
) -> None:
    data = _dump(config).encode("utf-8")
    path = workdir / "roster.yaml"
    path.write_bytes(data[: int(len(data) * cut)])
    _load(path)


# -- the shapes fuzzing found, kept as examples -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apps:\n  - name: caf\xe9\n", "line 2: not utf-8 text (invalid continuation byte)"),
        ("apps: [" + "[" * 5000 + "]" * 5000 + "]\n", "not valid YAML: nested too deeply"),
        ("apps:\n  - page_size: " + "9" * 5000 + "\n", "not valid YAML: Exceeds the limit"),
        ("started: 2024-13-45\n", "not valid YAML: month must be in 1..12"),
        ("apps: [\n", "not valid YAML at line 2, column 1: expected the node content"),
        ("apps: !!python/object:os.system {}\n", "not valid YAML at line 1, column 7"),
        ("apps: \x00\n", "line 1: character 0x0000 is not allowed in YAML"),
        ("a: &x [*x]\n", "a: Extra inputs are not permitted"),
        ("apps: &x [*x]\n", "apps[0]: Input should be a valid dictionary"),
        ("- apps\n", "(top level): Input should be a valid dictionary"),
        ("{1: x}\n", "[1]: Keys should be strings"),
        (f"apps: [{APP}]\nx" + "y" * 500 + ": 1\n", "  x" + "y" * 58 + "…: Extra inputs"),
        ("apps:\n" + "  - 1\n" * 500, "  ... and 480 more"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "roster.yaml"
    path.write_bytes(text.encode("latin-1") if "\xe9" in text else text.encode("utf-8"))
    message = str(_load(path))
    assert expected in message


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ({"timeout": float("inf")}, "apps[0].timeout: Input should be a finite number"),
        ({"rate_limit": float("nan")}, "apps[0].rate_limit: Input should be a finite number"),
        ({"base_url": "https://roster:s3cret@chat.example.com/v2"}, "must not contain a user"),
        ({"mapping": {"title": {"constant": [1]}}}, "apps[0].mapping.title.constant: Input"),
        ({"mapping": {1: "email"}}, "apps[0].mapping[1] (the key): Input should be a valid str"),
    ],
)
def test_values_that_would_fail_later_fail_at_load(
    tmp_path: Path, app: dict[str, Any], expected: str
) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(_dump({"apps": [APP | app]}), encoding="utf-8")
    message = str(_load(path))
    assert expected in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://roster:s3cret@db/roster", "unsupported database 'mysql'"),
        ("postgresql+psycopg://roster:s3cret@[::1/roster", "not a database URL"),
        ("nonsense", "not a database URL"),
    ],
)
def test_an_unusable_database_url_is_named_without_its_password(
    tmp_path: Path, url: str, expected: str
) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(_dump({"database_url": url}), encoding="utf-8")
    message = str(_load(path))
    assert f"database_url: Value error, {expected}" in message
    assert "s3cret" not in message


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    assert str(_load(tmp_path)) == f"{tmp_path}: cannot read the file (Is a directory)"


# -- through the roster command -----------------------------------------------------------


def _roster(*args: str) -> Any:
    return CliRunner().invoke(roster_app, list(args))


@settings(max_examples=15)
@given(case=broken_configs())
def test_the_cli_prints_the_file_and_key_and_exits_2(
    workdir: Path, case: tuple[dict[str, Any], str]
) -> None:
    config, _ = case
    path = workdir / "roster.yaml"
    path.write_text(_dump(config), encoding="utf-8")
    result = _roster("--config", str(path), "directory", "groups")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {path}: invalid configuration")
    assert result.stdout == ""


@settings(max_examples=15)
@given(data=st.binary(min_size=1, max_size=200))
def test_the_cli_never_shows_a_traceback_for_any_bytes(workdir: Path, data: bytes) -> None:
    path = workdir / "roster.yaml"
    path.write_bytes(data)
    assume(isinstance(_load(path), ConfigError))  # a valid file would open a database
    result = _roster("--config", str(path), "directory", "groups")
    assert "Traceback" not in result.output
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: ")


def test_sync_refuses_a_mapping_path_the_app_schema_lacks_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAT_TOKEN", "t")
    path = tmp_path / "roster.yaml"
    path.write_text(_dump({"apps": [APP | {"mapping": {"nmae.givenName": "given_name"}}]}))
    result = _roster("--config", str(path), "sync")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.startswith(
        f"error: {path}: apps[0].mapping: unsupported attribute paths: 'nmae.givenName'"
    )


def test_a_connector_is_never_built_from_a_mapping_the_app_schema_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inside a sync this is a ConfigError, which fails the one app, not the whole run."""
    from pydantic import SecretStr

    from connectors.build import build_connector

    app = ScimAppConfig.model_validate(APP | {"mapping": {"name.nickName": "given_name"}})
    with pytest.raises(ConfigError, match=r"app 'chat': mapping: unsupported attribute paths"):
        build_connector(app, SecretStr("a-test-token"), dry_run=True)
