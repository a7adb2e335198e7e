"""A declarative REST app: everything the ``rest`` connector needs to know about an HTTP
JSON API, said in ``roster.yaml`` instead of code (``docs/connectors.md`` walks through
an example).

An entry names how to authenticate (``auth``), how to list accounts (``list``: path,
pagination style, where the items and their ids are), how to find one (``find``), the
request for each operation (``requests``), where each Roster attribute lives in the
app's JSON (``fields``), how the app says "active" (``active``) and, for apps that cannot
deactivate, what deprovisioning does instead (``deprovision_strategy``).

Templates are small and safe: ``{name}`` placeholders are looked up, never evaluated.
In a path they name ``id`` (the account's remote id), ``key`` (the value of the ``key``
attribute) or a mapped attribute, and each value is URL-quoted. In a body template,
a string that is exactly ``{name}`` becomes the attribute's JSON value; other strings
get the value spliced in as text; everything else is a constant.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from directory.appbase import Action, DeprovisionMode, HttpAppConfig
from directory.appkinds.rest_parts import (
    DOTTED,
    AbsentActive,
    ActiveConfig,
    AuthConfig,
    BearerAuthConfig,
    BodyMode,
    DeactivateStrategy,
    DeleteStrategy,
    FieldConfig,
    FindConfig,
    ListConfig,
    RequestConfig,
    Requests,
    Strategy,
    StripRolesStrategy,
    body_placeholders,
    placeholders,
)

#: Roster attribute names of a REST app: the app's own JSON fields are named in ``fields``
REST_DEFAULT_MAPPING: dict[str, str] = {
    "userName": "user_name",
    "email": "email",
    "displayName": "display_name",
    "active": "active",
}
#: placeholders every request may use besides mapped attributes
ID, KEY = "id", "key"


# -- the app -----------------------------------------------------------------------------------


class RestAppConfig(HttpAppConfig):
    """An HTTP JSON API, described rather than coded."""

    default_mapping: ClassVar[dict[str, str]] = REST_DEFAULT_MAPPING
    default_match_on: ClassVar[tuple[str, ...]] = ("userName", "email")

    connector: Literal["rest"]
    auth: AuthConfig = Field(default_factory=lambda: BearerAuthConfig(type="bearer"))
    #: the attribute that names an account (``{key}`` in paths; found after a create)
    key: str = "userName"
    listing: ListConfig = Field(alias="list")
    find: FindConfig = Field(default_factory=lambda: FindConfig.model_validate({}))
    requests: Requests = Field(default_factory=Requests)
    #: Roster attribute -> the app's JSON field: a dotted path, or a FieldConfig.
    #: Attributes not named here live at a field of their own name.
    fields: dict[str, Annotated[str, Field(pattern=DOTTED)] | FieldConfig] = Field(
        default_factory=dict
    )
    active: ActiveConfig | None = None
    deprovision_strategy: Strategy = Field(
        default_factory=lambda: DeactivateStrategy(strategy="deactivate")
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("deprovision_strategy", mode="before")
    @classmethod
    def _strategy_shorthand(cls, value: Any) -> Any:
        """``deprovision_strategy: delete`` for ``{strategy: delete}``."""
        return {"strategy": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _coherent(self) -> RestAppConfig:
        problems = [
            *self._attribute_problems(),
            *self._strategy_problems(),
            *self._request_problems(),
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- what the connector reads ----------------------------------------------------

    @property
    def field_specs(self) -> dict[str, FieldConfig]:
        """Every mapped attribute but ``active`` (see ``active`` and the strategy), with
        its field."""
        specs: dict[str, FieldConfig] = {}
        for attribute in self.effective_mapping:
            if attribute == "active":
                continue
            spec = self.fields.get(attribute, attribute)
            if not isinstance(spec, FieldConfig):
                spec = FieldConfig.model_validate({"path": spec})
            specs[attribute] = spec
        return specs

    @property
    def get_request(self) -> RequestConfig:
        return self.requests.get or RequestConfig(
            method="GET", path=self.listing.path.rstrip("/") + "/{id}"
        )

    # -- checks ----------------------------------------------------------------------

    def _attribute_problems(self) -> Iterable[str]:
        mapped = set(self.effective_mapping)
        if self.key not in mapped:
            yield f"key: {self.key!r} is not a mapped attribute"
        for attribute in self.fields:
            if attribute not in mapped:
                yield f"fields.{attribute}: not a mapped attribute (mapping: {sorted(mapped)})"
            elif attribute == "active":
                yield "fields.active: say how the app represents active under active:"
        find = self.find.attribute
        if find is not None and find not in mapped:
            yield f"find.attribute: {find!r} is not a mapped attribute"

    def _strategy_problems(self) -> Iterable[str]:
        strategy = self.deprovision_strategy
        active = None if isinstance(self.active, AbsentActive) else self.active
        if isinstance(strategy, DeactivateStrategy):
            if active is None:
                yield (
                    "deprovision_strategy: deactivate needs active (how the app says an"
                    " account is active, so deactivated accounts read as such); for an app"
                    " that cannot deactivate, choose delete, strip_roles or lock"
                )
        elif active is not None:
            yield (
                f"active: not used with deprovision_strategy {strategy.strategy}"
                " (the strategy decides what reads as active); remove it"
            )
        if isinstance(strategy, DeleteStrategy) and self.deprovision is not DeprovisionMode.DELETE:
            yield "deprovision_strategy: delete needs deprovision: delete as well"
        if isinstance(strategy, StripRolesStrategy) and (
            strategy.attribute not in self.effective_mapping or strategy.attribute == "active"
        ):
            yield f"deprovision_strategy.attribute: {strategy.attribute!r} is not mapped"
        if not isinstance(strategy, DeactivateStrategy) and (
            self.requests.deactivate or self.requests.reactivate
        ):
            yield "requests.deactivate/reactivate: only with deprovision_strategy deactivate"

    def _request_problems(self) -> Iterable[str]:
        needed = {
            "create": Action.CREATE in self.actions,
            "update": Action.UPDATE in self.actions or self._deactivates_by_update(),
            "delete": Action.DELETE in self.actions,
        }
        for name, required in needed.items():
            if required and getattr(self.requests, name) is None:
                why = "deprovisioning writes through it" if name == "update" else ""
                yield f"requests.{name}: missing ({why or f'actions include {name}'})"
        names = {ID, KEY, *self.effective_mapping}
        requests = {"get": self.get_request, **dict(self.requests)}
        for name, request in requests.items():
            if request is None:
                continue
            allowed = names - {ID} if name == "create" else names
            where = f"requests.{name}"
            try:
                unknown = set(placeholders(request.path)) | set(body_placeholders(request.body))
            except ValueError as exc:
                yield f"{where}: {exc}"
                continue
            for placeholder in sorted(unknown - allowed):
                yield f"{where}: unknown placeholder {{{placeholder}}} (known: {sorted(allowed)})"
            if request.if_absent and name != "create":
                yield f"{where}.if_absent: only for create"
            if request.body == BodyMode.MERGED and name == "create":
                yield f"{where}.body: merged needs an existing account; use mapped or a template"

    def _deactivates_by_update(self) -> bool:
        strategy = self.deprovision_strategy
        if isinstance(strategy, DeactivateStrategy):
            return self.requests.deactivate is None
        return not isinstance(strategy, DeleteStrategy)
