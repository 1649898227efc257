"""Alembic's environment for the training metadata; run through tenantml.adapters.schema, not alembic's CLI."""

from __future__ import annotations

from alembic import context

from tenantml.adapters.database import metadata
from tenantml.adapters.migrations import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters tables by copying them: batch mode does that
)
with context.begin_transaction():
    context.run_migrations()
