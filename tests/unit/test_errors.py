"""The error tree drawn at the top of tenantml/errors.py is the tree the classes form, all of it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

import tenantml.errors as errors
from tenantml.adapters.database import create_database
from tenantml.adapters.store import Store


def drawn_tree() -> dict[str, str | None]:
    """Each class named in the module docstring's drawing, with the parent it is drawn under."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^(\s*(?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)\b", line)
        if not found or not (found.group(1) or line.strip().startswith(("├", "└")) or line.strip() == "TenantmlError"):
            continue
        depth = line.index(found.group(2))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[found.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, found.group(2)))
    return parents


def test_the_drawing_names_every_error_and_only_errors() -> None:
    assert set(drawn_tree()) == set(errors.__all__)


@pytest.mark.parametrize("name", sorted(errors.__all__))
def test_each_error_sits_under_the_parent_it_is_drawn_under(name: str) -> None:
    kind = getattr(errors, name)
    parent = drawn_tree()[name]
    if parent is None:
        assert kind is errors.TenantmlError
    else:
        assert kind.__bases__ == (getattr(errors, parent),)


def test_all_is_sorted() -> None:
    assert errors.__all__ == sorted(errors.__all__)


def test_a_database_that_does_not_answer_is_a_service_error_naming_the_setting() -> None:
    store = Store(create_database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2", create_schema=False))
    with pytest.raises(errors.ServiceUnavailable, match="TENANTML_DATABASE__URL") as caught:
        store.add_tenant("acme", "0" * 64, datetime.now(UTC))
    assert "127.0.0.1:1" in str(caught.value)


def test_a_home_that_does_not_exist_is_a_platform_error_not_a_driver_traceback(tmp_path: object) -> None:
    with pytest.raises(errors.PlatformError, match="TENANTML_HOME"):
        create_database(f"sqlite:///{tmp_path}/no-such-home/tenantml.db")
