"""What every app in ``roster.yaml`` has, whatever its kind (SCIM, REST, SQL, LDAP): its
name, where its secret is, the mapping from directory fields to the app's attributes,
how accounts are matched and deprovisioned, and the safety hold.

Each kind (``directory.appkinds``) adds how to reach the app and states its defaults:
the attribute names its accounts carry (``default_mapping``) and what to match on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    FilePath,
    HttpUrl,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from directory.expressions import CompiledExpression, ExpressionError, compile_expression
from directory.fields import DIRECTORY_FIELDS as DIRECTORY_FIELDS
from directory.scoping import RemediationPolicy, ScopeFilter

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
WORK_EMAIL = 'emails[type eq "work"].value'

REFERENCE_FIELDS = frozenset({"manager"})
#: fields an expression may read: a reference resolves to an account only when mapped
#: directly, so ``[manager]`` in an expression is refused
EXPRESSION_FIELDS = frozenset(DIRECTORY_FIELDS) - REFERENCE_FIELDS

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


class ConfigError(Exception):
    """A configuration file is missing or invalid. The message says where and why."""


class TokenError(ConfigError):
    """An app's token is missing or unusable. The message names the app and where the
    token should be (variable or block), never the token itself."""

    def __init__(self, app: str, source: str, problem: str) -> None:
        super().__init__(f"app {app!r}: {source} {problem}")
        self.app = app
        self.source = source


class ApplyMode(StrEnum):
    """When a target is written: ``create_only`` targets go into the create request and are
    never compared or updated afterwards (a generated userName, an initial value)."""

    ALWAYS = "always"
    CREATE_ONLY = "create_only"


class Constant(BaseModel):
    """``{constant: value}``: the same value for everyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    constant: str | bool
    apply: ApplyMode = ApplyMode.ALWAYS


class FieldSource(BaseModel):
    """``{field: name, default: ..., apply: ...}``: a directory field with options (the
    short form ``target: name`` is the same without them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str
    #: the value when the field is null or ""
    default: str | bool | None = None
    apply: ApplyMode = ApplyMode.ALWAYS

    @field_validator("field")
    @classmethod
    def _known_field(cls, name: str) -> str:
        if name not in DIRECTORY_FIELDS:
            raise ValueError(
                f"unknown directory field {name!r}; known fields: {', '.join(DIRECTORY_FIELDS)}"
            )
        return name


class Expression(BaseModel):
    """``{expression: '...', default: ..., apply: ...}`` (``directory.expressions``):
    checked when the configuration loads, so a typo names its column there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    expression: str
    #: the value when the expression gives null or "" (or fails for a user)
    default: str | bool | None = None
    apply: ApplyMode = ApplyMode.ALWAYS

    @field_validator("expression")
    @classmethod
    def _compiles(cls, text: str) -> str:
        try:
            compile_expression(text, EXPRESSION_FIELDS)
        except ExpressionError as exc:
            pointer = "\n      ".join(exc.pointer().splitlines())
            raise PydanticCustomError(
                "expression",
                "{problem}\n      {pointer}",
                {"problem": str(exc), "pointer": pointer},
            ) from None
        return text

    @property
    def compiled(self) -> CompiledExpression:
        return compile_expression(self.expression, EXPRESSION_FIELDS)


