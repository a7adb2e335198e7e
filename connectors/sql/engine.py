"""The SQLAlchemy engine a sql app's connector runs over, built outside the connector (as
an HTTP app's client is), so tests hand in their own.

The password (the app's secret) joins the URL only here, in memory: SQLAlchemy's URL
shows it as ``***`` in every repr, and it is registered for redaction in case a message
ever quotes it.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import URL, Engine

from connectors.redact import protect

#: PostgreSQL's limit for application_name (NAMEDATALEN - 1)
MAX_APPLICATION_NAME = 63


def sql_engine(
    url: URL,
    password: SecretStr | None,
    *,
    app_name: str,
    pool_size: int,
    timeout: float,
) -> Engine:
    """A pool of ``pool_size`` connections (one per worker thread, no overflow). ``timeout``
    bounds connecting, waiting for a free connection, and every statement."""
    if password is not None:
        secret = password.get_secret_value()
        protect(secret)
        url = url.set(password=secret)
    seconds = max(1, math.ceil(timeout))
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout,
        pool_pre_ping=True,  # a connection the server dropped is replaced, not reported
        connect_args={
            "connect_timeout": seconds,
            "application_name": f"roster {app_name}"[:MAX_APPLICATION_NAME],
        },
    )
    milliseconds = int(timeout * 1000)

    @sa.event.listens_for(engine, "connect")
    def _statement_timeout(dbapi_connection: Any, _record: Any) -> None:
        """A lock held elsewhere must not hang a run: every statement has the app's timeout."""
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(milliseconds)])
        dbapi_connection.commit()

    return engine
