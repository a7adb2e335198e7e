"""The one exception tree of Roster's connectors.

::

    ConnectorError                 anything an app did or refused
    ├── TransientError             worth retrying: 429, 5xx, timeouts, resets
    ├── AuthError                  401/403: the app refuses our credentials; stops the app
    ├── NotFoundError              404: the account is gone
    ├── ConflictError              409: the account (userName, email) already exists
    ├── BadRequestError            400/422 and other 4xx: the app rejects this account's payload
    ├── InvalidResponseError       the app answered something that is not valid SCIM/JSON
    ├── TLSError                   the app's certificate failed verification; stops the app
    └── DryRunError                a mutating request was attempted in dry-run mode (a bug)

Messages never carry request bodies or headers, and text the app sent (an error's detail)
is redacted (``connectors.redact``), so tokens cannot leak through them.
What each error means for a run (retry, adopt, recreate, record, stop the app) is decided
in one table: ``tasks.apply.ERROR_POLICY``.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class: an app could not do what we asked."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(ConnectorError):
    """A failure worth retrying later: 429, 5xx, timeouts, connection resets."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """401/403: the app refuses Roster's credentials. Every account would fail: stop the app."""


class NotFoundError(ConnectorError):
    """404: the resource does not exist (any more)."""


class ConflictError(ConnectorError):
    """409: a unique attribute is already taken, usually by the account we want to create."""


class BadRequestError(ConnectorError):
    """A 4xx the app will repeat for the same payload: record it and move on."""


class InvalidResponseError(ConnectorError):
    """The app answered, but not with a body Roster can trust (bad JSON, wrong schema)."""


class TLSError(ConnectorError):
    """The app's TLS certificate failed verification (self-signed, unknown CA, wrong host).
    Retrying cannot help: the app's configuration must name its CA (``ca_bundle``)."""


class DryRunError(ConnectorError):
    """A mutating request reached the wire layer in dry-run mode. Never sent."""
