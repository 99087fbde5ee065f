"""Command-line options generated from the settings models, so that each setting is declared
once: its name, environment variable, default, description and type come from the pydantic
field (`regards_order.settings`), and the README's option table is drawn from the same list.

A field `some_name` becomes `--some-name`, read from `REGARDS_SOME_NAME` when not given; a
`Cli` annotation on the field renames it or inverts a flag (`--insecure`), and a dict field is
also taken as repeatable `KEY=VALUE` pairs.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from regards_order.settings import Cli, Connection, DownloadOptions, parse_storage_options

#: The settings models whose fields are options of every command that reaches the server,
#: and of `download` (the download options).
CONNECTION_MODELS: tuple[type[BaseModel], ...] = (Connection,)
DOWNLOAD_MODELS: tuple[type[BaseModel], ...] = (DownloadOptions,)


@dataclass(frozen=True)
class Setting:
    """One setting as the command line takes it."""

    model: type[BaseModel]
    name: str  # the field's name
    field: FieldInfo
    cli: Cli

    @property
    def flag(self) -> str:
        return self.cli.flag or "--" + self.name.replace("_", "-")

    @property
    def envvar(self) -> str:
        return "REGARDS_" + self.flag.lstrip("-").replace("-", "_").upper()

    @property
    def kind(self) -> Any:
        """The field's type without `None`."""
        annotation = self.field.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = members[0]
        return annotation

    @property
    def default(self) -> Any:
        if self.field.default_factory is not None:
            return self.field.default_factory()  # type: ignore[call-arg]
        return None if self.field.default is PydanticUndefined else self.field.default

    @property
    def required(self) -> bool:
        return self.field.is_required()

    def shown_default(self) -> str:
        """The default as `--help` and the README show it."""
        default = self.default
        if self.cli.inverted or isinstance(default, bool):
            return "off" if self.cli.inverted or not default else "on"
        if default is None or default == {}:
            return ""
        if isinstance(default, enum.Enum):
            return str(default.value)
        return f"{default:g}" if isinstance(default, float) else str(default)

    def help(self) -> str:
        return self.cli.help or self.field.description or self.field.title or ""


def settings(models: tuple[type[BaseModel], ...]) -> list[Setting]:
    """Every field of `models`, as command-line settings."""
    found = []
    for model in models:
        for name, field in model.model_fields.items():
            cli = next((m for m in field.metadata if isinstance(m, Cli)), Cli())
            found.append(Setting(model, name, field, cli))
    return found


def _click_type(setting: Setting) -> click.ParamType[Any] | None:
    kind = setting.kind
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return click.Choice([str(member.value) for member in kind])
    if kind is int:
        return click.INT
    if kind is float:
        return click.FLOAT
    return None  # text


def _options(setting: Setting) -> Iterator[tuple[str, dict[str, Any]]]:
    """The option (or options) of a setting: its flag and click's attributes."""
    common = {"help": setting.help(), "show_envvar": True, "envvar": setting.envvar}
    if setting.kind is bool:
        yield setting.flag, {"is_flag": True, "default": None, **common}
        return
    if setting.kind is dict or typing.get_origin(setting.kind) is dict:
        yield setting.flag, {"metavar": "JSON", **common}
        if setting.cli.pairs:
            yield (
                setting.cli.pairs,
                {
                    "multiple": True,
                    "metavar": "KEY=VALUE",
                    "help": "One of them, repeatable; values are JSON where they parse as JSON, a "
                    "dotted key reaches a nested option (client_kwargs.region_name=eu-west-3).",
                },
            )
        return
    shown = setting.shown_default()
    yield (
        setting.flag,
        {
            "type": _click_type(setting),
            "default": None,
            "show_default": shown or False,
            **common,
        },
    )


def add_options(models: tuple[type[BaseModel], ...]) -> Callable[[Any], Any]:
    """A decorator adding the options of every field of `models` to a click command."""

    def decorate(command: Any) -> Any:
        options = [option for setting in settings(models) for option in _options(setting)]
        for flag, attributes in reversed(options):
            command = click.option(flag, **attributes)(command)
        return command

    return decorate


def target_option(help: str) -> Callable[[Any], Any]:
    """`--target`, read from REGARDS_TARGET, as every command that reads or writes one takes it."""
    return click.option("--target", envvar="REGARDS_TARGET", show_envvar=True, help=help)


def json_option(help: str) -> Callable[[Any], Any]:
    """`--json` (as `as_json`), read from REGARDS_JSON: the command's document on stdout."""
    return click.option(
        "--json", "as_json", is_flag=True, envvar="REGARDS_JSON", show_envvar=True, help=help
    )


#: `--quiet`/`-q` of the commands that show a delivery while it runs.
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="Show nothing while it runs: errors and the final line."
)


def model_values(model: type[BaseModel], given: dict[str, Any]) -> dict[str, Any]:
    """The values of `model`'s fields among the command's `given` values (unset ones left to
    the model's defaults). Raises ValueError for malformed storage options."""
    values: dict[str, Any] = {}
    for setting in settings((model,)):
        key = setting.flag.lstrip("-").replace("-", "_")
        value = given.get(key)
        if setting.cli.pairs:
            pairs = list(given.get(setting.cli.pairs.lstrip("-").replace("-", "_")) or ())
            if value is not None or pairs:
                values[setting.name] = parse_storage_options(pairs, value)
            continue
        if value is None:
            continue
        if setting.kind is bool:
            if not value:
                continue
            value = not value if setting.cli.inverted else value
        elif setting.kind is SecretStr:
            value = SecretStr(value)
        values[setting.name] = value
    return values


def missing(models: tuple[type[BaseModel], ...], given: dict[str, Any]) -> list[Setting]:
    """The required settings the command was given neither as option nor variable."""
    return [
        s
        for s in settings(models)
        if s.required and given.get(s.flag.lstrip("-").replace("-", "_")) is None
    ]


def options_table(models: tuple[type[BaseModel], ...]) -> str:
    """The README's table of these options (the README is tested to hold it as it is)."""
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for setting in settings(models):
        flag = f"`{setting.flag}`"
        if setting.cli.pairs:
            flag += f", `{setting.cli.pairs} KEY=VALUE`"
        default = setting.shown_default()
        meaning = " ".join(setting.help().split()).replace("|", "\\|")
        rows.append(f"| {flag} | `{setting.envvar}` | {default} | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m regards_order.cli.options: the README's table
    print(options_table(CONNECTION_MODELS + DOWNLOAD_MODELS))
