"""Keeping tokens out of text Roster did not write itself.

Roster's own messages never include a token, but two kinds of text come from elsewhere:

* what an app sends back, e.g. a SCIM error ``detail`` (RFC 7644 §3.12) that quotes the
  request's Authorization header; connectors pass it through ``redact`` before it goes
  into an error message;
* httpx's and httpcore's DEBUG logs: httpcore logs every response header verbatim, so an
  app (or a proxy) echoing the Authorization header would put the token in a log line.
  ``RedactingFilter`` sits on those loggers;
* httpx's exceptions, which quote what the app sent when it is not HTTP (h11: "illegal
  header line: ..."). A Roster error raised from one keeps it as its cause, and a
  traceback (Prefect logs one for every failed task) prints it: ``scrub`` redacts the
  whole chain first.

Each token is registered once, when a client is built (``connectors.http.BearerAuth``),
with its base64 forms; redaction replaces any of them with ``***``.
"""

from __future__ import annotations

import base64
import logging
import threading

MASK = "***"
#: Shorter secrets are not redacted: replacing every "t" or "abc" would mangle all text,
#: and no real API token is that short.
MIN_LENGTH = 8
#: the loggers whose records may carry wire data; filters only see records created on
#: the logger they are attached to, so each one is named
WIRE_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class Secrets:
    """The tokens of this process, in every form worth looking for. Thread-safe."""

    def __init__(self) -> None:
        self._forms: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if len(secret) < MIN_LENGTH:
            return
        raw = secret.encode()
        forms = {
            secret,
            base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode(),
        }
        forms |= {form.rstrip("=") for form in forms}
        with self._lock:
            # longest first, so a token never leaves a redacted form's tail behind
            self._forms = tuple(sorted(set(self._forms) | forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


SECRETS = Secrets()


def redact(text: str) -> str:
    """``text`` with every registered token (and its base64 forms) replaced by ``***``."""
    return SECRETS.redact(text)


def scrub(exc: BaseException) -> BaseException:
    """Redact, in place, the message of ``exc`` and of every exception a traceback of it
    would print (its causes and contexts). Returns ``exc``."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        text = str(current)
        cleaned = redact(text)
        if cleaned != text:
            current.args = (cleaned,)
        todo += [current.__cause__, current.__context__]
    return exc


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message holds a registered token; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's business
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()


def protect(secret: str) -> None:
    """Register ``secret`` and make sure the wire loggers redact it."""
    SECRETS.add(secret)
    for name in WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
