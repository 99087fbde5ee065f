"""Where a run's REGARDS credentials come from: never from its parameters.

In order: what the caller passed in-process (the command line), a Prefect Secret block named by
the connection, then REGARDS_TOKEN / REGARDS_PASSWORD in the environment of the process that
runs the flow (a worker, a served deployment).
"""

from __future__ import annotations

import os

from prefect.blocks.system import Secret
from pydantic import SecretStr

from regards_order.errors import ConfigurationError
from regards_order.settings import Connection


async def resolve_credentials(connection: Connection) -> Connection:
    """`connection` with its password or token filled in, or a ConfigurationError."""
    if connection.token is not None or connection.password is not None:
        return connection
    update: dict[str, SecretStr] = {}
    if connection.token_block:
        update["token"] = SecretStr(await _secret(connection.token_block))
    elif connection.password_block:
        update["password"] = SecretStr(await _secret(connection.password_block))
    elif os.environ.get("REGARDS_TOKEN"):
        update["token"] = SecretStr(os.environ["REGARDS_TOKEN"])
    elif os.environ.get("REGARDS_PASSWORD"):
        update["password"] = SecretStr(os.environ["REGARDS_PASSWORD"])
    resolved = connection.model_copy(update=update)
    problem = resolved.credentials_problem()
    if problem is not None:
        raise ConfigurationError(
            f"{problem}: name a Secret block (password_block or token_block) or set "
            "REGARDS_PASSWORD or REGARDS_TOKEN where the flow runs"
        )
    return resolved


async def _secret(name: str) -> str:
    try:
        block = await Secret.aload(name)
    except ValueError as error:
        raise ConfigurationError(f"no Prefect Secret block named {name!r}: {error}") from None
    value = block.get()
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"the Secret block {name!r} does not hold a text value")
    return value
