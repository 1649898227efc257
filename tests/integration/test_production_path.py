"""The production path: every store on PostgreSQL, each in a database of its own (the training metadata,
Prefect's, MLflow's backend store, MLflow's basic-auth users), one training end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.adapters.schema import VERSION_TABLE, current_revision, head_revision
from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest
from tenantml.settings import load_settings
from tests.support.platform import RunningPlatform, classification_frame, start_platform
from tests.support.postgres import PostgresStores, drop_connections, postgres_stores, tables
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.system]


@pytest.fixture(scope="module")
def stores() -> Iterator[PostgresStores]:
    with postgres_stores("tenantml_prod") as found:
        yield found


@pytest.fixture(scope="module")
def postgres_platform(stores: PostgresStores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    home: Path = tmp_path_factory.mktemp("pg-home")
    sections = stores.sections()
    settings = load_settings(
        home=home, database=sections["database"], mlflow=sections["mlflow"],
        prefect={**sections["prefect"], "small_workers": 1, "large_workers": 0},
        fleet={"provisioner": False},
    )
    embedded, platform = start_platform(settings)
    try:
        yield platform
    finally:
        embedded.stop()


def test_training_completes_with_every_store_on_postgres(postgres_platform: RunningPlatform) -> None:
    assert postgres_platform.connection.store.engine.dialect.name == "postgresql"
    tenant = postgres_platform.new_tenant()
    admission = postgres_platform.submit(tenant, postgres_platform.dataset(tenant, classification_frame(rows=3000)),
                                         epochs=3)
    final = postgres_platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.COMPLETED, final.reason
    assert postgres_platform.connection.registry.champion(tenant, "m") == final.model_version


def test_each_store_keeps_its_tables_and_schema_version_in_its_own_database(
    postgres_platform: RunningPlatform, stores: PostgresStores
) -> None:
    home = postgres_platform.settings.home
    assert not list((home / "mlflow").glob("*.db")), "MLflow wrote a SQLite file although its stores are on PostgreSQL"
    assert not list((home / "prefect").glob("*.db")), "Prefect wrote a SQLite file although its store is on PostgreSQL"
    assert not (home / "tenantml.db").exists()
    mlflow, auth, prefect, metadata = (tables(name) for name in
                                       (stores.mlflow, stores.mlflow_auth or "", stores.prefect, stores.metadata))
    assert {"alembic_version", "experiments", "runs", "registered_models", "model_versions"} <= mlflow
    assert {"alembic_version_auth", "users", "experiment_permissions"} <= auth
    assert "users" not in mlflow and "experiments" not in auth
    assert {"alembic_version", "flow_run", "work_pool"} <= prefect
    assert {VERSION_TABLE, "training_requests", "tenants"} <= metadata and "alembic_version" not in metadata
    assert current_revision(postgres_platform.connection.store.engine) == head_revision()  # `tenantml up` upgraded it
    assert not (mlflow & prefect) - {"alembic_version"}, "MLflow and Prefect share tables"


def test_a_training_rides_out_its_databases_dropping_every_connection(
    postgres_platform: RunningPlatform, stores: PostgresStores
) -> None:
    """Three times during a training, every connection to each of the four databases is terminated (as a
    PostgreSQL failover does): the pools reconnect, the calls retry, the training goes on stepping and
    completes in its first attempt."""
    platform = postgres_platform
    tenant = platform.new_tenant()
    admission = platform.submit(tenant, platform.dataset(tenant, classification_frame(), name="drops.csv"),
                                model="drops", epochs=400)  # about 25k steps
    request_id = admission.request_id

    def past(step: int) -> TrainingRequest | None:
        request = platform.request(request_id)
        assert not request.status.is_terminal, f"ended before the drops were over: {request.status} {request.reason}"
        return request if request.checkpoint and request.checkpoint.step > step else None

    databases = [stores.metadata, stores.prefect, stores.mlflow, stores.mlflow_auth or stores.mlflow]
    step, dropped = 0, 0
    for _ in range(3):
        checkpoint = wait_for(lambda: past(step), 300, f"request {request_id} to checkpoint past step {step}").checkpoint
        assert checkpoint is not None
        step = checkpoint.step
        dropped += sum(drop_connections(database) for database in databases)
    assert dropped >= 3, "no connection was open to drop"

    final = platform.wait_done(request_id, timeout_s=600)
    assert final.status is RequestStatus.COMPLETED, final.reason
    assert len(final.attempts) == 1 and final.attempts[0].end is AttemptEnd.COMPLETED, final.attempts
