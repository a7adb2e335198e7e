"""A SCIM 2.0 app (RFC 7643/7644): attributes are SCIM paths of the User resource."""

from __future__ import annotations

from typing import Literal

from directory.appbase import HttpAppConfig, UpdateMethod


class ScimAppConfig(HttpAppConfig):
    connector: Literal["scim"]
    update_method: UpdateMethod = UpdateMethod.AUTO
