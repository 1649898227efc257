"""The README's settings table is the settings: every field, its default and its description."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from tenantml.settings import ENV_PREFIX, NESTED_DELIMITER, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> dict[str, str]:
    """``TENANTML_*`` variable → its description, from the README's settings table."""
    rows = re.findall(r"^\| `(TENANTML_\w+)` \|[^|]*\| (.*) \|$", README.read_text(), re.MULTILINE)
    return dict(rows)


def declared() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for inner, inner_field in annotation.model_fields.items():
                variable = f"{ENV_PREFIX}{name}{NESTED_DELIMITER}{inner}".upper()
                found[variable] = inner_field.description or ""
        else:
            found[f"{ENV_PREFIX}{name}".upper()] = field.description or ""
    return found


def test_every_setting_is_in_the_readme_with_its_description() -> None:
    table = documented()
    for variable, description in declared().items():
        assert variable in table, f"{variable} is missing from the README's settings table"
        assert table[variable] == description, variable
