"""Settings: where the REGARDS server is, who we are, and how to download.

One validated object each, shared by the command line, the flow parameters and the tasks.
Secrets are `SecretStr`: printed and serialised as `**********`, never as their value.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.json_schema import SkipJsonSchema

#: REGARDS' default OAuth2 client secret, shipped with every installation.
DEFAULT_CLIENT_SECRET = "secret"  # noqa: S105 - a public default, not a credential


@dataclass(frozen=True)
class Cli:
    """How a setting appears on the command line where its name alone does not say it (the
    option is otherwise `--<name>`, its variable `REGARDS_<NAME>`)."""

    #: The option's own name, e.g. `--insecure` for verify_tls.
    flag: str | None = None
    #: A flag that sets the setting to False (`--insecure`: do not verify TLS).
    inverted: bool = False
    #: A dict setting also taken as a repeatable `KEY=VALUE` option of this name.
    pairs: str | None = None
    #: The option's help, where the field's description does not fit a flag (an inverted one).
    help: str | None = None


class Connection(BaseModel):
    """How to reach and authenticate to one REGARDS server."""

    model_config = ConfigDict(frozen=True, title="REGARDS connection")

    host: str = Field(
        title="REGARDS host",
        description="Base URL of the REGARDS gateway, e.g. https://regards.example.org "
        "(the client adds /api/v1).",
    )
    project: str = Field(
        title="Project",
        description="REGARDS project (tenant), sent as the OAuth2 scope.",
        min_length=1,
    )
    username: str = Field(
        default="", title="Username", description="REGARDS user (usually an e-mail address)."
    )
    # The password, the token and a site's own client secret never travel as flow
    # parameters: they are excluded from serialisation and from the parameter form. They come
    # from the command line in-process, from a Prefect Secret block named below, or from the
    # environment of the process that runs the flow.
    password: SkipJsonSchema[SecretStr | None] = Field(
        default=None,
        exclude=True,
        description="The user's password (prefer the variable or the prompt).",
    )
    token: SkipJsonSchema[SecretStr | None] = Field(
        default=None, exclude=True, description="A ready Bearer token instead of a login."
    )
    password_block: str = Field(
        default="",
        title="Password Secret block",
        description="Name of a Prefect Secret block holding the user's password "
        "(default: REGARDS_PASSWORD where the flow runs).",
    )
    token_block: str = Field(
        default="",
        title="Token Secret block",
        description="Name of a Prefect Secret block holding a ready Bearer token, used instead "
        "of a password (default: REGARDS_TOKEN where the flow runs).",
    )
    client_id: str = Field(
        default="client",
        title="OAuth2 client id",
        description="Basic credentials of the token endpoint (REGARDS' default is 'client').",
    )
    client_secret: SkipJsonSchema[SecretStr | None] = Field(
        default=None,
        exclude=True,
        description="Basic password of the token endpoint (default: REGARDS' own, 'secret').",
    )
    client_secret_block: str = Field(
        default="",
        title="Client secret Secret block",
        description="Name of a Prefect Secret block holding the site's own OAuth2 client "
        "secret (default: REGARDS_CLIENT_SECRET where the flow runs, else REGARDS' own).",
    )
    verify_tls: Annotated[
        bool,
        Cli(flag="--insecure", inverted=True, help="Do not verify the server's TLS certificate."),
    ] = Field(default=True, title="Verify TLS", description="Check the server's TLS certificate.")
    ca_bundle: str = Field(
        default="",
        title="CA bundle",
        description="PEM file of certificate authorities to trust instead of the system's.",
    )
    read_timeout: float = Field(
        default=60.0,
        gt=0,
        title="Read timeout (s)",
        description="Seconds without a byte from the server before a request fails.",
    )

    @field_validator(
        "username", "password_block", "token_block", "client_secret_block", "ca_bundle",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        # An optional text is empty when unset: the run form then shows a plain input that can
        # be filled in at once, not a switch between a type and None to set first.
        return "" if value is None else value.strip() if isinstance(value, str) else value

    @field_validator("client_id", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        return "client" if isinstance(value, str) and not value.strip() else value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        # The API's own base URL, as users often copy it, names the same server.
        value = value.strip().rstrip("/").removesuffix("/api/v1").rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"host must be an http(s) URL such as https://regards.example.org, got {value!r}"
            )
        return value

    def credentials_problem(self) -> str | None:
        """Why these settings cannot authenticate, or None when they can."""
        if self.token is None and (not self.username or self.password is None):
            return "no credentials: give a token, or a username and a password"
        return None

    @property
    def user_key(self) -> str:
        """A name for this user on this server, fit for Prefect limits and variables."""
        if self.username:
            who = self.username
        elif self.token is not None:
            # Not the token itself: a short digest names the holder without revealing it.
            who = "token-" + hashlib.sha256(self.token.get_secret_value().encode()).hexdigest()[:10]
        else:
            who = "anonymous"
        raw = f"{urlsplit(self.host).netloc}-{who}".lower()
        return re.sub(r"[^a-z0-9-]+", "-", raw).strip("-")

    @property
    def client_secret_value(self) -> str:
        """The client secret to send: the site's own, or REGARDS' default."""
        if self.client_secret is None:
            return DEFAULT_CLIENT_SECRET
        return self.client_secret.get_secret_value()

    @property
    def api_url(self) -> str:
        """Base URL of the REST API."""
        return f"{self.host}/api/v1"


class TaskRunnerKind(StrEnum):
    """Where the file transfers run."""

    THREADS = "threads"  # a bounded thread pool in the flow's process
    DASK = "dask"  # the worker processes of a Dask cluster (local, or given by address)


class DownloadOptions(BaseModel):
    """How to download an order: parallelism, polling, deadline, retries, storage."""

    model_config = ConfigDict(frozen=True, title="Download options")

    concurrency: int = Field(
        default=4, ge=1, le=64, title="Concurrency", description="Files transferred in parallel."
    )
    poll_interval: float = Field(
        default=5.0,
        gt=0,
        title="Poll interval (s)",
        description="Initial seconds between two looks at the order; grows while nothing changes.",
    )
    max_poll_interval: float = Field(
        default=120.0,
        gt=0,
        title="Longest poll interval (s)",
        description="Cap of the growing interval between two looks at the order.",
    )
    timeout: float = Field(
        default=0,
        ge=0,
        title="Deadline (s)",
        description="Give up after this many seconds in all (0: no deadline).",
    )
    page_size: int = Field(
        default=500,
        ge=1,
        le=2000,
        title="Page size",
        description="Files asked per page of the available-files listing (server maximum 2000).",
    )
    retries: int = Field(
        default=5,
        ge=0,
        le=50,
        title="Retries per file",
        description="Further attempts of a file after a transient failure.",
    )
    retry_delay: float = Field(
        default=2.0,
        ge=0,
        title="First retry delay (s)",
        description="Delay before the first retry of a file; doubles each time, with jitter.",
    )
    max_poll_errors: int = Field(
        default=20,
        ge=1,
        title="Poll failures tolerated",
        description="Consecutive transient failures of the order's status before giving up.",
    )
    task_runner: TaskRunnerKind = Field(
        default=TaskRunnerKind.THREADS,
        title="Task runner",
        description="threads: a thread pool in the flow's process; dask: the worker processes "
        "of a Dask cluster (one huge order spread over several processes or machines).",
    )
    dask_address: str = Field(
        default="",
        title="Dask scheduler address",
        description="An existing Dask cluster (tcp://host:8786); empty: start a local one.",
    )
    dask_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        title="Local Dask workers",
        description="Worker processes of the local Dask cluster (when no address is given).",
    )
    user_transfer_limit: int = Field(
        default=0,
        ge=0,
        title="Transfers per REGARDS user, across all runs",
        description="A Prefect global concurrency limit, created if missing and named after "
        "the REGARDS user, caps that user's file transfers across every run and worker; "
        "a 429 then pauses them all for its Retry-After (0: no shared limit).",
    )
    storage_options: Annotated[dict[str, Any], Cli(pairs="--storage-option")] = Field(
        default_factory=dict,
        title="Storage options",
        description='Options passed to fsspec for the target, e.g. {"endpoint_url": '
        '"https://s3.example.org"} for S3. Credentials do not go here: they come from the '
        "environment, profiles or instance roles.",
    )

    @field_validator("timeout", "user_transfer_limit", mode="before")
    @classmethod
    def _none_is_zero(cls, value: object) -> object:
        # As for texts (see Connection): unset is 0, so that the run form's input is plain.
        return 0 if value is None else value

    @field_validator("dask_address", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("storage_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_no_credentials(value)
        return value


#: Storage option names that would carry a credential: those come from the environment,
#: profiles or instance roles, never from a parameter that Prefect stores and shows.
CREDENTIAL_OPTIONS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "session_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "account_key",
        "sas_token",
        "client_secret",
    }
)


def parse_storage_options(pairs: list[str], document: str | None = None) -> dict[str, Any]:
    """Storage options from a JSON object and `KEY=VALUE` pairs (pairs win).

    Values are JSON where they parse as JSON (`true`, `3`, `{"a": 1}`), text otherwise; a
    dotted key reaches a nested option (`client_kwargs.endpoint_url=...`).
    """
    options: dict[str, Any] = {}
    if document:
        try:
            loaded = json.loads(document)
        except ValueError as error:
            raise ValueError(f"storage options are not valid JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise ValueError("storage options must be a JSON object")
        options.update(loaded)
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"storage option {pair!r} is not KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.strip().split(".")
        node = options
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"storage option {key!r}: {part!r} is not a group of options")
            node = child
        node[leaf] = value
    check_no_credentials(options)
    return options


def check_no_credentials(options: dict[str, Any], where: str = "") -> None:
    """Refuse storage options that carry credentials (see CREDENTIAL_OPTIONS)."""
    for key, value in options.items():
        if key.lower() in CREDENTIAL_OPTIONS:
            raise ValueError(
                f"storage option {where}{key} would carry a credential: use the standard "
                "environment variables, profiles or instance roles instead"
            )
        if isinstance(value, dict):
            check_no_credentials(value, f"{where}{key}.")
