"""PostgreSQL login roles as accounts (``connector: sql``)."""

from connectors.sql.connector import SqlConnector
from connectors.sql.engine import sql_engine

__all__ = ["SqlConnector", "sql_engine"]