class GroupsSource(BaseModel):
    """``{groups: {Admins: admin, Engineering: developer}}``: the set of values of the
    directory groups a person belongs to, directly or through nested groups; ``groups:
    all`` gives the groups' own names. For multi-valued targets (SCIM ``roles.value``,
    ``entitlements.value``), written as a set (``directory.multivalue``), so adding
    someone to a group changes their roles at the next run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: directory group name (any case) -> the value it gives, or ``all``
    groups: dict[str, str] | Literal["all"]
    apply: ApplyMode = ApplyMode.ALWAYS

    @field_validator("groups")
    @classmethod
    def _values(cls, groups: dict[str, str] | str) -> dict[str, str] | str:
        if isinstance(groups, dict):
            if not groups:
                raise ValueError("name at least one directory group, or say 'all'")
            if bad := [name for name, value in groups.items() if not name.strip() or not value]:
                raise ValueError(f"empty group name or value for {bad[0]!r}")
        return groups

    def values_for(self, group_names: Any) -> list[str]:
        """The values a member of ``group_names`` gets (names compared in any case)."""
        if self.groups == "all":
            return [str(name) for name in group_names]
        wanted = {name.casefold(): value for name, value in self.groups.items()}
        return [wanted[n.casefold()] for n in group_names if n.casefold() in wanted]


class GroupPush(BaseModel):
    """Directory groups kept as groups in the app (SCIM ``/Groups``): created, renamed,
    their members added and removed, deleted when they leave the directory (or ``select``).

    Members are the group's members (through nested groups too, flattened: few apps nest
    groups) who have an account in this app."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: which directory groups: ``assigned`` (those that assign this app), or their names
    select: Literal["assigned"] | list[str] = "assigned"
    #: directory group name -> the app group's name, where they differ
    rename: dict[str, str] = Field(default_factory=dict)
    #: members added or removed per request: apps cap it (Entra 20... Slack 15,000)
    members_per_request: int = Field(100, ge=1, le=10_000)
    #: an app group whose directory group was deleted or is no longer pushed: delete it
    #: (``delete``) or leave it in the app, unmanaged (``keep``)
    on_removed: Literal["delete", "keep"] = "delete"
    #: membership drift: written (``enforce``) or only shown in the report (``report``)
    members: Literal["enforce", "report"] = "enforce"

    @field_validator("select")
    @classmethod
    def _names(cls, select: str | list[str]) -> str | list[str]:
        if isinstance(select, list) and not all(name.strip() for name in select):
            raise ValueError("group names must not be empty")
        return select

    def app_name(self, group: str) -> str:
        """The app group's displayName for a directory group."""
        folded = {name.casefold(): app for name, app in self.rename.items()}
        return folded.get(group.casefold(), group)


