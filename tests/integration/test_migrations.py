"""The training metadata's migrations, on SQLite and on PostgreSQL: nothing accepted before is lost."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, text

from tenantml.adapters.database import create_database, metadata
from tenantml.adapters.schema import VERSION_TABLE, current_revision, ensure_schema, head_revision, upgrade
from tenantml.adapters.store import Store
from tenantml.domain.request import AttemptEnd, RequestStatus
from tests.support.postgres import temporary_database

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            yield f"sqlite:///{tmp_path / 'tenantml.db'}"
        else:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{stack.enter_context(temporary_database())}"


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """Foreign keys enforced on SQLite as the platform's own engines do (adapters/database.py)."""
    engine = create_engine(url)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA foreign_keys=ON"))
    yield engine
    engine.dispose()


def fill_first_schema(engine: Engine) -> None:
    """Rows as the first version of tenantml wrote them: a tenant, a finished and a running request."""
    request = (
        "INSERT INTO training_requests (id, tenant, model, dataset, dataset_fingerprint, training_fingerprint,"
        " target, algorithm, params, promotion, force, idempotency_key, status, reason, epoch, worker_uuid,"
        " worker_class, step, total_steps, checkpoint_uri, checkpoint_step, checkpoint_sha256, move_requested,"
        " model_version, metrics, created_at, updated_at, finished_at) VALUES (:id, 'acme', :model, '/d/acme/c.csv',"
        " :fp, :fp, 'label', 'sgd_classifier', '{\"epochs\": 2}', 'always', :false, :key, :status, NULL, :epoch,"
        " :uuid, 'small', :step, 20, :ck, :ckstep, :sha, :false, :version, '{\"accuracy\": 0.9}', :t0, :t0, :finished)"
    )
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants VALUES ('acme', :digest, :t0)"), {"digest": "d" * 64, "t0": T0})
        common = {"fp": "f" * 64, "false": False, "t0": T0, "sha": "c" * 64}
        conn.execute(text(request), {**common, "id": "done", "model": "churn", "key": "k-1", "status": "completed",
                                     "epoch": 1, "uuid": None, "step": 20, "ck": "file:///ck/20", "ckstep": 20,
                                     "version": "3", "finished": T0})
        conn.execute(text(request), {**common, "id": "live", "model": "fraud", "key": None, "status": "running",
                                     "epoch": 2, "uuid": "u-2", "step": 7, "ck": "file:///ck/5", "ckstep": 5,
                                     "version": None, "finished": None})
        conn.execute(text(
            "INSERT INTO attempts (request_id, number, epoch, worker_uuid, worker_class, flow_run_id, started_at,"
            " ended_at, \"end\", reason, resume_step, end_step) VALUES"
            " ('live', 1, 1, 'u-1', 'small', 'run-1', :t0, :t0, 'crashed', 'killed', 0, 6),"
            " ('live', 2, 2, 'u-2', 'large', 'run-2', :t0, NULL, NULL, NULL, 5, NULL)"
        ), {"t0": T0})


def test_a_database_of_the_first_schema_upgrades_with_every_row(engine: Engine, url: str) -> None:
    upgrade(engine, "0001")
    fill_first_schema(engine)

    assert upgrade(engine) == ("0001", head_revision())
    store = Store(create_database(url))
    done, live = store.get_request("done"), store.get_request("live")
    assert (done.status, done.model_version, done.metrics, done.idempotency_key) == (
        RequestStatus.COMPLETED, "3", {"accuracy": 0.9}, "k-1"
    )
    assert store.by_idempotency_key("acme", "k-1") is not None  # the key now stands under its tenant
    assert done.finalized_at == T0  # ended before the upgrade: not finalized all over again
    assert (live.status, live.epoch, live.worker_uuid, live.step, live.finalized_at) == (
        RequestStatus.RUNNING, 2, "u-2", 7, None
    )
    assert live.checkpoint is not None and (live.checkpoint.uri, live.checkpoint.step) == ("file:///ck/5", 5)
    assert [(a.number, a.end, a.resume_step, a.running_at) for a in live.attempts] == [
        (1, AttemptEnd.CRASHED, 0, None), (2, None, 5, None)
    ]
    assert store.tenant_for_key("d" * 64) == "acme"
    assert [r.id for r in store.supervised()] == ["live"]
    # admitted before the validation split: they trained, and resume, on every row
    assert done.spec.params == live.spec.params == {"epochs": 2, "validation_fraction": 0.0}


def test_a_home_made_before_migrations_is_recognised_and_upgraded(engine: Engine) -> None:
    upgrade(engine, "0001")
    fill_first_schema(engine)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))  # as homes made before migrations existed
    assert current_revision(engine) is None

    ensure_schema(engine)
    assert current_revision(engine) == head_revision()
    assert Store(engine).get_request("done").finalized_at == T0


def test_a_new_database_has_exactly_the_schema_the_migrations_build(engine: Engine, url: str) -> None:
    upgrade(engine, "0001")
    upgrade(engine)  # every migration, one after the other
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), metadata) == []
    fresh = create_database(url.replace("tenantml.db", "fresh.db")) if url.startswith("sqlite") else None
    if fresh is not None:  # created at once (create_all) and stamped, as every new database is
        assert current_revision(fresh) == head_revision()
        with fresh.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), metadata) == []
        fresh.dispose()
