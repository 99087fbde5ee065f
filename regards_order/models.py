"""Records of the REGARDS order protocol, and the tolerant parsing of every server dialect.

The real server, its older releases and its documentation disagree on the JSON they write
(see docs/regards-server.md). Every variant is accepted here and nowhere else: the rest of the
code only sees `Order`, `OrderFile` and `FilePage`, and for ordering from the catalogue
`Product`, `ProductPage`, `Basket`, `Quota`, `OrderGrant` and `ServerFile`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
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


class DatasetTask(BaseModel):
    """The part of an order that comes from one dataset (`datasetTasks[]` of an order)."""

    model_config = ConfigDict(frozen=True)

    id: int
    label: str | None = None
    files_count: int | None = None
    files_size: int | None = None
    #: The data types its files were filtered on (`fileSelectionDescription.fileTypes`), and
    #: the file name pattern, where the server shows them (None: not shown).
    file_types: tuple[str, ...] | None = None
    filename_pattern: str | None = None


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
    creation_date: datetime | None = None
    dataset_tasks: tuple[DatasetTask, ...] = ()

    @property
    def dataset_task_ids(self) -> tuple[int, ...]:
        """The ids that list every file of the order, one dataset task at a time."""
        return tuple(task.id for task in self.dataset_tasks)


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
    document, items, metadata = _spring_page(body, "order listing")
    orders = tuple(parse_order(item) for item in items)
    total_pages, _ = _page_numbers(metadata, requested_page, "order listing")
    # Without metadata, a `next` link says whether a page follows (as for the file listing).
    has_next = _has_next(document, requested_page, total_pages)
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
            creation_date=_opt_datetime(content.get("creationDate")),
            dataset_tasks=_dataset_tasks(content.get("datasetTasks")),
        )
    except (TypeError, ValueError) as error:
        raise MalformedResponse(f"the order answer has an invalid field: {error}") from None


def _dataset_tasks(value: object) -> tuple[DatasetTask, ...]:
    """The order's dataset tasks; servers that do not show them give none."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("datasetTasks is not a list")
    tasks = []
    for item in value:
        task = _as_mapping(item, "dataset task")
        if task.get("id") is None:
            raise ValueError("a dataset task has no id")
        described = task.get("fileSelectionDescription")
        described = described if isinstance(described, Mapping) else {}
        types = described.get("fileTypes")
        tasks.append(
            DatasetTask(
                id=_int(task["id"]),
                label=_opt_str(task.get("datasetLabel")),
                files_count=_opt_int(task.get("filesCount")),
                files_size=_opt_int(task.get("filesSize")),
                file_types=tuple(str(t) for t in types) if isinstance(types, list) else None,
                filename_pattern=_opt_str(described.get("fileNamePattern")),
            )
        )
    return tuple(tasks)


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


# -- ordering from the catalogue ------------------------------------------------------------


class DataType(StrEnum):
    """What an auto-order can be filtered on: raw data, or every size of quicklook."""

    RAWDATA = "RAWDATA"
    QUICKLOOK = "QUICKLOOK"

    def covers(self, server_type: str) -> bool:
        """Whether a file the catalogue lists under `server_type` is of this type (QUICKLOOK
        stands for QUICKLOOK_SD, _MD and _HD, as the server's file filter reads it)."""
        if self is DataType.QUICKLOOK:
            return server_type in _QUICKLOOK_SIZES
        return server_type == self.value


_QUICKLOOK_SIZES = frozenset({"QUICKLOOK_SD", "QUICKLOOK_MD", "QUICKLOOK_HD"})


class CatalogFile(BaseModel):
    """One file of a catalogue product."""

    model_config = ConfigDict(frozen=True)

    data_type: str
    filename: str
    size: int | None = None
    checksum: str | None = None
    mime_type: str | None = None


class Product(BaseModel):
    """A data object of the catalogue (a feature of the search engine)."""

    model_config = ConfigDict(frozen=True)

    id: str  # URN:AIP:DATA:<project>:<uuid>:V1
    provider_id: str | None = None
    label: str | None = None
    #: Its files by the server's data type (RAWDATA, QUICKLOOK_SD, THUMBNAIL...).
    files: dict[str, tuple[CatalogFile, ...]] = {}

    def files_of(self, data_types: Iterable[DataType]) -> list[CatalogFile]:
        """Its files of any of `data_types`."""
        wanted = tuple(data_types)
        return [
            file
            for server_type, files in self.files.items()
            if any(data_type.covers(server_type) for data_type in wanted)
            for file in files
        ]


class ProductPage(BaseModel):
    """One page of a catalogue search."""

    model_config = ConfigDict(frozen=True)

    products: tuple[Product, ...]
    number: int
    total_elements: int | None
    has_next: bool


