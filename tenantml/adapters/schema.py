"""The training metadata's schema: created, recognised and upgraded with Alembic.

- An empty database gets today's tables at once (``metadata.create_all``) and is stamped with the
  newest revision: Alembic's own recipe for new databases, and much faster than replaying every
  migration for each test's fresh SQLite file.
- A database at an older revision is upgraded to the newest (``tenantml db upgrade``, and every
  process that opens the store, ``tenantml up`` first of all).
- A home created before migrations existed has the tables but no version table: its revision is
  recognised from its columns, stamped, then upgraded, so no such home has to be recreated.

The migrations live in ``tenantml/adapters/migrations`` with their own version table,
``tenantml_alembic_version``: Prefect and MLflow keep an ``alembic_version`` of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from tenantml.adapters.database import metadata
from tenantml.adapters.migrations import VERSION_TABLE

__all__ = ["VERSION_TABLE", "current_revision", "ensure_schema", "head_revision", "upgrade"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {_MIGRATIONS}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None for an empty database (or one made before migrations)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _recognised_revision(conn: Connection) -> str:
    """The revision of a database made before migrations existed, told by its columns."""
    columns = {column["name"] for column in inspect(conn).get_columns("training_requests")}
    return "0002" if "finalized_at" in columns else "0001"  # homes made after 0002 have a version table


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A transaction for migrations. On SQLite, batch mode alters a table by copying it, dropping
    the old one and renaming the copy; with foreign keys enforced (as our engines do) dropping a
    referenced table fails, so they are off for the migration (SQLite ignores the pragma inside a
    transaction, hence before it) and checked once at the end."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                yield conn
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the migration left rows that break a foreign key; nothing was changed")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the database to ``revision``; returns (revision before, revision after)."""
    with _migrating(engine) as conn:
        before = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        tables = set(inspect(conn).get_table_names())
        if before is None and "training_requests" not in tables and revision == "head":
            metadata.create_all(conn)
            command.stamp(_config(conn), "head")
        else:
            if before is None and "training_requests" in tables:
                command.stamp(_config(conn), _recognised_revision(conn))
            command.upgrade(_config(conn), revision)
        after = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    return before, after or ""


def ensure_schema(engine: Engine) -> None:
    """Create or upgrade the schema unless it is at the newest revision already (a quick read)."""
    if current_revision(engine) != head_revision():
        upgrade(engine)
