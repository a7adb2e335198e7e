"""The SCIM 2.0 connector: Users over RFC 7644, validated with scim2-models."""

from connectors.scim.connector import OperationStats, ScimConnector
from connectors.scim.responses import NoTargetError

__all__ = ["NoTargetError", "OperationStats", "ScimConnector"]
