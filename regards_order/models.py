"""Records of the REGARDS order protocol, and the tolerant parsing of every server dialect.

The real server, its older releases and its documentation disagree on the JSON they write
(see shared/regards/API.md). Every variant is accepted here and nowhere else: the rest of the
code only sees `Order`, `OrderFile` and `FilePage`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from regards_order.errors import MalformedResponse

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with control characters escaped, fit for one line of a log or a message."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class OrderStatus(StrEnum):
    """Every status an order can report, and what it means for a client."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    DONE_WITH_WARNING = "DONE_WITH_WARNING"
    DONE = "DONE"
    DELETED = "DELETED"
    ERROR = "ERROR"
    UNKNOWN = "UNKNOWN"

    @property
    def is_final(self) -> bool:
        """No more file will become available (files already available may still be)."""
        return self in _FINAL

    @property
    def files_gone(self) -> bool:
        """The server no longer serves the order's files."""
        return self in (OrderStatus.EXPIRED, OrderStatus.DELETED)

    @classmethod
    def parse(cls, value: object) -> OrderStatus:
        """A status from the server's spelling; unknown spellings are not final."""
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            return cls.UNKNOWN


_FINAL = frozenset(
    {
        OrderStatus.DONE,
        OrderStatus.DONE_WITH_WARNING,
        OrderStatus.FAILED,
        OrderStatus.EXPIRED,
        OrderStatus.DELETED,
        OrderStatus.ERROR,
    }
)


class Order(BaseModel):
    """What the order endpoint says of an order at one moment."""

    model_config = ConfigDict(frozen=True)

    id: int
    status: OrderStatus
    label: str | None = None
    owner: str | None = None
    percent_completed: int | None = None
    available_files_count: int | None = None
    files_in_error_count: int = 0
    waiting_for_user: bool | None = None
    expiration_date: datetime | None = None


class OrderFile(BaseModel):
    """One file of an order as the available-files listing describes it."""

    model_config = ConfigDict(frozen=True)

    id: int | None
    url: str
    filename: str
    size: int | None = None
    checksum: str | None = None
    product_id: str | None = None
    mime_type: str | None = None

    @property
    def key(self) -> str:
        """Identity of the file across listings: its id, or its URL where the server gives none."""
        return str(self.id) if self.id is not None else self.url

    def verification_problem(self) -> str | None:
        """Why this record cannot be verified against, or None when it can."""
        if self.checksum is None:
            return "the server gave no checksum for this file"
        if not _MD5_HEX.match(self.checksum):
            return f"the server's checksum {self.checksum[:40]!r} is not an MD5 (32 hex digits)"
        if self.size is not None and self.size < 0:
            return f"the server gave a negative size ({self.size})"
        return None


class FilePage(BaseModel):
    """One page of the available-files listing."""

    model_config = ConfigDict(frozen=True)

    files: tuple[OrderFile, ...]
    number: int
    total_pages: int | None
    has_next: bool


class OrderPage(BaseModel):
    """One page of the user's orders."""

    model_config = ConfigDict(frozen=True)

    orders: tuple[Order, ...]
    has_next: bool


def parse_order_page(body: object, *, requested_page: int) -> OrderPage:
    """An `OrderPage` from `GET /rs-order/user/orders` (a Spring page of wrapped orders)."""
    _, items, metadata = _spring_page(body, "order listing")
    orders = tuple(parse_order(item) for item in items)
    try:
        total_pages = _opt_int(metadata.get("totalPages"))
    except ValueError as error:
        raise MalformedResponse(f"the order listing's metadata is invalid: {error}") from None
    has_next = total_pages is not None and requested_page + 1 < total_pages
    return OrderPage(orders=orders, has_next=bool(orders) and has_next)


