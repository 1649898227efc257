"""Start-up checks: every setting `tenantml up` depends on is tried before any process starts.

A wrong database URL, a database that does not answer, or (once storage has its checks) a missing
bucket would otherwise surface minutes later as a server that never gets healthy, or as a
traceback in one of its logs, with half the platform started. Each check here yields problems,
each naming its setting, the value (without its password) and what to do; :func:`run_checks`
raises one :class:`~tenantml.errors.StartupCheckFailed` with all of them.

More checks join :data:`CHECKS`: a function of the settings and the home that yields problems.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tenantml.adapters.s3_setup import storage_problems
from tenantml.errors import StartupCheckFailed
from tenantml.setting_variables import variable_name
from tenantml.settings import Settings

__all__ = ["CHECKS", "CONNECT_TIMEOUT_S", "Check", "DatabaseSetting", "check_databases", "database_settings",
           "run_checks"]

CONNECT_TIMEOUT_S = 5

Check = Callable[[Settings, Path], Iterable[str]]
"""A start-up check: the problems it found, each a message naming its setting (none: all is well)."""

_POSTGRES = ("postgresql", "postgresql+psycopg")
_SQLITE = ("sqlite", "sqlite+pysqlite")


@dataclass(frozen=True)
class DatabaseSetting:
    """One database URL the platform uses: the variable that sets it, its value, the drivers it accepts."""

    variable: str
    url: str
    drivers: tuple[str, ...]


def _variable(*path: str) -> str:
    return variable_name(path)


def database_settings(settings: Settings) -> list[DatabaseSetting]:
    """The database URLs given in ``settings`` (the metadata's always: its default is a file in the home)."""
    found = [DatabaseSetting(_variable("database", "url"), settings.database_url, (*_SQLITE, *_POSTGRES))]
    optional = (
        (("prefect", "database_url"), settings.prefect.database_url, ("sqlite+aiosqlite", "postgresql+asyncpg")),
        (("mlflow", "backend_store_uri"), settings.mlflow.backend_store_uri, (*_SQLITE, *_POSTGRES)),
        (("mlflow", "auth_database_uri"), settings.mlflow.auth_database_uri, (*_SQLITE, *_POSTGRES)),
    )
    for path, value, drivers in optional:
        if value is not None:
            found.append(DatabaseSetting(_variable(*path), value.get_secret_value(), drivers))
    return found


def check_databases(settings: Settings, home: Path) -> Iterator[str]:
    """Each database URL parses, names a driver its user speaks, and answers; Prefect and MLflow apart."""
    del home  # the default SQLite files are created there; check_home made sure it can be written
    places: dict[tuple[str, int, str], str] = {}
    for setting in database_settings(settings):
        try:
            url = make_url(setting.url)
        except ArgumentError:
            yield (f"{setting.variable}: {_hidden(setting.url)!r} is not a database URL; give one like "
                   f"{setting.drivers[-1]}://user:password@host:5432/database")
            continue
        if url.drivername not in setting.drivers:
            yield (f"{setting.variable}: driver {url.drivername!r} in {_shown(url)} is not one it can use; "
                   f"use one of {', '.join(setting.drivers)}")
            continue
        problem = _sqlite_problem(url) if url.drivername.startswith("sqlite") else _postgres_problem(url)
        if problem:
            yield f"{setting.variable}: {problem}"
        elif url.drivername.startswith("postgresql") and "mlflow__auth" not in setting.variable.lower():
            place = (url.host or "localhost", url.port or 5432, url.database or "")
            if place in places:  # Prefect and MLflow each keep a table alembic_version: they cannot share
                yield (f"{setting.variable} and {places[place]} name the same database {_shown(url)}: give each "
                       "its own database (`createdb`), each keeps its own schema version")
            places[place] = setting.variable


def _hidden(text: str) -> str:
    """``text`` with what follows ``user:`` up to the ``@`` masked: a URL that did not parse still hides it."""
    scheme, sep, rest = text.rpartition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return text
    return f"{scheme}{sep}{credentials.partition(':')[0]}:***@{host}"


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_problem(url: URL) -> str | None:
    if url.database in (None, "", ":memory:"):
        return f"{_shown(url)} is an in-memory database: the platform's processes cannot share it; name a file"
    folder = Path(url.database).resolve().parent
    if not folder.is_dir():
        return f"cannot use {_shown(url)}: folder {folder} does not exist; create it or name another file"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot use {_shown(url)}: folder {folder} cannot be written; choose a writable folder"
    return None


def _postgres_problem(url: URL) -> str | None:
    """Connect once, as the platform's servers will, with a short timeout; None if that worked."""
    options: dict[str, str | int | None] = {
        "host": url.host or "localhost", "port": url.port or 5432, "dbname": url.database or "",
        "user": url.username, "password": url.password, "connect_timeout": CONNECT_TIMEOUT_S,
    }
    sslmode = url.query.get("sslmode")
    if isinstance(sslmode, str):
        options["sslmode"] = sslmode
    try:
        psycopg.connect(psycopg.conninfo.make_conninfo("", **{k: v for k, v in options.items() if v is not None})).close()
    except psycopg.Error as err:
        return f"cannot connect to {_shown(url)}: {_reason(str(err), url)}"
    return None


def _reason(message: str, url: URL) -> str:
    """libpq's message as a cause and a fix (the message holds no password)."""
    text = message.lower()
    known = (
        ("connection refused", "connection refused; check host and port, and that PostgreSQL runs there"),
        ("timeout expired", f"no answer within {CONNECT_TIMEOUT_S} s; check host, port and firewall"),
        ("could not translate host name", f"unknown host {url.host!r}; check the host name"),
        ("name or service not known", f"unknown host {url.host!r}; check the host name"),
        ("password authentication failed", f"password authentication failed for user {url.username!r}; "
                                           "check the user and password"),
        ("no password supplied", f"the server asks user {url.username!r} for a password; add it to the URL"),
        ("role", f"user {url.username!r} does not exist there; check the user, or create it (`createuser`)"),
        ("does not exist", f"database {url.database!r} does not exist; create it (`createdb {url.database}`) or "
                           "fix the name"),
    )
    for needle, reason in known:
        if needle in text and (needle != "role" or "does not exist" in text):
            return reason
    return message.strip().splitlines()[0].rpartition("FATAL:")[2].strip() or "the connection failed"


CHECKS: list[Check] = [check_databases, storage_problems]
"""Every start-up check, in order: the databases, then the S3 storage (bucket, credentials, endpoint)."""


def run_checks(settings: Settings, home: Path, checks: Iterable[Check] | None = None) -> None:
    """Run every check (all of them, so one start shows every wrong setting); raise if any found a problem."""
    problems = [problem for check in (CHECKS if checks is None else checks) for problem in check(settings, home)]
    if problems:
        raise StartupCheckFailed(problems)