def _source_kind(value: Any) -> str | None:
    """Which form a mapping entry is, by its keys, so an error names only that form."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, BaseModel):
        return type(value).__name__
    if isinstance(value, dict):
        kinds = [kind for key, kind in _SOURCE_KEYS.items() if key in value]
        return kinds[0] if len(kinds) == 1 else None
    return None


_SOURCE_KEYS = {
    "field": "FieldSource",
    "constant": "Constant",
    "expression": "Expression",
    "groups": "GroupsSource",
}

#: one mapping entry: a field name, or one of the three forms with options
MappingSource: TypeAlias = Annotated[
    Annotated[str, Tag("str")]
    | Annotated[Constant, Tag("Constant")]
    | Annotated[FieldSource, Tag("FieldSource")]
    | Annotated[Expression, Tag("Expression")]
    | Annotated[GroupsSource, Tag("GroupsSource")],
    Discriminator(
        _source_kind,
        custom_error_type="mapping_source",
        custom_error_message=(
            "give a directory field name, or a mapping with exactly one of field, constant,"
            " expression and groups (plus default and apply)"
        ),
    ),
]
Source: TypeAlias = str | Constant | FieldSource | Expression | GroupsSource


def source_field(source: Source) -> str | None:
    """The directory field an entry copies as is (with or without options), else None."""
    if isinstance(source, str):
        return source
    return source.field if isinstance(source, FieldSource) else None


def is_create_only(source: Source) -> bool:
    return not isinstance(source, str) and source.apply is ApplyMode.CREATE_ONLY


class Safety(BaseModel):
    """The hold on destructive actions: more than ``max_deprovision_share`` of an app's
    linked accounts, and more than ``min_deprovision_count`` of them, is held for review."""

    model_config = ConfigDict(extra="forbid")
    max_deprovision_share: float = Field(0.2, ge=0, le=1)
    min_deprovision_count: int = Field(10, ge=0)


class Budget(BaseModel):
    """A request budget: ``per_second`` or ``per_minute`` (exactly one) sustained, and up
    to ``burst`` requests at once (default 1: never faster than the stated rate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per_second: float | None = Field(None, gt=0, allow_inf_nan=False)
    per_minute: float | None = Field(None, gt=0, allow_inf_nan=False)
    burst: int = Field(1, ge=1, le=100_000)

    @model_validator(mode="after")
    def _one_rate(self) -> Budget:
        if (self.per_second is None) == (self.per_minute is None):
            raise ValueError("set exactly one of per_second and per_minute")
        return self

    @property
    def rate_per_second(self) -> float:
        if self.per_second is not None:
            return self.per_second
        assert self.per_minute is not None
        return self.per_minute / 60


class RateLimits(BaseModel):
    """Separate budgets for reads (GET) and writes (everything else); either may be unset
    (no budget). Retries spend them too."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reads: Budget | None = None
    writes: Budget | None = None


class AdaptiveConcurrency(BaseModel):
    """What Roster learns from the app's answers. The in-flight limit between ``min`` and
    the app's ``concurrency``: halved on a 429 or a timeout, or when latency rises above
    ``latency_factor`` times its baseline; one more after each window of good answers
    (``connectors.concurrency.AimdLimit``). With ``learn_rate`` (off unless asked for), a
    read or write budget learned from the app's 429s for each kind that ``rate_limits``
    leaves without one (``connectors.learnedrate``): concurrency cannot cap a per-minute
    limit. It is opt-in because it reads every 429 as a rate limit: an app that answers
    429 for other reasons (or a fault injected at random) would slow Roster down before
    the learner sees its 429s come whatever the pace and gives up.
    ``adaptive: false`` (``enabled: false``) turns both off: ``concurrency`` is fixed and
    only configured budgets hold the pace."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    min: int = Field(1, ge=1, le=64)
    latency_factor: float = Field(3.0, gt=1, le=100, allow_inf_nan=False)
    learn_rate: bool = False

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    @property
    def learns_rate(self) -> bool:
        return self.enabled and self.learn_rate


class AppConfig(BaseModel):
    """The settings every kind of app shares. ``connector`` names the kind."""

    model_config = ConfigDict(extra="forbid")

    #: the kind's attribute names for the directory's fields, merged under ``mapping``
    default_mapping: ClassVar[dict[str, str]] = DEFAULT_MAPPING
    #: the kind's attributes to match an existing account on, in order
    default_match_on: ClassVar[tuple[str, ...]] = ("userName", WORK_EMAIL)
    #: the kind's attributes the app compares case-insensitively (RFC 7643 §4.1.1: SCIM's
    #: userName and emails are caseExact=false); the plan matches and diffs them folded
    case_insensitive: ClassVar[frozenset[str]] = frozenset({"userName", WORK_EMAIL})
    #: the kind's sign-in name attribute, shown for accounts no directory user owns
    login_attribute: ClassVar[str] = "userName"
    #: False where the app can be reached without a secret (a database on a trusted socket)
    secret_required: ClassVar[bool] = True
    #: True where Roster can keep the app's groups (``groups:``)
    supports_groups: ClassVar[bool] = False

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    connector: str
    #: where the app's secret (token, password or API key) is: one of an environment
    #: variable and a Prefect Secret block (Prefect's block names: lowercase letters,
    #: digits and dashes)
    token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_secret: str | None = Field(None, pattern=r"^[a-z0-9-]+$", max_length=255)
    #: target attribute -> directory field, ``{constant: value}``, ``{field: ...}`` or
    #: ``{expression: ...}`` (each with ``default`` and ``apply``), or null to drop a
    #: default entry. Merged over the kind's ``default_mapping``.
    mapping: dict[str, MappingSource | None] = Field(default_factory=dict)
    #: empty: the kind's ``default_match_on``
    match_on: list[str] = Field(default_factory=list)
    actions: set[Action] = Field(
        default_factory=lambda: {Action.CREATE, Action.UPDATE, Action.DEACTIVATE}
    )
    deprovision: DeprovisionMode = DeprovisionMode.DEACTIVATE
    on_missing: MissingPolicy = MissingPolicy.RECREATE
    page_size: int = Field(500, ge=1, le=10_000)
    concurrency: int = Field(4, ge=1, le=64)
    #: requests per second, one budget shared by reads and writes (older than the
    #: ``rate_limits`` of HTTP apps, and still the only budget of LDAP and SQL apps)
    rate_limit: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="requests per second"
    )
    timeout: float = Field(30.0, gt=0, allow_inf_nan=False, description="seconds per request")
    max_retries: int = Field(4, ge=0, le=20)
    safety: Safety | None = None
    #: who of the active and assigned users the app is for: filters over directory fields,
    #: ORed, each the AND of its clauses (``directory.scoping``); empty: all of them
    scoping: list[ScopeFilter] = Field(default_factory=list)
    #: what drift is written, only reported, or not compared, per attribute
    remediation: RemediationPolicy = Field(default_factory=RemediationPolicy)
    #: directory groups kept as app groups; None: the app's groups are left alone
    push_groups: GroupPush | None = None

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, mapping: dict[str, Source | None]) -> dict[str, Source | None]:
        for target, source in mapping.items():
            if isinstance(source, str) and source not in DIRECTORY_FIELDS:
                raise ValueError(
                    f"{target!r} maps from unknown directory field {source!r}; "
                    f"known fields: {', '.join(DIRECTORY_FIELDS)}"
                )
        return mapping

    @model_validator(mode="after")
    def _one_token_source(self) -> AppConfig:
        both = self.token_env is not None and self.token_secret is not None
        neither = self.token_env is None and self.token_secret is None
        if both or (neither and self.secret_required):
            raise ValueError(
                "set exactly one of token_env (an environment variable) and token_secret"
                " (a Prefect Secret block) for the app's secret"
            )
        return self

    @model_validator(mode="after")
    def _match_on_mapped(self) -> AppConfig:
        if not self.match_on:
            self.match_on = list(self.default_match_on)
        missing = [path for path in self.match_on if path not in self.effective_mapping]
        if missing:
            raise ValueError(f"match_on names unmapped attributes: {', '.join(missing)}")
        if self.deprovision is DeprovisionMode.DELETE and Action.DELETE not in self.actions:
            raise ValueError("deprovision: delete needs 'delete' in actions")
        return self

    @model_validator(mode="after")
    def _remediation_mapped(self) -> AppConfig:
        unknown = [t for t in self.remediation.attributes if t not in self.effective_mapping]
        if unknown:
            raise ValueError(
                f"remediation.attributes names unmapped attributes: {', '.join(unknown)}"
            )
        return self

    @model_validator(mode="after")
    def _groups_supported(self) -> AppConfig:
        if self.push_groups is not None and not self.supports_groups:
            raise ValueError(
                f"push_groups: the {self.connector} connector cannot keep groups (only scim"
                " can);"
                " map groups to an attribute with {groups: ...} instead"
            )
        return self

    @property
    def uses_groups(self) -> bool:
        """Whether a sync of this app needs the directory's group memberships."""
        sources = self.effective_mapping.values()
        return self.push_groups is not None or any(isinstance(s, GroupsSource) for s in sources)

    @property
    def has_secret(self) -> bool:
        return self.token_env is not None or self.token_secret is not None

    @property
    def effective_mapping(self) -> dict[str, Source]:
        """The kind's default mapping with this app's entries merged over it."""
        merged: dict[str, Source] = dict(self.default_mapping)
        for target, source in self.mapping.items():
            if source is None:
                merged.pop(target, None)
            else:
                merged[target] = source
        return merged

    @property
    def create_only(self) -> frozenset[str]:
        """Targets written on create and never compared or updated afterwards."""
        return frozenset(t for t, s in self.effective_mapping.items() if is_create_only(s))

    @property
    def token_source(self) -> str:
        """Where the secret is, for messages: never the secret itself."""
        if self.token_env is not None:
            return f"environment variable {self.token_env}"
        return f"Prefect Secret block {self.token_secret!r}"


