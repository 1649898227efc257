"""The metadata database as the store's parts reach it: one transaction per call, errors translated."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from tenantml.errors import ServiceUnavailable

__all__ = ["SqlDatabase", "database_unavailable"]


def database_unavailable(engine: Engine, err: DBAPIError) -> ServiceUnavailable:
    """What to tell a user whose metadata database failed: which one, what it said, what to check."""
    return ServiceUnavailable(
        f"the training metadata database ({engine.url.render_as_string(hide_password=True)}) "
        f"failed: {type(err.orig).__name__}: {str(err.orig).strip()[:300]}; check TENANTML_DATABASE__URL "
        "and that the database is running"
    )


class SqlDatabase:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction; a database that does not answer becomes ServiceUnavailable, naming it."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise  # a constraint said no: each caller says what that means
        except DBAPIError as err:
            raise database_unavailable(self.engine, err) from err

    _connect = _begin  # reads take a transaction too: one place translates errors
