"""Where a run's REGARDS credentials come from: never from its parameters.

In order: what the caller passed in-process (the command line), a Prefect Secret block named by
the connection, then REGARDS_TOKEN / REGARDS_PASSWORD in the environment of the process that
runs the flow (a worker, a served deployment). A site's own OAuth2 client secret likewise:
in-process, its Secret block, REGARDS_CLIENT_SECRET, else REGARDS' default.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.blocks.system import Secret
from pydantic import SecretStr

from regards_order.errors import ConfigurationError
from regards_order.settings import Connection


async def resolve_credentials(connection: Connection) -> Connection:
    """`connection` with its password or token (and client secret) filled in, or a
    ConfigurationError."""
    update: dict[str, SecretStr] = {}
    if connection.client_secret is None:
        if connection.client_secret_block:
            update["client_secret"] = SecretStr(await _secret(connection.client_secret_block))
        elif os.environ.get("REGARDS_CLIENT_SECRET"):
            update["client_secret"] = SecretStr(os.environ["REGARDS_CLIENT_SECRET"])
    if connection.token is None and connection.password is None:
        update |= await _user_secret(connection)
    resolved = connection.model_copy(update=update)
    problem = resolved.credentials_problem()
    if problem is not None:
        raise ConfigurationError(
            f"{problem}: name a Secret block (password_block or token_block) or set "
            "REGARDS_PASSWORD or REGARDS_TOKEN where the flow runs"
        )
    return resolved


async def _user_secret(connection: Connection) -> dict[str, SecretStr]:
    if connection.token_block:
        return {"token": SecretStr(await _secret(connection.token_block))}
    if connection.password_block:
        return {"password": SecretStr(await _secret(connection.password_block))}
    if os.environ.get("REGARDS_TOKEN"):
        return {"token": SecretStr(os.environ["REGARDS_TOKEN"])}
    if os.environ.get("REGARDS_PASSWORD"):
        return {"password": SecretStr(os.environ["REGARDS_PASSWORD"])}
    return {}


async def _secret(name: str) -> str:
    try:
        block: Secret[Any] = await Secret.aload(name)
    except ValueError as error:
        raise ConfigurationError(f"no Prefect Secret block named {name!r}: {error}") from None
    value: object = block.get()
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"the Secret block {name!r} does not hold a text value")
    return value
