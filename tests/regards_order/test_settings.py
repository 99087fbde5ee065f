"""Settings: storage options typed and nested, credentials refused, secrets never printed."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from regards_order.settings import Connection, DownloadOptions, parse_storage_options


def test_storage_options_are_typed_and_nested() -> None:
    options = parse_storage_options(
        [
            "endpoint_url=https://s3.example.org",
            "requester_pays=true",
            "default_block_size=5242880",
            "client_kwargs.region_name=eu-west-3",
            "config_kwargs.s3.addressing_style=path",
        ],
        '{"anon": false, "client_kwargs": {"verify": false}}',
    )
    assert options == {
        "anon": False,
        "endpoint_url": "https://s3.example.org",
        "requester_pays": True,
        "default_block_size": 5242880,
        "client_kwargs": {"verify": False, "region_name": "eu-west-3"},
        "config_kwargs": {"s3": {"addressing_style": "path"}},
    }


@pytest.mark.parametrize(
    ("pairs", "document", "message"),
    [
        (["novalue"], None, "is not KEY=VALUE"),
        (["=x"], None, "is not KEY=VALUE"),
        ([], "[1]", "must be a JSON object"),
        ([], "{oops", "not valid JSON"),
        (["a=1", "a.b=2"], None, "is not a group of options"),
        (["secret=abc"], None, "would carry a credential"),
        ([], '{"client_kwargs": {"aws_secret_access_key": "x"}}', "client_kwargs.aws_secret"),
    ],
)
def test_bad_storage_options_are_refused(
    pairs: list[str], document: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_storage_options(pairs, document)


def test_credentials_in_flow_parameters_are_refused() -> None:
    with pytest.raises(ValidationError, match="would carry a credential"):
        DownloadOptions(storage_options={"key": "AKIA..."})


def test_secrets_are_neither_printed_nor_serialised() -> None:
    connection = Connection(
        host="https://regards.example.org/",
        project="p",
        username="u",
        password=SecretStr("hunter2"),
        token=SecretStr("tok-123"),
    )
    assert connection.host == "https://regards.example.org"
    assert connection.api_url == "https://regards.example.org/api/v1"
    for shown in (repr(connection), str(connection), connection.model_dump_json()):
        assert "hunter2" not in shown and "tok-123" not in shown
    dumped = connection.model_dump()
    assert "password" not in dumped and "token" not in dumped
    schema = Connection.model_json_schema()
    assert "password" not in schema["properties"] and "token" not in schema["properties"]


@pytest.mark.parametrize("host", ["regards.example.org", "ftp://h", "http://", ""])
def test_host_needs_a_scheme(host: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        Connection(host=host, project="p")


@pytest.mark.parametrize(
    ("given", "api"),
    [
        ("https://regards.example.org/api/v1/", "https://regards.example.org/api/v1"),
        ("https://gw.example.org/regards/", "https://gw.example.org/regards/api/v1"),
        (" http://127.0.0.1:8080 ", "http://127.0.0.1:8080/api/v1"),
    ],
)
def test_host_may_be_the_api_base_url_or_behind_a_path(given: str, api: str) -> None:
    assert Connection(host=given, project="p").api_url == api


def test_credentials_problem() -> None:
    assert Connection(host="http://h", project="p").credentials_problem() is not None
    with_token = Connection(host="http://h", project="p", token=SecretStr("t"))
    assert with_token.credentials_problem() is None
