"""Every setting is declared once: the command line's options and the README's table come
from the settings models."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner
from pydantic import SecretStr

from regards_order.cli import cli
from regards_order.cli.options import (
    CONNECTION_MODELS,
    DOWNLOAD_MODELS,
    model_values,
    options_table,
    settings,
)
from regards_order.settings import Connection, DownloadOptions

README = Path(__file__).resolve().parents[3] / "README.md"
MODELS = CONNECTION_MODELS + DOWNLOAD_MODELS


def test_the_readme_holds_the_table_of_every_option() -> None:
    table = options_table(MODELS)
    assert table in README.read_text(), (
        "README.md's option table differs from the settings models: replace it with what "
        "`python -m regards_order.cli.options` prints"
    )


def test_every_field_is_an_option_with_its_variable_in_help() -> None:
    command = cli.commands["download"]
    assert isinstance(command, click.Command)
    shown = CliRunner().invoke(cli, ["download", "--help"], terminal_width=200).output
    flags = {flag for param in command.params for flag in getattr(param, "opts", [])}
    for setting in settings(MODELS):
        assert setting.flag in flags, setting.name
        assert setting.envvar in shown, setting.envvar
    # The settings no option used to reach:
    assert {"--read-timeout", "--max-poll-errors", "--password-block", "--token-block"} <= flags


def test_given_values_reach_the_models_unset_ones_keep_their_defaults() -> None:
    given = {
        "host": "https://h",
        "project": "p",
        "insecure": True,
        "client_secret": "site-own",
        "read_timeout": 5.0,
        "concurrency": 8,
        "task_runner": "dask",
        "storage_options": '{"a": 1}',
        "storage_option": ("b.c=true",),
        "timeout": None,
    }
    connection = Connection.model_validate(model_values(Connection, given))
    assert connection.verify_tls is False and connection.read_timeout == 5.0
    assert connection.client_secret == SecretStr("site-own")
    assert connection.client_id == "client"  # not given: the model's default
    options = DownloadOptions.model_validate(model_values(DownloadOptions, given))
    assert options.concurrency == 8 and options.task_runner.value == "dask"
    assert options.storage_options == {"a": 1, "b": {"c": True}}
    assert options.timeout == 0 and options.retries == DownloadOptions().retries
