"""Temporary databases on the machine's PostgreSQL (127.0.0.1:5432, trust auth), dropped after use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

__all__ = ["temporary_database"]

SERVER = "host=127.0.0.1 port=5432 user=postgres"


def _admin() -> psycopg.Connection:
    errors = []
    for dbname in ("postgres", "test"):
        try:
            return psycopg.connect(f"{SERVER} dbname={dbname}", autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as err:
            errors.append(f"{dbname}: {err}")
    pytest.fail(
        "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres (trust auth), databases postgres/test: "
        + "; ".join(errors)
        + ". Start it (CI provides it), or deselect these tests with -m 'not postgres'.",
        pytrace=False,
    )


@contextmanager
def temporary_database(prefix: str = "tenantml_test") -> Iterator[str]:
    """A new, uniquely named database; yields its name and drops it (forcefully) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with _admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
