"""LDAP result codes (RFC 4511 §4.1.9, Appendix A) and ldap3's socket failures, mapped
to the one exception tree of ``connectors.errors``.

Messages name the operation, the entry's DN, the code and the server's diagnostic text
(redacted, cut short); never a request, which for a bind holds the password.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any

from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPResponseTimeoutError,
    LDAPStartTLSError,
)

from connectors.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    TLSError,
    TransientError,
)
from connectors.redact import redact, scrub

SUCCESS = 0
SIZE_LIMIT_EXCEEDED = 4
NO_SUCH_ATTRIBUTE = 16
ATTRIBUTE_OR_VALUE_EXISTS = 20
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
OBJECT_CLASS_VIOLATION = 65
ENTRY_ALREADY_EXISTS = 68

#: the server refuses who we are: every operation would fail the same way
AUTH = frozenset(
    {
        7,  # authMethodNotSupported
        8,  # strongerAuthRequired (e.g. a simple bind without TLS)
        48,  # inappropriateAuthentication
        INVALID_CREDENTIALS,
        50,  # insufficientAccessRights
    }
)
#: worth retrying: the server is busy, unavailable or ran out of time; 81 (serverDown)
#: and 85 (timeout) are client-side codes some servers and proxies send as well
TRANSIENT = frozenset({3, 51, 52, 81, 85})

#: socket-level failures: the server is down, or the connection died under us
COMMUNICATION_ERRORS: tuple[type[LDAPException], ...] = (
    LDAPCommunicationError,
    LDAPResponseTimeoutError,
    LDAPStartTLSError,
)


def check_result(
    label: str, target: str, result: Mapping[str, Any], ok: frozenset[int] = frozenset()
) -> int:
    """The result code, when it is success or one of ``ok``; else the typed error."""
    code = int(result.get("result", -1))
    if code == SUCCESS or code in ok:
        return code
    raise result_error(label, target, code, result)


def result_error(label: str, target: str, code: int, result: Mapping[str, Any]) -> ConnectorError:
    description = result.get("description") or "unknown"
    detail = redact(str(result.get("message") or "").strip())[:200]
    message = f"{label} {target}: {code} {description}" + (f": {detail}" if detail else "")
    if code == INVALID_CREDENTIALS and label == "bind":
        message += " (the server refuses the bind DN or its password; check the app's secret)"
    if code in AUTH:
        return AuthError(message, status=code)
    if code == NO_SUCH_OBJECT:
        return NotFoundError(message, status=code)
    if code == ENTRY_ALREADY_EXISTS:
        return ConflictError(message, status=code)
    if code in TRANSIENT:
        return TransientError(message, status=code)
    return BadRequestError(message, status=code)


def communication_error(label: str, target: str, exc: LDAPException) -> ConnectorError:
    """A failed certificate check stops the app (retrying cannot fix it); any other
    socket failure is transient."""
    problem = _certificate_problem(exc)
    if problem is not None:
        return TLSError(
            f"{label} {target}: TLS certificate verification failed ({problem});"
            " for a server with a private CA, set the app's ca_bundle"
        )
    return TransientError(f"{label} {target}: {type(exc).__name__}: {scrub(exc)}")


def _certificate_problem(exc: BaseException) -> str | None:
    """Why certificate verification failed, when that is what ``exc`` comes down to.
    ldap3 raises a class mixing its own error with ssl's, without ssl's attributes, so
    the reason is read from the text."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            reason = getattr(current, "verify_message", None)
            return str(reason) if reason else _reason(str(current))
        current = current.__cause__ or current.__context__
    text = str(exc)
    return _reason(text) if "CERTIFICATE_VERIFY_FAILED" in text else None


_VERIFY_FAILED = re.compile(r"certificate verify failed: ([^(')\]]+)")


def _reason(text: str) -> str:
    found = _VERIFY_FAILED.search(text)
    return found.group(1).strip() if found else "certificate verify failed"
