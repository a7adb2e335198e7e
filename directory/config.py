"""``roster.yaml``: which apps Roster provisions and how, validated with pydantic.

Found through ``--config``, then ``ROSTER_CONFIG``, then ``./roster.yaml``. Every error
names the file, the key path (``apps[0].base_url``) and what is wrong. Tokens are never
in the file: an app names where its token is, an environment variable (``token_env``) or
a Prefect Secret block (``token_secret``), and ``tasks.tokens`` reads it when the app's
connector is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from directory.appbase import (
    DEFAULT_MAPPING,
    DIRECTORY_FIELDS,
    ENTERPRISE,
    EXPRESSION_FIELDS,
    REFERENCE_FIELDS,
    WORK_EMAIL,
    Action,
    AppConfig,
    ApplyMode,
    ConfigError,
    Constant,
    DeprovisionMode,
    Expression,
    FieldSource,
    GroupPush,
    GroupsSource,
    HttpAppConfig,
    MissingPolicy,
    Safety,
    Source,
    TokenError,
    UpdateMethod,
    is_create_only,
    source_field,
)
from directory.appkinds import (
    CONNECTOR_KINDS,
    AnyAppConfig,
    LdapAppConfig,
    RestAppConfig,
    ScimAppConfig,
    SqlAppConfig,
)
from directory.appkinds.rest_parts import UNION_TAGS

__all__ = [
    "DEFAULT_MAPPING",
    "DIRECTORY_FIELDS",
    "ENTERPRISE",
    "EXPRESSION_FIELDS",
    "REFERENCE_FIELDS",
    "WORK_EMAIL",
    "Action",
    "AnyAppConfig",
    "AppConfig",
    "ApplyMode",
    "ConfigError",
    "Constant",
    "DeprovisionMode",
    "Expression",
    "FieldSource",
    "GroupPush",
    "GroupsSource",
    "HttpAppConfig",
    "LdapAppConfig",
    "MissingPolicy",
    "RestAppConfig",
    "RosterConfig",
    "Safety",
    "ScimAppConfig",
    "Source",
    "SqlAppConfig",
    "TokenError",
    "UpdateMethod",
    "is_create_only",
    "load_config",
    "parse_config",
    "source_field",
]

#: a message lists this many problems; a file of 10,000 bad entries is one bad file
MAX_ERRORS = 20
#: keys longer than this are shortened in messages
MAX_KEY = 60
#: pydantic's names for the branches of a mapping entry (``MappingSource``) and ``str | bool``
UNION_LABELS = frozenset(
    {"str", "bool", "Constant", "FieldSource", "Expression", "GroupsSource", "constrained-str"}
)


class RosterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str | None = None
    #: apps reconciled at once in one sync (each app's own ``concurrency`` is per request)
    parallel_apps: int = Field(default=4, ge=1, le=256)
    #: where the apps' tasks run: ``threads`` in the flow's process, or ``dask``
    #: (prefect-dask: a local cluster, or the one at ``dask_address``)
    task_runner: Literal["threads", "dask"] = "threads"
    #: a running Dask scheduler (``tcp://host:8786``) for ``task_runner: dask``
    dask_address: str | None = None
    safety: Safety = Field(default_factory=lambda: Safety.model_validate({}))
    apps: list[AnyAppConfig] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, url: str | None) -> str | None:
        """Only SQLite and PostgreSQL; the message never repeats the URL (it may hold a
        password)."""
        if url is None:
            return url
        try:
            backend = make_url(url).get_backend_name()
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL (e.g. sqlite:////var/lib/roster.db or "
                "postgresql+psycopg://user@host/roster)"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {backend!r}: use SQLite or PostgreSQL")
        return url

    @field_validator("apps")
    @classmethod
    def _unique_names(cls, apps: list[AnyAppConfig]) -> list[AnyAppConfig]:
        names = [app.name for app in apps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"app names must be unique: {', '.join(duplicates)}")
        return apps

    @model_validator(mode="after")
    def _dask_address_needs_dask(self) -> RosterConfig:
        if self.dask_address and self.task_runner != "dask":
            raise ValueError("dask_address is set but task_runner is not dask")
        return self

    def app(self, name: str) -> AppConfig:
        for app in self.apps:
            if app.name == name:
                return app
        known = ", ".join(a.name for a in self.apps) or "none"
        raise ConfigError(f"no app named {name!r} in the configuration (apps: {known})")

    def safety_for(self, app: AppConfig) -> Safety:
        return app.safety or self.safety


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``--config``, then ``ROSTER_CONFIG``, then ``./roster.yaml``; None if none exists."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("ROSTER_CONFIG"):
        return Path(env)
    default = Path("roster.yaml")
    return default if default.exists() else None


def load_config(explicit: str | os.PathLike[str] | None = None) -> RosterConfig:
    """Load and validate the configuration; an absent default file means no apps."""
    path = find_config_path(explicit)
    if path is None:
        return RosterConfig()
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found")
    raw = read_yaml(path)
    return parse_config(raw if raw is not None else {}, source=str(path))


def read_yaml(path: Path) -> Any:
    """The file's one YAML document; every way a file can be unreadable is a ConfigError
    naming the file and, where YAML knows it, the line. PyYAML reads the bytes itself:
    UTF-8, or UTF-16 with a BOM, as the YAML spec allows."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(data)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "unreadable"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(f"{path}: {_reader_problem(data, exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValueError as exc:  # a date like 2024-13-45, an integer of 5,000 digits
        raise ConfigError(f"{path}: not valid YAML: {str(exc).split(';')[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None


def _reader_problem(data: bytes, exc: yaml.reader.ReaderError) -> str:
    """ReaderError counts bytes when decoding failed, characters otherwise."""
    if exc.encoding == "unicode":
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        text = data.decode("utf-16" if utf16 else "utf-8-sig", errors="replace")
        line = text[: exc.position].count("\n") + 1
        return f"line {line}: character {exc.character:#06x} is not allowed in YAML"
    line = data[: exc.position].count(b"\n") + 1
    return f"line {line}: not {exc.encoding} text ({exc.reason}); save the file as UTF-8"


def parse_config(raw: Any, source: str = "<config>") -> RosterConfig:
    try:
        return RosterConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    errors = exc.errors(include_input=False, include_url=False)
    lines = [f"{source}: invalid configuration"]
    for error in errors[:MAX_ERRORS]:
        lines.append(f"  {_key_path(error['loc'])}{_message(error)}")
    if len(errors) > MAX_ERRORS:
        lines.append(f"  ... and {len(errors) - MAX_ERRORS} more")
    return "\n".join(lines)


def _message(error: Any) -> str:
    """The problem after the key path; an unknown or missing ``connector`` lists the kinds."""
    kinds = ", ".join(sorted(CONNECTOR_KINDS))
    if len(error["loc"]) != 2 or error["loc"][0] != "apps":
        return f": {error['msg']}"  # a tagged union inside an app (pagination, auth, ...)
    if error["type"] == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag", "")
        return f".connector: unknown kind {tag!r}; use one of: {kinds}"
    if error["type"] == "union_tag_not_found":
        return f".connector: missing; say which kind of app this is: {kinds}"
    return f": {error['msg']}"


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for at, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in UNION_LABELS or part.startswith("function-"):
            continue  # pydantic's union-branch labels, not keys the user wrote
        elif at == 2 and loc[0] == "apps" and part in CONNECTOR_KINDS:
            continue  # the app's kind (``connector``), which pydantic puts in the path
        elif at > 0 and part in UNION_TAGS.get(str(loc[at - 1]), ()):
            continue  # likewise the branch of a tagged union (``pagination: {style: ...}``)
        elif part == "[key]":
            path += " (the key)"  # the key itself is wrong, not its value
        else:
            part = part if len(part) <= MAX_KEY else part[: MAX_KEY - 1] + "…"
            path += f".{part}" if path else part
    return path or "(top level)"
