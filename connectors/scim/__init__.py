"""The SCIM 2.0 connector: Users over RFC 7644, validated with scim2-models."""

from connectors.scim.connector import ScimConnector
from connectors.scim.responses import NoTargetError
from connectors.wire import OperationStats

__all__ = ["NoTargetError", "OperationStats", "ScimConnector"]
