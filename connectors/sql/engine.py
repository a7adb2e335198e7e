"""The SQLAlchemy engine a sql app's connector runs over, built outside the connector (as
an HTTP app's client is), so tests hand in their own.

The password (the app's secret) joins the URL only here, in memory: SQLAlchemy's URL
shows it as ``***`` in every repr, and it is registered for redaction in case a message
ever quotes it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import URL, Engine

from connectors.redact import protect

logger = logging.getLogger("roster.connectors.sql")

#: PostgreSQL's limit for application_name (NAMEDATALEN - 1)
MAX_APPLICATION_NAME = 63
#: libpq sslmodes that check the server's certificate
VERIFYING = frozenset({"verify-ca", "verify-full"})


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
    warn_if_unverified(url, app_name)
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


def warn_if_unverified(url: URL, app_name: str) -> None:
    """libpq's default (``sslmode=prefer``) encrypts when it can but checks no certificate:
    anyone on the path can pose as the server and take the password. Said once per
    engine, for servers that are not on this machine."""
    host = url.host or ""
    sslmode = str(url.query.get("sslmode", "prefer"))
    if sslmode in VERIFYING or _local(host):
        return
    logger.warning(
        "app %s connects to %s with sslmode=%s: the server's certificate is not verified;"
        " use sslmode=verify-full (and sslrootcert) in database_url",
        app_name,
        host,
        sslmode,
    )


def _local(host: str) -> bool:
    """A Unix socket (no host, or a directory) or a loopback address."""
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
