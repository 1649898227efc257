"""Temporary databases on the machine's PostgreSQL (127.0.0.1:5432, trust auth), dropped after use.

Where no PostgreSQL answers, a test (or fixture) asking for one is skipped, with the reason shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

__all__ = ["SERVER_URL", "PostgresStores", "drop_connections", "postgres_stores", "tables", "temporary_database"]

SERVER_URL = "postgres@127.0.0.1:5432"
"""User and server for URLs: ``f"postgresql+psycopg://{SERVER_URL}/{name}"``."""

SERVER = "host=127.0.0.1 port=5432 user=postgres"


def _admin() -> psycopg.Connection:
    errors = []
    for dbname in ("postgres", "test"):
        try:
            return psycopg.connect(f"{SERVER} dbname={dbname}", autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as err:
            errors.append(f"{dbname}: {err}")
    # A skip, with its reason in the summary (addopts -ra): the same tests still run on SQLite.
    pytest.skip(
        "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres (trust auth), databases postgres/test: "
        + "; ".join(errors)
        + ". Start it (CI provides it) to run the PostgreSQL variants."
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


@dataclass(frozen=True)
class PostgresStores:
    """The platform's databases, one temporary database each: the training metadata, Prefect's, MLflow's
    backend store and, unless ``mlflow_auth`` is None, MLflow's basic-auth users apart from it."""

    metadata: str
    prefect: str
    mlflow: str
    mlflow_auth: str | None

    def sections(self) -> dict[str, dict[str, str]]:
        """As ``load_settings`` overrides, by section; merge other values of a section into its dict."""
        mlflow = {"backend_store_uri": f"postgresql+psycopg://{SERVER_URL}/{self.mlflow}"}
        if self.mlflow_auth is not None:
            mlflow["auth_database_uri"] = f"postgresql+psycopg://{SERVER_URL}/{self.mlflow_auth}"
        return {"database": {"url": f"postgresql+psycopg://{SERVER_URL}/{self.metadata}"},
                "prefect": {"database_url": f"postgresql+asyncpg://{SERVER_URL}/{self.prefect}"},
                "mlflow": mlflow}


@contextmanager
def postgres_stores(prefix: str = "tenantml_test", separate_auth: bool = True) -> Iterator[PostgresStores]:
    """Temporary databases for all of the platform's stores, dropped afterwards (skips without PostgreSQL)."""
    with ExitStack() as stack:
        metadata, prefect, mlflow = (stack.enter_context(temporary_database(f"{prefix}_{store}"))
                                     for store in ("meta", "prefect", "mlflow"))
        auth = stack.enter_context(temporary_database(f"{prefix}_mlauth")) if separate_auth else None
        yield PostgresStores(metadata, prefect, mlflow, auth)


def tables(database: str) -> set[str]:
    """The tables in ``database``'s public schema."""
    with psycopg.connect(f"{SERVER} dbname={database}", connect_timeout=5) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def drop_connections(database: str) -> int:
    """Terminate every session connected to ``database`` (as a failover or a restart of PostgreSQL does to
    its clients); returns how many were terminated."""
    with _admin() as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchall()
    return sum(1 for (terminated,) in rows if terminated)
