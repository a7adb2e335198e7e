"""The kinds of app Roster provisions, one settings model each, told apart by
``connector`` in ``roster.yaml``."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from pydantic import Field

from directory.appkinds.ldap import LdapAppConfig
from directory.appkinds.rest import RestAppConfig
from directory.appkinds.scim import ScimAppConfig
from directory.appkinds.sql import SqlAppConfig

#: every kind, as ``connector`` names it; a new kind adds its model to both
CONNECTOR_KINDS = frozenset({"scim", "rest", "ldap", "sql"})
AnyAppConfig: TypeAlias = Annotated[
    ScimAppConfig | RestAppConfig | LdapAppConfig | SqlAppConfig,
    Field(discriminator="connector"),
]

__all__ = [
    "CONNECTOR_KINDS",
    "AnyAppConfig",
    "LdapAppConfig",
    "RestAppConfig",
    "ScimAppConfig",
    "SqlAppConfig",
]