def parse_order(body: object) -> Order:
    """An `Order` from the order endpoint's answer (wrapped in `content` or not)."""
    document = _as_mapping(body, "order")
    content = document.get("content", document)
    content = _as_mapping(content, "order content")
    if "id" not in content or "status" not in content:
        raise MalformedResponse("the order answer has no id or status")
    try:
        return Order(
            id=int(content["id"]),
            status=OrderStatus.parse(content["status"]),
            label=_opt_str(content.get("label")),
            owner=_opt_str(content.get("owner")),
            percent_completed=_opt_int(content.get("percentCompleted")),
            available_files_count=_opt_int(content.get("availableFilesCount")),
            files_in_error_count=_opt_int(content.get("filesInErrorCount")) or 0,
            waiting_for_user=content.get("waitingForUser"),
            expiration_date=_opt_datetime(content.get("expirationDate")),
        )
    except (TypeError, ValueError) as error:
        raise MalformedResponse(f"the order answer has an invalid field: {error}") from None


def parse_file(item: object) -> OrderFile:
    """An `OrderFile` from one listing item, in any dialect."""
    entry = _as_mapping(item, "file item")
    inner = entry.get("content")
    # Wrapped HATEOAS items carry the record under "content" beside "links".
    if isinstance(inner, Mapping):
        entry = inner
    url = entry.get("downloadUrl") or entry.get("uri")
    filename = entry.get("filename")
    if not isinstance(url, str) or not url:
        raise MalformedResponse("a file item has neither downloadUrl nor uri")
    if not isinstance(filename, str):
        filename = ""
    size = entry.get("filesize", entry.get("fileSize"))
    checksum = entry.get("checksum")
    try:
        return OrderFile(
            id=_opt_int(entry.get("id")),
            url=url,
            filename=filename,
            size=_opt_int(size),
            checksum=str(checksum).strip().lower() if checksum is not None else None,
            product_id=_opt_str(entry.get("productId")),
            mime_type=_opt_str(entry.get("mimeType")),
        )
    except (TypeError, ValueError) as error:
        raise MalformedResponse(f"a file item has an invalid field: {error}") from None


def parse_page(body: object, *, requested_page: int) -> FilePage:
    """A `FilePage` from the listing's answer; `None` (a 204) is an empty last page."""
    if body is None:
        return FilePage(files=(), number=requested_page, total_pages=0, has_next=False)
    document, items, metadata = _spring_page(body, "file listing")
    files = tuple(parse_file(item) for item in items)
    try:
        total_pages = _opt_int(metadata.get("totalPages"))
        number = _opt_int(metadata.get("number"))
        total = _opt_int(metadata.get("totalElements"))
        page_size = _opt_int(metadata.get("size", metadata.get("size:")))
    except ValueError as error:
        raise MalformedResponse(f"the file listing's metadata is invalid: {error}") from None
    contradiction = (
        (number is not None and number != requested_page and f"page {number}, not {requested_page}")
        or (total is not None and len(files) > total and f"{total} files in all, yet {len(files)}")
        or (page_size is not None and len(files) > page_size and f"pages of {page_size}")
    )
    if contradiction:
        raise MalformedResponse(
            f"the file listing contradicts itself: its metadata says {contradiction} "
            f"while the page holds {len(files)} files"
        )
    number = requested_page if number is None else number
    links = document.get("links")
    has_next_link = isinstance(links, list) and any(
        isinstance(link, Mapping) and link.get("rel") == "next" for link in links
    )
    has_next = number + 1 < total_pages if total_pages is not None else has_next_link
    # A page without files ends the listing, whatever the metadata claims.
    return FilePage(
        files=files, number=number, total_pages=total_pages, has_next=bool(files) and has_next
    )


def _spring_page(body: object, what: str) -> tuple[Mapping[str, Any], list[Any], Mapping[str, Any]]:
    """A Spring page: the document, its items and its metadata (empty when absent)."""
    document = _as_mapping(body, what)
    items = document.get("content", [])
    if not isinstance(items, list):
        raise MalformedResponse(f"the {what}'s content is not a list")
    metadata = document.get("metadata")
    return document, items, metadata if isinstance(metadata, Mapping) else {}


def _as_mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"the {what} is not a JSON object")
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise ValueError(f"expected a whole number, got {value!r}")


def _opt_datetime(value: object) -> datetime | None:
    if value is None:
        return None
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
