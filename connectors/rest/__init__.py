"""The ``rest`` connector: an HTTP JSON API described in roster.yaml, not coded."""

from connectors.rest.connector import RestConnector

__all__ = ["RestConnector"]
