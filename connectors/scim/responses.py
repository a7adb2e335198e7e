"""Reading what a SCIM app answers: its status as a typed error (with the RFC 7644 §3.12
error body as the reason), every body validated with scim2-models at the boundary, and
the values Roster could not store or send back kept out.

Messages name fields and problems; what the app wrote is shortened, and never carries the
credentials the request was sent with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError
from scim2_models import BaseModel, Context, Error, ListResponse, ScimPolicy

from connectors.errors import BadRequestError, InvalidResponseError
from connectors.http import raise_for_status
from connectors.redact import redact

#: Apps add their own attributes and extensions; reading must not reject them.
READ_POLICY = ScimPolicy(unknown=ScimPolicy.Unknown.ignore)
#: how much of an app's error text a message keeps
MAX_DETAIL = 200
#: links.remote_id and actions.remote_id are String(255)
MAX_ID = 255
M = TypeVar("M", bound=BaseModel)


class NoTargetError(BadRequestError):
    """400 ``noTarget`` (RFC 7644 §3.12): a PATCH path filter matched no entry. The
    connector catches it to add the entry instead; elsewhere it is a BadRequestError."""


def check_status(method: str, path: str, response: httpx.Response) -> None:
    """connectors.http.raise_for_status, with the SCIM error body (RFC 7644 §3.12) as the
    reason and ``noTarget`` told apart."""
    if response.is_success:
        return
    scim_type, detail = _error_body(response)
    reason = ": ".join(part for part in (scim_type, detail) if part) or None
    if response.status_code == 400 and scim_type == "noTarget":
        raise NoTargetError(f"{method} {path}: 400 {reason}", status=400)
    raise_for_status(method, path, response, reason=reason)


def _error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        error = Error.model_validate(response.json(), scim_policy=READ_POLICY)
    except (ValueError, ValidationError, RecursionError):
        return None, None
    scim_type = _redacted(error.scim_type, response)[:40] if error.scim_type else None
    detail = _redacted(error.detail, response)[:MAX_DETAIL] if error.detail else None
    return scim_type, detail


def _redacted(text: str, response: httpx.Response) -> str:
    """An app may echo our request back in its error text: never our credentials (the
    header this request carried, and every secret ``connectors.redact`` knows), removed
    before the text is cut short."""
    text = redact(text)
    sent = response.request.headers.get("Authorization", "")
    for secret in sorted({sent, sent.partition(" ")[2].strip()} - {""}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def validate(model: type[M], where: str, raw: Any, context: Context) -> M:
    """Validate at the boundary; the message names fields and problems, never values."""
    try:
        return model.model_validate(raw, scim_ctx=context, scim_policy=READ_POLICY)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'][:MAX_DETAIL]}"
            for e in exc.errors(include_input=False, include_url=False)[:3]
        ]
        raise InvalidResponseError(f"{where}: invalid SCIM: {'; '.join(problems)}") from exc


def total_results(envelope: ListResponse[Any]) -> int:
    if envelope.total_results is None:
        raise InvalidResponseError("GET /Users: the ListResponse has no totalResults")
    if envelope.total_results < 0:
        raise InvalidResponseError(f"GET /Users: totalResults is {envelope.total_results}")
    return envelope.total_results


def raw_id(raw: Any) -> str | None:
    """The id of a resource that failed validation, when it still has a usable one."""
    key = find_key(raw, "id") if isinstance(raw, dict) else None
    value = raw[key] if key is not None else None
    return value if usable_id(value) else None


def usable_id(value: Any) -> bool:
    """An id Roster can keep in its links and action log, and put in a URL."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID and storable(value)


def storable(text: str) -> bool:
    """Text the action log and links can hold: no NUL (PostgreSQL refuses it) and no
    unpaired surrogate (JSON allows ``\\ud800``; UTF-8, and so every store, does not)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_key(body: Mapping[str, Any], name: str) -> str | None:
    """The key of ``body`` that spells ``name`` in any case (RFC 7643 §2.1)."""
    if name in body:
        return name
    folded = name.casefold()
    return next((key for key in body if isinstance(key, str) and key.casefold() == folded), None)


PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def patch_body(operations: list[dict[str, Any]]) -> dict[str, Any]:
    """A PatchOp request (RFC 7644 §3.5.2)."""
    return {"schemas": [PATCH_OP], "Operations": operations}
