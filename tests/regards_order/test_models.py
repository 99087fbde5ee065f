"""Parsing every dialect of the REGARDS answers (shared/regards/API.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regards_order.errors import MalformedResponse
from regards_order.models import OrderStatus, parse_file, parse_order, parse_page

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
