"""Fixtures of the unit tests: the real training metadata store, on SQLite in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenantml.adapters.database import create_database
from tenantml.adapters.store import Store


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    engine = create_database(sqlite_url)
    yield Store(engine)
    engine.dispose()
