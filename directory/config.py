"""``roster.yaml``: which apps Roster provisions and how, validated with pydantic.

Found through ``--config``, then ``ROSTER_CONFIG``, then ``./roster.yaml``. Every error
names the file, the key path (``apps[0].base_url``) and what is wrong. Tokens are never
in the file: an app names where its token is, an environment variable (``token_env``) or
a Prefect Secret block (``token_secret``), and ``tasks.tokens`` reads it when the app's
connector is built.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
WORK_EMAIL = 'emails[type eq "work"].value'

#: Directory fields a mapping may read. ``manager`` is a reference: it resolves to the
#: manager's account id in the same app.
DIRECTORY_FIELDS = (
    "user_id",
    "user_name",
    "email",
    "given_name",
    "family_name",
    "display_name",
    "department",
    "title",
    "employee_number",
    "manager",
    "active",
)
REFERENCE_FIELDS = frozenset({"manager"})

#: RFC 7643 §4.1 core User plus §4.3 enterprise extension.
DEFAULT_MAPPING: dict[str, str] = {
    "userName": "user_name",
    "externalId": "user_id",
    "name.givenName": "given_name",
    "name.familyName": "family_name",
    "displayName": "display_name",
    WORK_EMAIL: "email",
    "title": "title",
    "active": "active",
    f"{ENTERPRISE}:department": "department",
    f"{ENTERPRISE}:employeeNumber": "employee_number",
    f"{ENTERPRISE}:manager.value": "manager",
}


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    DELETE = "delete"


class DeprovisionMode(StrEnum):
    DEACTIVATE = "deactivate"
    DELETE = "delete"


class MissingPolicy(StrEnum):
    """What to do when a linked account is gone from the app (404 on update)."""

    RECREATE = "recreate"
    REPORT = "report"


class UpdateMethod(StrEnum):
    """RFC 7644 §3.5: PATCH is optional; ``auto`` reads /ServiceProviderConfig."""

    AUTO = "auto"
    PATCH = "patch"
    PUT = "put"


#: a message lists this many problems; a file of 10,000 bad entries is one bad file
MAX_ERRORS = 20
#: keys longer than this are shortened in messages
MAX_KEY = 60
#: pydantic's names for the branches of ``str | Constant | None`` and ``str | bool``
UNION_LABELS = frozenset({"str", "bool", "Constant", "constrained-str"})


class ConfigError(Exception):
    """A configuration file is missing or invalid. The message says where and why."""


class TokenError(ConfigError):
    """An app's token is missing or unusable. The message names the app and where the
    token should be (variable or block), never the token itself."""

    def __init__(self, app: str, source: str, problem: str) -> None:
        super().__init__(f"app {app!r}: {source} {problem}")
        self.app = app
        self.source = source


class Constant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    constant: str | bool


class Safety(BaseModel):
    """The hold on destructive actions: more than ``max_deprovision_share`` of an app's
    linked accounts, and more than ``min_deprovision_count`` of them, is held for review."""

    model_config = ConfigDict(extra="forbid")
    max_deprovision_share: float = Field(0.2, ge=0, le=1)
    min_deprovision_count: int = Field(10, ge=0)


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    connector: Literal["scim"]
    #: no user:password@ part: credentials live in the environment (``token_env``)
    base_url: HttpUrl
    #: where the bearer token is: exactly one of an environment variable and a Prefect
    #: Secret block (Prefect's block names: lowercase letters, digits and dashes)
    token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_secret: str | None = Field(None, pattern=r"^[a-z0-9-]+$", max_length=255)
    #: target attribute path -> directory field, ``{constant: value}``, or null to drop
    #: a default entry. Merged over DEFAULT_MAPPING.
    mapping: dict[str, str | Constant | None] = Field(default_factory=dict)
    match_on: list[str] = Field(default_factory=lambda: ["userName", WORK_EMAIL])
    actions: set[Action] = Field(
        default_factory=lambda: {Action.CREATE, Action.UPDATE, Action.DEACTIVATE}
    )
    deprovision: DeprovisionMode = DeprovisionMode.DEACTIVATE
    on_missing: MissingPolicy = MissingPolicy.RECREATE
    update_method: UpdateMethod = UpdateMethod.AUTO
    page_size: int = Field(500, ge=1, le=10_000)
    concurrency: int = Field(4, ge=1, le=64)
    rate_limit: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="requests per second"
    )
    timeout: float = Field(30.0, gt=0, allow_inf_nan=False, description="seconds per request")
    max_retries: int = Field(4, ge=0, le=20)
    #: TLS certificate verification; ``verify_tls`` is the older spelling
    tls_verify: bool = Field(True, validation_alias=AliasChoices("tls_verify", "verify_tls"))
    #: PEM file of the CA certificate(s) to trust for this app instead of the public ones
    ca_bundle: FilePath | None = None
    safety: Safety | None = None

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, url: HttpUrl) -> HttpUrl:
        if url.username or url.password:
            raise ValueError(
                "must not contain a user name or password: put the token in the "
                "environment variable that token_env names"
            )
        return url

    @field_validator("mapping")
    @classmethod
    def _known_fields(
        cls, mapping: dict[str, str | Constant | None]
    ) -> dict[str, str | Constant | None]:
        for target, source in mapping.items():
            if isinstance(source, str) and source not in DIRECTORY_FIELDS:
                raise ValueError(
                    f"{target!r} maps from unknown directory field {source!r}; "
                    f"known fields: {', '.join(DIRECTORY_FIELDS)}"
                )
        return mapping

    @model_validator(mode="after")
    def _one_token_source(self) -> AppConfig:
        if (self.token_env is None) == (self.token_secret is None):
            raise ValueError(
                "set exactly one of token_env (an environment variable) and token_secret"
                " (a Prefect Secret block) for the bearer token"
            )
        return self

    @model_validator(mode="after")
    def _ca_bundle_needs_verification(self) -> AppConfig:
        if self.ca_bundle is not None and not self.tls_verify:
            raise ValueError("ca_bundle is set but tls_verify is false: keep one")
        return self

    @model_validator(mode="after")
    def _match_on_mapped(self) -> AppConfig:
        missing = [path for path in self.match_on if path not in self.effective_mapping]
        if missing:
            raise ValueError(f"match_on names unmapped attributes: {', '.join(missing)}")
        if self.deprovision is DeprovisionMode.DELETE and Action.DELETE not in self.actions:
            raise ValueError("deprovision: delete needs 'delete' in actions")
        return self

    @property
    def effective_mapping(self) -> dict[str, str | Constant]:
        """DEFAULT_MAPPING with this app's entries merged over it."""
        merged: dict[str, str | Constant] = dict(DEFAULT_MAPPING)
        for target, source in self.mapping.items():
            if source is None:
                merged.pop(target, None)
            else:
                merged[target] = source
        return merged

    @property
    def token_source(self) -> str:
        """Where the token is, for messages: never the token itself."""
        if self.token_env is not None:
            return f"environment variable {self.token_env}"
        return f"Prefect Secret block {self.token_secret!r}"


class RosterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str | None = None
    safety: Safety = Field(default_factory=lambda: Safety.model_validate({}))
    apps: list[AppConfig] = Field(default_factory=list)

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
    def _unique_names(cls, apps: list[AppConfig]) -> list[AppConfig]:
        names = [app.name for app in apps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"app names must be unique: {', '.join(duplicates)}")
        return apps

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
        lines.append(f"  {_key_path(error['loc'])}: {error['msg']}")
    if len(errors) > MAX_ERRORS:
        lines.append(f"  ... and {len(errors) - MAX_ERRORS} more")
    return "\n".join(lines)


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in UNION_LABELS or part.startswith("function-"):
            continue  # pydantic's union-branch labels, not keys the user wrote
        elif part == "[key]":
            path += " (the key)"  # the key itself is wrong, not its value
        else:
            part = part if len(part) <= MAX_KEY else part[: MAX_KEY - 1] + "…"
            path += f".{part}" if path else part
    return path or "(top level)"