class Basket(BaseModel):
    """The user's basket: what an auto-order would order beside its own queries."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    owner: str | None = None
    #: Dataset selections, and the queries (items selections) in them.
    selections: int = 0
    items: int = 0

    @property
    def is_empty(self) -> bool:
        """Nothing in it: an auto-order would order its own queries only."""
        return self.selections == 0


class Quota(BaseModel):
    """The user's download quota (`/rs-storage/quota/current`); -1 means unlimited."""

    model_config = ConfigDict(frozen=True)

    max_quota: int = -1  # downloads in all
    rate_limit: int = -1  # downloads at once
    current_quota: int = 0
    current_rate: int = 0

    @property
    def simultaneous_limit(self) -> int | None:
        """How many downloads may run at once, or None when unlimited."""
        return None if self.rate_limit < 0 else self.rate_limit

    @property
    def downloads_left(self) -> int | None:
        """How many downloads the user has left, or None when unlimited."""
        return None if self.max_quota < 0 else max(0, self.max_quota - self.current_quota)


class OrderGrant(BaseModel):
    """A granted auto-order."""

    model_config = ConfigDict(frozen=True)

    order_id: int
    correlation_id: str | None = None


class ApplyAnswer(BaseModel):
    """What an auto-order answered, granted or not."""

    model_config = ConfigDict(frozen=True)

    status: str | None = None  # GRANTED, DENIED, FAILED
    order_id: int | None = None
    correlation_id: str | None = None
    error_type: str | None = None
    message: str | None = None


class ServerFileState(StrEnum):
    """The state of a file of an order on the server."""

    PENDING = "PENDING"
    AVAILABLE = "AVAILABLE"
    DOWNLOADED = "DOWNLOADED"
    DOWNLOAD_ERROR = "DOWNLOAD_ERROR"
    PROCESSING_ERROR = "PROCESSING_ERROR"
    ERROR = "ERROR"
    UNKNOWN = "UNKNOWN"

    @property
    def in_error(self) -> bool:
        """In error for good: the server cannot serve the file (not a mere aborted download)."""
        return self in (ServerFileState.ERROR, ServerFileState.PROCESSING_ERROR)

    @classmethod
    def parse(cls, value: object) -> ServerFileState:
        """A state from the server's spelling; unknown spellings are UNKNOWN."""
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            return cls.UNKNOWN


class ServerFile(BaseModel):
    """One file of an order in any state, as the server stores it."""

    model_config = ConfigDict(frozen=True)

    id: int
    state: ServerFileState
    filename: str
    download_error: str | None = None
    files_task_id: int | None = None  # its suborder
    order_id: int | None = None
    size: int | None = None
    checksum: str | None = None
    product_id: str | None = None
    mime_type: str | None = None
    data_type: str | None = None

    def order_file(self, api_url: str) -> OrderFile:
        """The `OrderFile` that downloads it by id (its `uri` is the storage's, not for us)."""
        return OrderFile(
            id=self.id,
            url=f"{api_url.rstrip('/')}/rs-order/orders/files/{self.id}",
            filename=self.filename,
            size=self.size,
            checksum=self.checksum,
            product_id=self.product_id,
            mime_type=self.mime_type,
        )


class ServerFilePage(BaseModel):
    """One page of every file of a dataset task."""

    model_config = ConfigDict(frozen=True)

    files: tuple[ServerFile, ...]
    has_next: bool


def parse_product(item: object) -> Product:
    """A `Product` from one search item (wrapped in `content` or not)."""
    feature = _unwrapped(item, "search item")
    if not isinstance(feature.get("id"), str) or not feature["id"]:
        raise MalformedResponse("a catalogue product has no id")
    listed = feature.get("files") or {}
    if not isinstance(listed, Mapping):
        raise MalformedResponse(f"the files of product {feature['id']} are not an object")
    try:
        files = {
            str(server_type): tuple(_catalog_file(str(server_type), f) for f in _list(entries))
            for server_type, entries in listed.items()
        }
        return Product(
            id=feature["id"],
            provider_id=_opt_str(feature.get("providerId")),
            label=_opt_str(feature.get("label")),
            files=files,
        )
    except (TypeError, ValueError) as error:
        raise MalformedResponse(f"product {feature['id']} has an invalid field: {error}") from None


def _catalog_file(server_type: str, item: object) -> CatalogFile:
    entry = _as_mapping(item, "catalogue file")
    checksum = entry.get("checksum")
    return CatalogFile(
        data_type=_opt_str(entry.get("dataType")) or server_type,
        filename=_opt_str(entry.get("filename")) or "",
        size=_opt_int(entry.get("filesize", entry.get("fileSize"))),
        checksum=str(checksum).strip().lower() if checksum is not None else None,
        mime_type=_opt_str(entry.get("mimeType")),
    )


def parse_product_page(body: object, *, requested_page: int) -> ProductPage:
    """A `ProductPage` from the legacy search engine's answer (a faceted Spring page)."""
    document, items, metadata = _spring_page(body, "catalogue search")
    products = tuple(parse_product(item) for item in items)
    total_pages, total = _page_numbers(metadata, requested_page, "catalogue search")
    has_next = _has_next(document, requested_page, total_pages)
    return ProductPage(
        products=products,
        number=requested_page,
        total_elements=total,
        has_next=bool(products) and has_next,
    )


