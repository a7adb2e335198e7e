"""A SCIM 2.0 app (RFC 7643/7644): attributes are SCIM paths of the User resource."""

from __future__ import annotations

from typing import ClassVar, Literal

from directory.appbase import HttpAppConfig, UpdateMethod


class ScimAppConfig(HttpAppConfig):
    supports_groups: ClassVar[bool] = True

    connector: Literal["scim"]
    update_method: UpdateMethod = UpdateMethod.AUTO
