"""How a flow's parameters appear in the Prefect UI's run form."""

from __future__ import annotations

from typing import Any

from pydantic import Field


def titled(title: str, **constraints: Any) -> Any:
    """A parameter's Field with its title in the run form (Prefect titles a parameter by its
    name unless the title comes through json_schema_extra; its description comes from the
    flow's docstring). Not the parameter's model's own title: pydantic drops one equal to it."""
    return Field(json_schema_extra={"title": title}, **constraints)