def parse_basket(body: object) -> Basket:
    """A `Basket` from `GET /rs-order/order/basket` (wrapped in `content` or not)."""
    basket = _unwrapped(body, "basket")
    selections = basket.get("datasetSelections") or []
    if not isinstance(selections, list):
        raise MalformedResponse("the basket's datasetSelections is not a list")
    items = 0
    for selection in selections:
        listed = _as_mapping(selection, "dataset selection").get("itemsSelections") or []
        items += len(listed) if isinstance(listed, list) else 0
    try:
        return Basket(
            id=_opt_int(basket.get("id")),
            owner=_opt_str(basket.get("owner")),
            selections=len(selections),
            items=items,
        )
    except ValueError as error:
        raise MalformedResponse(f"the basket has an invalid field: {error}") from None


def parse_quota(body: object) -> Quota:
    """A `Quota` from `GET /rs-storage/quota/current`; a missing limit is no limit."""
    quota = _unwrapped(body, "download quota")

    def value(name: str, default: int) -> int:
        found = _opt_int(quota.get(name))
        return default if found is None else found

    try:
        return Quota(
            max_quota=value("maxQuota", -1),
            rate_limit=value("rateLimit", -1),
            current_quota=value("currentQuota", 0),
            current_rate=value("currentRate", 0),
        )
    except ValueError as error:
        raise MalformedResponse(f"the download quota has an invalid field: {error}") from None


def parse_apply_answer(body: object) -> ApplyAnswer:
    """What `POST /rs-order/user/orders/apply` answered (wrapped in `content` or not)."""
    answer = _unwrapped(body, "auto-order answer")
    try:
        return ApplyAnswer(
            status=_opt_str(answer.get("status")),
            order_id=_opt_int(answer.get("orderId")),
            correlation_id=_opt_str(answer.get("correlationId")),
            error_type=_opt_str(answer.get("errorType")),
            message=_opt_str(answer.get("message")),
        )
    except ValueError as error:
        raise MalformedResponse(f"the auto-order answer has an invalid field: {error}") from None


def parse_server_file(item: object) -> ServerFile:
    """A `ServerFile` from one item of a dataset task's files (wrapped or not)."""
    entry = _unwrapped(item, "order file")
    if entry.get("id") is None or entry.get("state") is None:
        raise MalformedResponse("an order file has no id or state")
    checksum = entry.get("checksum")
    try:
        return ServerFile(
            id=_int(entry["id"]),
            state=ServerFileState.parse(entry["state"]),
            filename=_opt_str(entry.get("filename")) or "",
            download_error=_opt_str(entry.get("downloadError")),
            files_task_id=_opt_int(entry.get("filesTaskId")),
            order_id=_opt_int(entry.get("orderId")),
            size=_opt_int(entry.get("filesize", entry.get("fileSize"))),
            checksum=str(checksum).strip().lower() if checksum is not None else None,
            product_id=_opt_str(entry.get("productId")),
            mime_type=_opt_str(entry.get("mimeType")),
            data_type=_opt_str(entry.get("dataType")),
        )
    except ValueError as error:
        raise MalformedResponse(f"an order file has an invalid field: {error}") from None


def parse_server_file_page(body: object, *, requested_page: int) -> ServerFilePage:
    """A `ServerFilePage` from `/rs-order/orders/{id}/dataset/{task}/files`."""
    document, items, metadata = _spring_page(body, "order file listing")
    files = tuple(parse_server_file(item) for item in items)
    total_pages, _ = _page_numbers(metadata, requested_page, "order file listing")
    has_next = _has_next(document, requested_page, total_pages)
    return ServerFilePage(files=files, has_next=bool(files) and has_next)


def _unwrapped(body: object, what: str) -> Mapping[str, Any]:
    """A HATEOAS entity's record: under `content` when wrapped, else the object itself."""
    document = _as_mapping(body, what)
    inner = document.get("content")
    return inner if isinstance(inner, Mapping) else document


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("expected a list of files")
    return value


def _page_numbers(
    metadata: Mapping[str, Any], requested_page: int, what: str
) -> tuple[int | None, int | None]:
    """A Spring page's total pages and total elements (None where absent).

    A page that says it is another page than the one asked for is refused: a server that
    ignores `page` would otherwise be walked for ever.
    """
    try:
        number = _opt_int(metadata.get("number"))
        total_pages = _opt_int(metadata.get("totalPages"))
        total = _opt_int(metadata.get("totalElements"))
    except ValueError as error:
        raise MalformedResponse(f"the {what}'s metadata is invalid: {error}") from None
    if number is not None and number != requested_page:
        raise MalformedResponse(
            f"the {what} answered page {number} when page {requested_page} was asked for"
        )
    return total_pages, total


def _has_next(document: Mapping[str, Any], page: int, total_pages: int | None) -> bool:
    """Whether a page follows: from the metadata, else from a `next` link."""
    if total_pages is not None:
        return page + 1 < total_pages
    links = document.get("links")
    return isinstance(links, list) and any(
        isinstance(link, Mapping) and link.get("rel") == "next" for link in links
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


def _int(value: object) -> int:
    number = _opt_int(value)
    if number is None:
        raise ValueError("expected a whole number, got null")
    return number


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
