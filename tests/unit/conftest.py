"""Fixtures of the unit tests: the real training metadata store, on SQLite in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenantml.adapters.database import create_database
from tenantml.adapters.store import Store
from tests.support.supervisor_script import pending_request


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    engine = create_database(sqlite_url)
    yield Store(engine)
    engine.dispose()


@pytest.fixture
def request_id(store: Store, tenant_name: str) -> str:
    """A new tenant with one pending training request (the supervisor tests start from it)."""
    return pending_request(store, tenant_name)