class HttpAppConfig(AppConfig):
    """An app reached over HTTP(S): SCIM and REST."""

    #: no user:password@ part: credentials live in the environment (``token_env``)
    base_url: HttpUrl
    #: TLS certificate verification; ``verify_tls`` is the older spelling
    tls_verify: bool = Field(True, validation_alias=AliasChoices("tls_verify", "verify_tls"))
    #: PEM file of the CA certificate(s) to trust for this app instead of the public ones
    ca_bundle: FilePath | None = None
    #: request budgets for reads and writes (``rate_limit`` is the older, shared one)
    rate_limits: RateLimits | None = None
    #: adaptive concurrency under the ``concurrency`` ceiling; on by default
    adaptive: AdaptiveConcurrency = Field(
        default_factory=lambda: AdaptiveConcurrency.model_validate({})
    )

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, url: HttpUrl) -> HttpUrl:
        if url.username or url.password:
            raise ValueError(
                "must not contain a user name or password: put the token in the "
                "environment variable that token_env names"
            )
        return url

    @model_validator(mode="after")
    def _one_kind_of_budget(self) -> HttpAppConfig:
        if self.rate_limit is not None and self.rate_limits is not None:
            raise ValueError(
                "rate_limit (one budget for all requests) and rate_limits (reads and"
                " writes) are both set: keep rate_limits"
            )
        if self.adaptive.min > self.concurrency:
            raise ValueError(
                f"adaptive.min ({self.adaptive.min}) is above concurrency"
                f" ({self.concurrency}), the ceiling"
            )
        return self

    @model_validator(mode="after")
    def _ca_bundle_needs_verification(self) -> HttpAppConfig:
        if self.ca_bundle is not None and not self.tls_verify:
            raise ValueError("ca_bundle is set but tls_verify is false: keep one")
        return self
