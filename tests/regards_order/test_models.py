"""Parsing every dialect of the REGARDS answers (docs/regards-server.md)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regards_order.errors import MalformedResponse
from regards_order.models import (
    DataType,
    OrderStatus,
    Quota,
    ServerFileState,
    parse_apply_answer,
    parse_basket,
    parse_file,
    parse_order,
    parse_order_page,
    parse_page,
    parse_product,
    parse_product_page,
    parse_quota,
    parse_server_file,
    parse_server_file_page,
)

CURRENT = {
    "metadata": {"size": 2, "totalElements": 3, "totalPages": 2, "number": 0},
    "content": [
        {
            "content": {
                "id": 123,
                "productId": "URN:AIP:DATA:project:x:V1",
                "version": 1,
                "downloadUrl": "https://h/api/v1/rs-order/orders/files/123",
                "mimeType": "application/octet-stream",
                "checksum": "AFC76DFEA831352297B9097DD4B6C8AB",
                "filesize": 1523654,
                "filename": "file.txt",
            },
            "links": [],
        }
    ],
    "links": [{"rel": "self", "href": "x"}, {"rel": "next", "href": "y"}],
}

DOCS = {
    "metadata": {"number": 0, "size:": 50, "totalElements": 1, "totalPages": 1},
    "content": [
        {
            "productId": "product",
            "checksum": "f3fbc55040c2113d49220f81c8cfdb52",
            "fileSize": 10,
            "filename": "file2.txt",
            "mimeType": "application/text",
            "uri": "https://h/api/v1/rs-catalog/p/files/f3fbc55040c2113d49220f81c8cfdb52",
        }
    ],
}


def test_current_dialect_is_unwrapped_and_normalised() -> None:
    page = parse_page(CURRENT, requested_page=0)
    (file,) = page.files
    assert file.id == 123
    assert file.url.endswith("/files/123")
    assert file.size == 1523654
    assert file.checksum == "afc76dfea831352297b9097dd4b6c8ab"
    assert file.key == "123"
    assert page.has_next is True


def test_legacy_dialect_uses_uri() -> None:
    item = {"content": {"id": 5, "uri": "https://h/f/5", "filesize": 3, "filename": "a"}}
    file = parse_file(item)
    assert (file.id, file.url, file.size) == (5, "https://h/f/5", 3)


def test_docs_dialect_has_no_id_and_is_keyed_by_url() -> None:
    page = parse_page(DOCS, requested_page=0)
    (file,) = page.files
    assert file.id is None
    assert file.key == file.url
    assert file.size == 10
    assert page.has_next is False


def test_no_content_answer_is_an_empty_last_page() -> None:
    page = parse_page(None, requested_page=3)
    assert page.files == () and page.has_next is False


def test_next_link_is_used_when_metadata_is_missing() -> None:
    body = {"content": CURRENT["content"], "links": [{"rel": "next", "href": "y"}]}
    assert parse_page(body, requested_page=0).has_next is True


def test_empty_page_ends_listing_whatever_metadata_claims() -> None:
    body = {"metadata": {"totalPages": 9, "number": 0}, "content": []}
    assert parse_page(body, requested_page=0).has_next is False


@pytest.mark.parametrize(
    "body",
    [
        "<html>Request Rejected</html>",
        {"content": "nope"},
        {"content": [{"content": {"filename": "x"}}]},
        {"content": [{"content": {"id": "abc", "uri": "u", "filename": "x"}}]},
    ],
)
def test_malformed_listings_raise_a_clear_error(body: object) -> None:
    with pytest.raises(MalformedResponse):
        parse_page(body, requested_page=0)


def test_order_wrapped_or_not() -> None:
    content = {
        "id": 7,
        "status": "done_with_warning",
        "availableFilesCount": 2,
        "filesInErrorCount": 1,
        "expirationDate": "2026-12-01T10:00:00.000Z",
    }
    for body in ({"content": content, "links": []}, content):
        order = parse_order(body)
        assert order.status is OrderStatus.DONE_WITH_WARNING
        assert order.status.is_final
        assert order.available_files_count == 2
        assert order.expiration_date is not None and order.expiration_date.year == 2026


def test_unknown_status_is_not_final() -> None:
    order = parse_order({"id": 1, "status": "SOMETHING_NEW"})
    assert order.status is OrderStatus.UNKNOWN and not order.status.is_final


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", "PAUSED"])
def test_running_statuses_are_not_final(status: str) -> None:
    assert not OrderStatus(status).is_final


def test_expired_and_deleted_mean_files_are_gone() -> None:
    assert OrderStatus.EXPIRED.files_gone and OrderStatus.DELETED.files_gone
    assert not OrderStatus.DONE.files_gone


@pytest.mark.parametrize(
    ("checksum", "size", "problem"),
    [
        (None, 1, "no checksum"),
        ("abc", 1, "not an MD5"),
        ("0" * 32, -4, "negative size"),
        ("0" * 32, None, None),
    ],
)
def test_verification_problems(checksum: str | None, size: int | None, problem: str | None) -> None:
    file = parse_file(
        {"id": 1, "uri": "u", "filename": "f", "checksum": checksum, "filesize": size}
    )
    found = file.verification_problem()
    assert (found is None) if problem is None else (problem in (found or ""))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "content",
                    "metadata",
                    "links",
                    "id",
                    "uri",
                    "downloadUrl",
                    "filename",
                    "filesize",
                    "fileSize",
                    "checksum",
                    "number",
                    "size",
                    "size:",
                    "totalPages",
                    "totalElements",
                    "rel",
                    "productId",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@given(_json, st.integers(min_value=0, max_value=5))
def test_page_parser_never_crashes(body: object, page: int) -> None:
    """Whatever JSON a server sends, the parser returns a page or a MalformedResponse."""
    try:
        parsed = parse_page(body, requested_page=page)
    except MalformedResponse:
        return
    for file in parsed.files:
        assert isinstance(file.url, str) and file.url
    assert parsed.has_next in (True, False)


# ---- ordering from the catalogue ----------------------------------------------------------

FEATURE = {
    "id": "URN:AIP:DATA:project:0e7c:V1",
    "providerId": "S2A_1",
    "entityType": "DATA",
    "label": "Toulouse",
    "properties": {"cloud": 3},
    "files": {
        "RAWDATA": [
            {
                "dataType": "RAWDATA",
                "filename": "S2A_1.zip",
                "filesize": 3000,
                "checksum": "AFC76DFEA831352297B9097DD4B6C8AB",
                "mimeType": "application/zip",
                "digestAlgorithm": "MD5",
            }
        ],
        "QUICKLOOK_SD": [{"filename": "sd.png", "fileSize": 10}],
        "QUICKLOOK_HD": [{"dataType": "QUICKLOOK_HD", "filename": "hd.png"}],
        "THUMBNAIL": [{"dataType": "THUMBNAIL", "filename": "t.png", "filesize": 1}],
    },
}


def test_a_product_wrapped_or_not() -> None:
    for item in ({"content": FEATURE, "links": []}, FEATURE):
        product = parse_product(item)
        assert (product.id, product.provider_id, product.label) == (
            "URN:AIP:DATA:project:0e7c:V1",
            "S2A_1",
            "Toulouse",
        )
        (raw,) = product.files["RAWDATA"]
        assert (raw.filename, raw.size, raw.checksum, raw.mime_type) == (
            "S2A_1.zip",
            3000,
            "afc76dfea831352297b9097dd4b6c8ab",
            "application/zip",
        )
        # The key of the files object names the type where an entry does not.
        assert product.files["QUICKLOOK_SD"][0].data_type == "QUICKLOOK_SD"
        assert product.files["QUICKLOOK_SD"][0].size == 10
        assert product.files["QUICKLOOK_HD"][0].size is None


def test_quicklook_covers_every_quicklook_size_and_nothing_else() -> None:
    product = parse_product(FEATURE)
    names = lambda *types: sorted(f.filename for f in product.files_of(types))  # noqa: E731
    assert names(DataType.RAWDATA) == ["S2A_1.zip"]
    assert names(DataType.QUICKLOOK) == ["hd.png", "sd.png"]
    assert names(DataType.RAWDATA, DataType.QUICKLOOK) == ["S2A_1.zip", "hd.png", "sd.png"]


def test_a_product_without_files_has_none() -> None:
    assert parse_product({"id": "URN:x"}).files == {}
    assert parse_product({"id": "URN:x", "files": None}).files == {}


@pytest.mark.parametrize(
    "item",
    [
        {"providerId": "no id"},
        {"id": ""},
        {"id": "URN:x", "files": ["x"]},
        {"id": "URN:x", "files": {"RAWDATA": {"filename": "not a list"}}},
        {"id": "URN:x", "files": {"RAWDATA": ["not an object"]}},
        {"id": "URN:x", "files": {"RAWDATA": [{"filename": "f", "filesize": "big"}]}},
        "not an object",
    ],
)
def test_a_malformed_product_is_refused(item: object) -> None:
    with pytest.raises(MalformedResponse):
        parse_product(item)


def test_a_product_page_pages_by_metadata_or_links() -> None:
    body = {
        "content": [{"content": FEATURE, "links": []}],
        "metadata": {"size": 1, "totalElements": 3, "totalPages": 3, "number": 1},
        "facets": [],
        "links": [],
    }
    page = parse_product_page(body, requested_page=1)
    assert (len(page.products), page.number, page.total_elements, page.has_next) == (1, 1, 3, True)
    body["metadata"] = {"size": 1, "totalElements": 3, "totalPages": 3, "number": 2}
    assert parse_product_page(body, requested_page=2).has_next is False
    with pytest.raises(MalformedResponse, match="answered page 2 when page 0"):
        parse_product_page(body, requested_page=0)
    linked = {"content": [FEATURE], "links": [{"rel": "next", "href": "x"}]}
    assert parse_product_page(linked, requested_page=0).has_next is True
    empty = {"content": [], "metadata": {"totalPages": 9}}
    assert parse_product_page(empty, requested_page=0).has_next is False


def test_a_basket_counts_its_selections_and_queries() -> None:
    selection = {"id": 3, "itemsSelections": [{"date": "d"}, {"date": "e"}]}
    body = {"content": {"id": 1, "owner": "u", "datasetSelections": [selection]}, "links": []}
    basket = parse_basket(body)
    assert (basket.id, basket.owner, basket.selections, basket.items) == (1, "u", 1, 2)
    assert not basket.is_empty
    assert parse_basket({"id": 1, "datasetSelections": []}).is_empty
    assert parse_basket({"id": 1}).is_empty
    with pytest.raises(MalformedResponse):
        parse_basket({"datasetSelections": {"not": "a list"}})


def test_a_quota_and_its_limits() -> None:
    quota = parse_quota({"maxQuota": 10, "rateLimit": 3, "currentQuota": 4, "currentRate": 1})
    assert (quota.simultaneous_limit, quota.downloads_left) == (3, 6)
    assert Quota(max_quota=5, current_quota=9).downloads_left == 0
    unlimited = parse_quota({"content": {"email": "u", "maxQuota": -1, "rateLimit": -1}})
    assert (unlimited.simultaneous_limit, unlimited.downloads_left) == (None, None)
    assert parse_quota({}).simultaneous_limit is None  # a limit not given is no limit
    with pytest.raises(MalformedResponse):
        parse_quota({"rateLimit": "many"})


def test_apply_answers_granted_and_refused() -> None:
    granted = parse_apply_answer(
        {"content": {"status": "GRANTED", "orderId": 12, "correlationId": "c"}, "links": []}
    )
    assert (granted.status, granted.order_id, granted.correlation_id) == ("GRANTED", 12, "c")
    refused = parse_apply_answer(
        {"status": "DENIED", "errorType": "FORBIDDEN", "message": "m", "errors": 1}
    )
    assert (refused.status, refused.order_id, refused.error_type, refused.message) == (
        "DENIED",
        None,
        "FORBIDDEN",
        "m",
    )
    with pytest.raises(MalformedResponse):
        parse_apply_answer({"status": "GRANTED", "orderId": "twelve"})


ENTITY = {
    "id": 42,
    "state": "DOWNLOAD_ERROR",
    "downloadError": "Too Many Requests",
    "orderId": 7,
    "filesTaskId": 3,
    "productId": "S2A_1",
    "filename": "S2A_1.zip",
    "filesize": 3000,
    "checksum": "AFC76DFEA831352297B9097DD4B6C8AB",
    "mimeType": "application/zip",
    "dataType": "RAWDATA",
    "uri": "file:///storage/afc76dfea831352297b9097dd4b6c8ab",
}


def test_a_server_file_and_the_order_file_that_downloads_it_by_id() -> None:
    page = parse_server_file_page(
        {
            "content": [{"content": ENTITY, "links": []}],
            "metadata": {"size": 1, "totalElements": 2, "totalPages": 2, "number": 0},
        },
        requested_page=0,
    )
    (file,) = page.files
    assert page.has_next is True
    assert (file.id, file.state, file.download_error, file.files_task_id) == (
        42,
        ServerFileState.DOWNLOAD_ERROR,
        "Too Many Requests",
        3,
    )
    listed = file.order_file("https://h/api/v1/")
    # Downloaded by id from the order service, never from the storage uri.
    assert listed.url == "https://h/api/v1/rs-order/orders/files/42"
    assert (listed.id, listed.filename, listed.size, listed.product_id) == (
        42,
        "S2A_1.zip",
        3000,
        "S2A_1",
    )
    assert listed.checksum == "afc76dfea831352297b9097dd4b6c8ab"
    assert listed.verification_problem() is None


def test_a_server_file_state_unknown_to_us_is_unknown() -> None:
    assert parse_server_file(ENTITY | {"state": "archived"}).state is ServerFileState.UNKNOWN
    assert parse_server_file(ENTITY | {"state": "pending"}).state is ServerFileState.PENDING
    for broken in ({k: v for k, v in ENTITY.items() if k != "state"}, ENTITY | {"id": None}):
        with pytest.raises(MalformedResponse):
            parse_server_file(broken)


def test_an_order_with_dataset_tasks_and_its_creation_date() -> None:
    content = {
        "id": 7,
        "status": "RUNNING",
        "label": "Generated order 2026-03-01T10:00:00.123456Z",
        "creationDate": "2026-03-01T10:00:00.2Z",
        "datasetTasks": [
            {
                "id": 11,
                "datasetLabel": "S2",
                "filesCount": 4,
                "filesSize": 4000,
                "fileSelectionDescription": {"fileTypes": ["RAWDATA"], "fileNamePattern": ".*"},
            },
            {"id": 12},
        ],
    }
    order = parse_order({"content": content, "links": []})
    assert order.dataset_task_ids == (11, 12)
    first, second = order.dataset_tasks
    assert (first.label, first.files_count, first.files_size) == ("S2", 4, 4000)
    assert (first.file_types, first.filename_pattern) == (("RAWDATA",), ".*")
    assert (second.file_types, second.filename_pattern) == (None, None)
    assert order.creation_date is not None and order.creation_date.microsecond == 200000
    # Servers that show no dataset tasks: none.
    assert parse_order({"id": 1, "status": "DONE"}).dataset_task_ids == ()
    with pytest.raises(MalformedResponse):
        parse_order(content | {"datasetTasks": [{"datasetLabel": "no id"}]})


def test_the_order_listing_pages_by_metadata_or_links() -> None:
    order = {"content": {"id": 3, "status": "DONE"}, "links": []}
    paged = {"content": [order], "metadata": {"totalPages": 2, "number": 0}, "links": []}
    assert parse_order_page(paged, requested_page=0).has_next is True
    # A server that ignores `page` would be walked for ever.
    with pytest.raises(MalformedResponse, match="answered page 0 when page 1 was asked for"):
        parse_order_page(paged, requested_page=1)
    paged["metadata"] = {"totalPages": 2, "number": 1}
    assert parse_order_page(paged, requested_page=1).has_next is False
    linked = {"content": [order], "links": [{"rel": "next", "href": "x"}]}
    assert parse_order_page(linked, requested_page=0).has_next is True
    assert parse_order_page({"content": [order]}, requested_page=0).has_next is False
    assert (
        parse_order_page({"content": [], "links": linked["links"]}, requested_page=0).orders == ()
    )


_catalogue_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "content",
                    "metadata",
                    "links",
                    "id",
                    "files",
                    "RAWDATA",
                    "filename",
                    "filesize",
                    "state",
                    "totalPages",
                    "number",
                    "datasetSelections",
                    "itemsSelections",
                    "maxQuota",
                    "rateLimit",
                    "status",
                    "orderId",
                    "errorType",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@given(_catalogue_json)
def test_catalogue_parsers_never_crash(body: object) -> None:
    """Whatever JSON a server sends, each parser returns its record or a MalformedResponse."""
    parsers = [
        lambda: parse_product_page(body, requested_page=0),
        lambda: parse_server_file_page(body, requested_page=0),
        lambda: parse_basket(body),
        lambda: parse_quota(body),
        lambda: parse_apply_answer(body),
    ]
    for parser in parsers:
        with contextlib.suppress(MalformedResponse):
            parser()
