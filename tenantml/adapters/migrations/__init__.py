"""Alembic migrations of the training metadata: their own environment and version table.

Prefect and MLflow keep an ``alembic_version`` table of their own; ours is
``tenantml_alembic_version``, so the three can even share a database without stepping on each
other (give each its own database all the same). See :mod:`tenantml.adapters.schema` for when
they run.
"""

__all__ = ["VERSION_TABLE"]

VERSION_TABLE = "tenantml_alembic_version"
