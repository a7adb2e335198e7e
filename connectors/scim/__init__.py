"""The SCIM 2.0 connector: Users over RFC 7644, validated with scim2-models."""

from connectors.scim.connector import NoTargetError, ScimConnector
from connectors.wire import OperationStats

__all__ = ["NoTargetError", "OperationStats", "ScimConnector"]
