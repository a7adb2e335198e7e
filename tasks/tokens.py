"""An app's secret (a bearer token, a database password), from where its configuration
says: an environment variable (``token_env``) or a Prefect Secret block (``token_secret``).

Read when the app's connector is built, never stored. The token comes back as a
``pydantic.SecretStr``, so a repr or a log line of anything holding it shows ``**********``.
A missing or unusable token is a ``TokenError`` that names the app and the variable or
block, never the value.
"""

from __future__ import annotations

import os
import re
from typing import cast

from pydantic import SecretStr, ValidationError

from directory.config import AppConfig, HttpAppConfig, TokenError

#: Visible ASCII only. A newline or a space inside the token would make the
#: Authorization header illegal, and HTTP libraries quote illegal header values in
#: their error messages (h11: "Illegal header value b'Bearer ...'").
_USABLE = re.compile(r"[\x21-\x7e]+")


def resolve_token(app: AppConfig) -> SecretStr:
    """The app's token, surrounding whitespace removed (secrets mounted from files often
    end with a newline)."""
    raw = _from_env(app) if app.token_env is not None else _from_block(app)
    token = raw.strip()
    if not token:
        raise TokenError(app.name, app.token_source, "is empty")
    # a database password travels in the connection handshake, where any text is fine
    if isinstance(app, HttpAppConfig) and not _USABLE.fullmatch(token):
        raise TokenError(
            app.name,
            app.token_source,
            "holds spaces, control or non-ASCII characters inside the token:"
            " it cannot be sent in an Authorization header",
        )
    return SecretStr(token)


def check_env_token(app: AppConfig) -> None:
    """Fail fast on an app whose token variable is unset; no-op for Secret blocks, which
    need the Prefect API and are read when the connector is built."""
    if app.token_env is not None:
        resolve_token(app)


def _from_env(app: AppConfig) -> str:
    assert app.token_env is not None
    value = os.environ.get(app.token_env)
    if value is None:
        raise TokenError(app.name, app.token_source, "is not set")
    return value


def _from_block(app: AppConfig) -> str:
    from prefect.blocks.system import Secret  # Prefect only for apps that use a block

    assert app.token_secret is not None
    # Each cause is dropped (``from None``): a ValidationError would quote the block's data.
    try:
        # a sync call outside an event loop returns the block (async_dispatch's union type)
        block = cast(Secret, Secret.load(app.token_secret))
    except ValidationError:
        raise TokenError(app.name, app.token_source, "is not a valid Secret block") from None
    except ValueError:  # Block.load: "Unable to find block document named ..."
        raise TokenError(app.name, app.token_source, "was not found") from None
    except Exception as exc:  # the Prefect API is unreachable, or refuses us
        raise TokenError(
            app.name, app.token_source, f"could not be read: {type(exc).__name__}"
        ) from None
    value = block.get()
    if isinstance(value, str):
        return value
    # Secret.get() parses JSON: a numeric token comes back as a number; the stored
    # string is the token. A JSON object or list is not a token.
    stored = block.value.get_secret_value()
    if isinstance(value, (dict, list)) or not isinstance(stored, str):
        raise TokenError(app.name, app.token_source, "holds a JSON value, not a token string")
    return stored
