"""LDAP result codes to Roster's exception tree (RFC 4511 Appendix A): literal results."""

from __future__ import annotations

import pytest

from connectors.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    TransientError,
)
from connectors.ldap.results import check_result
from connectors.redact import protect


@pytest.mark.parametrize(
    ("code", "description", "error"),
    [
        (49, "invalidCredentials", AuthError),
        (50, "insufficientAccessRights", AuthError),
        (8, "strongerAuthRequired", AuthError),
        (32, "noSuchObject", NotFoundError),
        (68, "entryAlreadyExists", ConflictError),
        (51, "busy", TransientError),
        (52, "unavailable", TransientError),
        (3, "timeLimitExceeded", TransientError),
        (65, "objectClassViolation", BadRequestError),
        (21, "invalidAttributeSyntax", BadRequestError),
        (53, "unwillingToPerform", BadRequestError),
    ],
)
def test_each_code_is_its_error_with_the_code_in_the_message(
    code: int, description: str, error: type[ConnectorError]
) -> None:
    result = {"result": code, "description": description, "message": "why"}
    with pytest.raises(error) as caught:
        check_result("modify", "uid=a,dc=x", result)
    assert str(caught.value) == f"modify uid=a,dc=x: {code} {description}: why"
    assert caught.value.status == code


def test_success_and_expected_codes_pass_and_server_text_is_redacted() -> None:
    assert check_result("search", "dc=x", {"result": 0}) == 0
    assert check_result("modify", "cn=g", {"result": 20}, frozenset({20})) == 20
    protect("s3cret-echoed-9f2")
    result = {"result": 80, "description": "other", "message": "bad s3cret-echoed-9f2"}
    with pytest.raises(BadRequestError) as caught:
        check_result("bind", "as cn=r", result)
    assert "s3cret-echoed-9f2" not in str(caught.value)
