"""Tables of the training metadata database and the engine that reaches it.

SQLite (the default) and PostgreSQL share one schema. Every worker write is an UPDATE guarded by
the lease epoch, so the database is the single point that decides which worker is current.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    false,
    event,
)

from sqlalchemy.exc import DBAPIError

from tenantml.domain.request import ACTIVE
from tenantml.errors import PlatformError

__all__ = ["attempts", "create_database", "fleet_decisions", "metadata", "requests", "supervisor_leases", "tenants"]

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("api_key_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("max_queued", Integer),  # requests it may have waiting for a worker; None: the settings' default
    Column("max_running", Integer),  # trainings it may run at once, on all classes; None: the settings' default
    Column("disabled", Boolean, nullable=False, server_default=false()),  # keys refused, nothing started
)

requests = Table(
    "training_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), ForeignKey("tenants.name"), nullable=False, index=True),
    Column("model", String(128), nullable=False),
    Column("dataset", Text, nullable=False),
    Column("dataset_fingerprint", String(64), nullable=False),
    Column("training_fingerprint", String(64), nullable=False),
    Column("target", String(256), nullable=False),
    Column("algorithm", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("promotion", String(128), nullable=False, default="always"),
    Column("force", Boolean, nullable=False, default=False),
    Column("idempotency_key", String(256), unique=True),
    Column("status", String(16), nullable=False, index=True),
    Column("reason", Text),
    Column("epoch", Integer, nullable=False, default=0),
    Column("worker_uuid", String(36)),
    Column("worker_class", String(16), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("step", Integer, nullable=False, default=0),
    Column("total_steps", Integer),
    Column("checkpoint_uri", Text),
    Column("checkpoint_step", Integer),
    Column("checkpoint_sha256", String(64)),
    Column("mlflow_run_id", String(64)),
    Column("move_requested", Boolean, nullable=False, default=False),
    Column("queued_at", DateTime(timezone=True)),  # waiting for a slot since; None while a worker holds it
    Column("preempt_requested", Boolean, nullable=False, default=False),
    Column("preempt_reason", Text),
    Column("model_version", String(32)),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("finalized_at", DateTime(timezone=True)),  # promotion and clean-up done by a master
)

# At most one active training per tenant and model, whatever races the submitters run.
_ACTIVE_STATUSES = sorted(status.value for status in ACTIVE)
Index(
    "one_active_training",
    requests.c.tenant,
    requests.c.model,
    unique=True,
    sqlite_where=requests.c.status.in_(_ACTIVE_STATUSES),
    postgresql_where=requests.c.status.in_(_ACTIVE_STATUSES),
)

attempts = Table(
    "attempts",
    metadata,
    Column("request_id", String(36), ForeignKey("training_requests.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("epoch", Integer, nullable=False),
    Column("worker_uuid", String(36), nullable=False),
    Column("worker_class", String(16), nullable=False),
    Column("flow_run_id", String(36)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("running_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("end", String(32)),
    Column("reason", Text),
    Column("resume_step", Integer, nullable=False, default=0),
    Column("end_step", Integer),
    UniqueConstraint("request_id", "epoch"),
)


# Who runs the training supervisor now: one row per loop name, taken over when its heartbeat stops.
supervisor_leases = Table(
    "supervisor_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)


# The provisioner's last decision per worker class, for `tenantml workers` (one row a class, overwritten).
fleet_decisions = Table(
    "fleet_decisions",
    metadata,
    Column("worker_class", String(16), primary_key=True),
    Column("current", Integer, nullable=False),
    Column("desired", Integer, nullable=False),
    Column("minimum", Integer, nullable=False),
    Column("maximum", Integer, nullable=False),
    Column("busy", Integer, nullable=False),
    Column("need", Integer, nullable=False),
    Column("draining", Integer, nullable=False, default=0),  # workers chosen for removal, finishing their runs
    Column("restarts", Integer, nullable=False, default=0),  # workers replaced after exiting by themselves
    Column("reason", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("changed_at", DateTime(timezone=True)),  # when the provisioner last changed the count
)

def _tune_sqlite(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_database(url: str, *, create_schema: bool = True) -> Engine:
    """An engine for ``url``; creates or upgrades the schema (see :mod:`tenantml.adapters.schema`) unless told not to.

    A SQLite file whose folder does not exist, or a database that does not answer, is a
    PlatformError naming the place and the settings to check, never a driver's traceback.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        folder = Path(engine.url.database or ".").parent
        if engine.url.database not in (None, "", ":memory:") and not folder.is_dir():
            raise PlatformError(
                f"no training metadata at {engine.url.database}: its folder does not exist; start the platform "
                "with `tenantml up` (or set TENANTML_HOME to its home, or TENANTML_DATABASE__URL)"
            )
        event.listen(engine, "connect", _tune_sqlite)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
    if create_schema:
        from tenantml.adapters.schema import ensure_schema
        from tenantml.adapters.sql import database_unavailable

        try:
            ensure_schema(engine)
        except DBAPIError as err:
            engine.dispose()
            raise database_unavailable(engine, err) from err
    return engine
