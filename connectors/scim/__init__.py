"""The SCIM 2.0 connector: Users over RFC 7644, validated with scim2-models."""

from connectors.scim.connector import NoTargetError, OperationStats, ScimConnector

__all__ = ["NoTargetError", "OperationStats", "ScimConnector"]
