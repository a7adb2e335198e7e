"""A REST app's accounts between its JSON and Roster's flat attributes: reading them
(the id, each field, and "active" the way the settings say) and what to write for a
change, the active flag included. No HTTP here: ``connectors.rest.connector`` sends.

"Active" is read the way the app's settings say: a boolean or status field, or, for
apps that cannot deactivate, from the deprovisioning strategy (roles stripped, a lock
status), so the plan sees a deprovisioned account as inactive and a second run makes
no writes. An app that cannot deactivate at all (``delete``) reads every account it
lists as active.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import Account, AccountPage, Attributes, Value
from connectors.errors import InvalidResponseError
from connectors.rest.fields import MISSING, FieldCodec, read_path
from directory.appkinds.rest import RestAppConfig
from directory.appkinds.rest_parts import (
    BooleanActive,
    LockStrategy,
    StatusActive,
    StripRolesStrategy,
)


class AccountCodec:
    """One app's accounts: its fields, its key and its way of saying "active"."""

    def __init__(self, app: RestAppConfig) -> None:
        self._app = app
        self._codecs = {name: FieldCodec(spec) for name, spec in app.field_specs.items()}
        self._key = self._codecs[app.key]
        self._reads_active = "active" in app.effective_mapping

    def codec(self, attribute: str) -> FieldCodec:
        codec = self._codecs.get(attribute)
        if codec is None:
            raise ValueError(f"app {self._app.name}: {attribute!r} is not a mapped attribute")
        return codec

    @property
    def key(self) -> FieldCodec:
        return self._key

    def read_page(self, items: list[Any], seen: set[str]) -> tuple[AccountPage, int]:
        """The page's accounts (Roster's only, each once) and how many were new."""
        accounts: list[Account] = []
        errors: list[str] = []
        unreadable: list[str] = []
        fresh = 0
        for index, raw in enumerate(items):
            remote_id = read_id(raw, self._app.listing.id)
            if remote_id is not None:
                if remote_id in seen:
                    continue
                seen.add(remote_id)
            fresh += 1
            try:
                account = self.read(f"GET {self._app.listing.path}", raw, listed=True)
            except InvalidResponseError as exc:
                label = f"id {remote_id}" if remote_id else f"item #{index + 1} of the page"
                errors.append(f"{label}: {exc}")
                if remote_id is not None:
                    unreadable.append(remote_id)
                continue
            if account is not None:
                accounts.append(account)
        return AccountPage(accounts, errors, unreadable), fresh

    def read_one(self, where: str, raw: Any) -> Account:
        account = self.read(where, raw)
        assert account is not None  # only listed accounts are left out
        return account

    def read(self, where: str, raw: Any, *, listed: bool = False) -> Account | None:
        """The account in ``raw``; None for a listed account that is not Roster's (its
        key lacks the key field's prefix or suffix)."""
        if not isinstance(raw, dict):
            raise InvalidResponseError(f"{where}: an account is not a JSON object")
        remote_id = read_id(raw, self._app.listing.id)
        if remote_id is None:
            raise InvalidResponseError(f"{where}: no id at '{self._app.listing.id}'")
        key = read_path(raw, self._key.path)
        if key is MISSING or key is None:
            raise InvalidResponseError(f"{where}: no {self._app.key} at '{self._key.path}'")
        if listed and not self._key.owns(key):
            return None
        attributes: dict[str, Value] = {}
        try:
            for name, codec in self._codecs.items():
                attributes[name] = codec.decode(read_path(raw, codec.path))
        except ValueError as exc:
            raise InvalidResponseError(f"{where}: {exc}") from None
        if self._reads_active:
            attributes["active"] = self._read_active(where, raw, attributes)
        return Account(remote_id, attributes)

    def _read_active(self, where: str, raw: Any, attributes: Mapping[str, Value]) -> bool:
        strategy, active = self._app.deprovision_strategy, self._app.active
        if isinstance(strategy, StripRolesStrategy):
            return not same(attributes.get(strategy.attribute), strategy.value)
        if isinstance(strategy, LockStrategy):
            return read_path(raw, strategy.path) != strategy.value
        if isinstance(active, StatusActive):
            return read_path(raw, active.path) == active.active
        if isinstance(active, BooleanActive):
            value = read_path(raw, active.path)
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise InvalidResponseError(f"{where}: '{active.path}' is not a boolean")
            return value is not active.inverted
        return True  # the app cannot deactivate: an account that exists is active

    def writes(self, attributes: Attributes) -> dict[str, Any]:
        """path -> wire value for each mapped attribute given (``active`` aside)."""
        return {
            self._codecs[name].path: self._codecs[name].encode(value)
            for name, value in attributes.items()
            if name != "active" and name in self._codecs
        }

    def active_writes(self, active: bool, desired: Attributes) -> dict[str, Any]:
        """What to write for ``active``; ``desired`` is the account's wanted state."""
        strategy, config = self._app.deprovision_strategy, self._app.active
        if isinstance(strategy, StripRolesStrategy):
            # Reactivating gives the roles back: the wanted ones, if they are not neutral.
            codec = self._codecs[strategy.attribute]
            roles = desired.get(strategy.attribute) if active else strategy.value
            if active and same(roles, strategy.value):
                return {}
            return {codec.path: codec.encode(roles)}
        if isinstance(strategy, LockStrategy):
            return {strategy.path: strategy.unlocked if active else strategy.value}
        if isinstance(config, BooleanActive):
            return {config.path: active is not config.inverted}
        if isinstance(config, StatusActive):
            return {config.path: config.active if active else config.inactive}
        return {}

    def template_values(self, attributes: Attributes) -> dict[str, Any]:
        values: dict[str, Any] = {
            name: self._codecs[name].encode(value)
            for name, value in attributes.items()
            if name in self._codecs
        }
        if "active" in attributes:
            values["active"] = attributes["active"]
        values["key"] = values.get(self._app.key)
        return values


def read_id(raw: Any, path: str) -> str | None:
    value = read_path(raw, path)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def same(actual: Value, expected: Value) -> bool:
    """Lookups compare as trimmed, case-folded text, None equal to "" (as the plan does)."""

    def text(value: Value) -> str:
        return "" if value is None else str(value).strip().casefold()

    return text(actual) == text(expected)
