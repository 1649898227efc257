"""The metadata database as the store's parts reach it: one transaction per call, errors translated."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from tenantml.errors import ServiceUnavailable

__all__ = ["SqlDatabase", "database_unavailable", "retry_disconnects"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DISCONNECT_RETRIES = 3  # tries of a call whose connection the database dropped
DISCONNECT_WAIT_S = 0.5  # before the second try; the third waits twice as long


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


def retry_disconnects(call: Callable[P, R]) -> Callable[P, R]:
    """Try ``call`` again when the database dropped its connection (a restart, a failover, an operator's
    ``pg_terminate_backend``): SQLAlchemy has thrown that connection away, so the next try gets a new one.

    Only for calls that may run twice: reads, and fenced writes that set the same values again (a
    heartbeat, a checkpoint pointer). Any other error, or a third drop in a row, goes to the caller.
    """
    @functools.wraps(call)
    def retried(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, DISCONNECT_RETRIES + 1):
            try:
                return call(*args, **kwargs)
            except ServiceUnavailable as err:
                cause = err.__cause__
                if attempt == DISCONNECT_RETRIES or not (isinstance(cause, DBAPIError) and cause.connection_invalidated):
                    raise
                log.warning("%s: the database dropped the connection; trying again (%d of %d)", call.__name__,
                            attempt + 1, DISCONNECT_RETRIES)
                time.sleep(DISCONNECT_WAIT_S * attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    return retried
