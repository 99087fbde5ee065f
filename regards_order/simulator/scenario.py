"""Scenario file of the REGARDS simulator: pydantic models and loader.

A scenario describes the fake server: its credentials, users (with their download quotas and
baskets), suborder limits, orders, the catalogue one may order from, plus faults to inject and
switches that make the server an older or stricter one. Every key has a default so that ``{}``
is a valid (empty) scenario.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from regards_order.simulator.content import literal_key

Endpoint = Literal[
    "token", "order", "files", "download", "dataset_files", "search", "basket", "apply", "quota"
]


class _Model(BaseModel):
    # Typos in a hand-written scenario must fail loudly rather than silently use a default.
    model_config = ConfigDict(extra="forbid")


class FaultBase(_Model):
    """What every fault has: how many matching requests it answers."""

    # None: every matching request, forever (later faults of the list never apply).
    times: int | None = Field(default=1, ge=0)


class StatusFault(FaultBase):
    """Answer an HTTP status (and ``Retry-After`` when given) instead of the real answer."""

    kind: Literal["status"]
    status: int = Field(ge=200, le=599)
    retry_after: int | None = Field(default=None, ge=0)


class TruncateFault(FaultBase):
    """Announce the full length, send ``at_byte`` bytes, then close the connection."""

    kind: Literal["truncate"]
    at_byte: int = Field(ge=0)


class CorruptFault(FaultBase):
    """Send a full-length body whose bytes are wrong."""

    kind: Literal["corrupt"]


class SlowFault(FaultBase):
    """Throttle the body to ``bytes_per_second``."""

    kind: Literal["slow"]
    bytes_per_second: int = Field(gt=0)


class StallFault(FaultBase):
    """After ``at_byte`` bytes, pause ``seconds`` then continue."""

    kind: Literal["stall"]
    at_byte: int = Field(ge=0)
    seconds: float = Field(ge=0)


AnyFileFault = StatusFault | TruncateFault | CorruptFault | SlowFault | StallFault
FileFault = Annotated[AnyFileFault, Field(discriminator="kind")]


class GlobalFault(FaultBase):
    """A fault applied to every request of one endpoint, before authentication."""

    endpoint: Endpoint
    kind: Literal["status", "malformed_json", "html", "empty", "bad_metadata"]
    status: int | None = Field(default=None, ge=200, le=599)
    retry_after: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _status_given(self) -> GlobalFault:
        if self.kind == "status" and self.status is None:
            raise ValueError("a 'status' fault needs a 'status' code")
        return self


class User(_Model):
    """A user: a password for OAuth logins and/or long-lived tokens that never expire."""

    username: str
    password: str | None = None
    tokens: list[str] = Field(default_factory=list)
    # Download quota of rs-storage: simultaneous downloads, and downloads in all; -1 unlimited.
    rate_limit: int = Field(default=-1, ge=-1)
    max_quota: int = Field(default=-1, ge=-1)
    # The basket left in the web interface: queries already selected. None: no basket at all.
    basket: list[str] | None = None
    # How many orders (not DELETED) the user may have: beyond, an auto-order is DENIED.
    orders_limit: int | None = Field(default=None, ge=0)


class FileSpec(_Model):
    """One file of an order as written in the scenario."""

    id: int | None = Field(default=None, ge=1)
    filename: str = Field(min_length=1)
    size: int = Field(ge=0)
    product_id: str | None = None
    mime_type: str = "application/octet-stream"
    in_error: bool = False
    checksum: str | None = None
    # The size the listing announces: null for the real one, "absent" to leave it out.
    listed_size: int | Literal["absent"] | None = None
    faults: list[FileFault] = Field(default_factory=list)
    # The file's very bytes, in base64 (an archive, say); its size is then theirs.
    content_base64: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _size_of_content(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("content_base64") is not None:
            data = {**data, "size": len(base64.b64decode(data["content_base64"]))}
        return data


class Generate(_Model):
    """``count`` identical-size files named ``name.format(i=index)``, index from 0."""

    count: int = Field(ge=0)
    size: int = Field(ge=0)
    name: str = "file-{i:05d}.dat"
    mime_type: str = "application/octet-stream"

    @field_validator("name")
    @classmethod
    def _name_formats(cls, name: str) -> str:
        try:
            name.format(i=0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"name must be a format string using only {{i}}: {exc}") from exc
        return name


class ApplyFault(FaultBase):
    """Refuse the next auto-order(s) with a 422 of this status and error type."""

    status: Literal["DENIED", "FAILED"] = "DENIED"
    error_type: Literal[
        "INVALID_CONTENT", "FORBIDDEN", "ORDER_LIMIT_REACHED", "EMPTY_ORDER", "INTERNAL_ERROR"
    ] = "FORBIDDEN"
    message: str = "Simulated refusal"


DataType = Literal[
    "RAWDATA",
    "QUICKLOOK_SD",
    "QUICKLOOK_MD",
    "QUICKLOOK_HD",
    "THUMBNAIL",
    "DOCUMENT",
    "DESCRIPTION",
    "AIP",
    "OTHER",
]


class ProductFile(_Model):
    """A file of a catalogue product; its content and MD5 are deterministic."""

    filename: str = Field(min_length=1)
    size: int = Field(ge=0)
    mime_type: str = "application/octet-stream"
    # Once ordered: a storage error at restoration, faults when downloaded.
    in_error: bool = False
    faults: list[FileFault] = Field(default_factory=list)


class Dataset(_Model):
    """A dataset of the catalogue; products belong to one."""

    id: str | None = None  # URN:AIP:DATASET:<project>:<uuid>:V1, generated from the label
    label: str = "Default dataset"


class Product(_Model):
    """A data object of the catalogue (a feature)."""

    id: str | None = None  # URN:AIP:DATA:<project>:<uuid>:V1, generated from providerId
    provider_id: str = Field(min_length=1)
    label: str | None = None  # the providerId when absent
    model: str = "DATA_MODEL"
    tags: list[str] = Field(default_factory=list)
    properties: dict[str, Any] = Field(default_factory=dict)
    geometry: dict[str, Any] | None = None
    dataset: str | None = None  # a dataset's id or label; the first dataset when absent
    files: dict[DataType, list[ProductFile]] = Field(default_factory=dict)


_RAW_NAME: dict[DataType, str] = {"RAWDATA": "{provider_id}.dat"}


class GenerateProducts(_Model):
    """``count`` products; names and string properties are formatted with ``i`` (from 0).

    Each product gets the number ``i`` as property ``index`` and one file per entry of
    ``files`` (data type -> file name format), of ``size`` bytes.
    """

    count: int = Field(ge=0)
    provider_id: str = "product-{i:05d}"
    label: str | None = None
    model: str = "DATA_MODEL"
    tags: list[str] = Field(default_factory=list)
    properties: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = None
    files: dict[DataType, str] = Field(default_factory=lambda: dict(_RAW_NAME))
    size: int = Field(default=1000, ge=0)

    @model_validator(mode="after")
    def _formats(self) -> GenerateProducts:
        try:
            self.provider_id.format(i=0)
            (self.label or "").format(i=0)
            for value in self.properties.values():
                if isinstance(value, str):
                    value.format(i=0)
            for name in self.files.values():
                name.format(i=0, provider_id="p")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad format string: {exc}") from exc
        return self


class Catalog(_Model):
    """What the legacy search engine finds and what an auto-order can order."""

    datasets: list[Dataset] = Field(default_factory=lambda: [Dataset()])
    products: list[Product] = Field(default_factory=list)
    generate: list[GenerateProducts] = Field(default_factory=list)

    @model_validator(mode="after")
    def _datasets_known(self) -> Catalog:
        if not self.datasets:
            raise ValueError("a catalogue needs at least one dataset")
        known = {d.label for d in self.datasets} | {d.id for d in self.datasets if d.id}
        wanted = [p.dataset for p in self.products] + [g.dataset for g in self.generate]
        for dataset in wanted:
            if dataset is not None and dataset not in known:
                raise ValueError(f"unknown dataset {dataset!r}")
        return self


class OrderSpec(_Model):
    """One order of the scenario."""

    id: int = Field(ge=1)
    owner: str = "demo@example.org"
    label: str = ""
    dialect: Literal["current", "legacy", "docs"] = "current"
    state: Literal["normal", "expired", "deleted", "paused"] = "normal"
    expiration_date: str | None = None
    files: list[FileSpec] = Field(default_factory=list)
    generate: list[Generate] = Field(default_factory=list)
    dataset_label: str = "Default dataset"  # of its one dataset task


def _default_users() -> list[User]:
    # The simulator's well-known demo account: a password for logins and a long-lived token.
    demo = {"username": "demo@example.org", "password": "demo", "tokens": ["a-long-lived-token"]}
    return [User.model_validate(demo)]


@dataclass(frozen=True)
class ResolvedFile:
    """A file with its final id and product id, as the simulator serves it."""

    id: int
    order_id: int
    filename: str
    size: int
    product_id: str
    mime_type: str
    in_error: bool
    checksum: str | None
    faults: tuple[AnyFileFault, ...]
    listed_size: int | Literal["absent"] | None = None
    # The bytes served are those of content key (a, b); None: (order_id, id).
    content: tuple[int, int] | None = None
    ip_id: str | None = None  # the product's URN; None: product_id
    data_type: str = "RAWDATA"


class Scenario(_Model):
    """The whole simulated server."""

    project: str = "demo"
    client_id: str = "client"
    client_secret: str = "secret"  # noqa: S105 - REGARDS' default public client secret
    token_lifetime: float = Field(default=7200.0, gt=0)
    users: list[User] = Field(default_factory=_default_users)
    max_active_suborders: int = Field(default=2, ge=1)
    suborder_max_files: int = Field(default=5000, ge=1)
    suborder_max_bytes: int = Field(default=100_000_000, ge=1)
    restore_seconds: float = Field(default=0.0, ge=0)
    default_page_size: int = Field(default=10, ge=1)
    max_page_size: int = Field(default=2000, ge=1)
    orders: list[OrderSpec] = Field(default_factory=list)
    faults: list[GlobalFault] = Field(default_factory=list)
    catalog: Catalog = Field(default_factory=Catalog)
    apply_faults: list[ApplyFault] = Field(default_factory=list)
    # An older server without the endpoint listing every file of a dataset task: 404.
    dataset_files_endpoint: bool = True
    # rs-storage's current-quota endpoint: served, absent (404) or forbidden (403).
    quota_endpoint: Literal["present", "absent", "forbidden"] = "present"
    # Storage sends no Retry-After with a quota 429; a number adds one.
    quota_retry_after: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _unique_ids(self) -> Scenario:
        order_ids = [o.id for o in self.orders]
        if len(set(order_ids)) != len(order_ids):
            raise ValueError("order ids must be unique")
        file_ids = [f.id for o in self.orders for f in o.files if f.id is not None]
        if len(set(file_ids)) != len(file_ids):
            raise ValueError("explicit file ids must be unique across all orders")
        names = [u.username for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("usernames must be unique")
        return self

    def resolve(self) -> dict[int, list[ResolvedFile]]:
        """Expand ``generate`` entries and assign missing ids; order id -> files sorted by id."""
        taken = {f.id for o in self.orders for f in o.files if f.id is not None}
        next_id = 1

        def fresh_id() -> int:
            nonlocal next_id
            while next_id in taken:
                next_id += 1
            taken.add(next_id)
            return next_id

        def resolved(
            order_id: int, fid: int, name: str, size: int, spec: FileSpec | None, mime: str
        ) -> ResolvedFile:
            return ResolvedFile(
                id=fid,
                order_id=order_id,
                filename=name,
                size=size,
                product_id=(spec and spec.product_id) or self.default_product_id(fid),
                mime_type=mime,
                in_error=spec.in_error if spec else False,
                checksum=spec.checksum if spec else None,
                faults=tuple(spec.faults) if spec else (),
                listed_size=spec.listed_size if spec else None,
                content=literal_key(base64.b64decode(spec.content_base64))
                if spec and spec.content_base64 is not None
                else None,
            )

        result: dict[int, list[ResolvedFile]] = {}
        for order in self.orders:
            files = [
                resolved(order.id, s.id or fresh_id(), s.filename, s.size, s, s.mime_type)
                for s in order.files
            ]
            # Skip FileSpec validation here: a generated order may hold 100k files.
            for gen in order.generate:
                files += [
                    resolved(
                        order.id, fresh_id(), gen.name.format(i=i), gen.size, None, gen.mime_type
                    )
                    for i in range(gen.count)
                ]
            result[order.id] = sorted(files, key=lambda f: f.id)
        return result

    def default_product_id(self, file_id: int) -> str:
        """The REGARDS-like URN of a file's product, stable for a given project and file id."""
        product_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"regards-sim:{self.project}:{file_id}")
        return f"URN:AIP:DATA:{self.project}:{product_uuid}:V1"


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario JSON file."""
    return Scenario.model_validate_json(Path(path).read_text(encoding="utf-8"))
