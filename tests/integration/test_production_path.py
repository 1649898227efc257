"""The production path: Prefect and the training metadata both on PostgreSQL, one training end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.domain.request import RequestStatus
from tenantml.settings import load_settings
from tests.support.platform import RunningPlatform, classification_frame, start_platform
from tests.support.postgres import temporary_database

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SERVER = "postgres@127.0.0.1:5432"


@pytest.fixture(scope="module")
def postgres_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    home: Path = tmp_path_factory.mktemp("pg-home")
    with temporary_database("tenantml_prefect") as prefect_db, temporary_database("tenantml_meta") as meta_db:
        settings = load_settings(
            home=home,
            database={"url": f"postgresql+psycopg://{SERVER}/{meta_db}"},
            prefect={"database_url": f"postgresql+asyncpg://{SERVER}/{prefect_db}", "small_workers": 1,
                     "large_workers": 0},
        )
        embedded, platform = start_platform(settings)
        try:
            yield platform
        finally:
            embedded.stop()


def test_training_completes_with_prefect_and_metadata_on_postgres(postgres_platform: RunningPlatform) -> None:
    assert postgres_platform.connection.store.engine.dialect.name == "postgresql"
    tenant = postgres_platform.new_tenant()
    admission = postgres_platform.submit(tenant, postgres_platform.dataset(tenant, classification_frame(rows=3000)),
                                         epochs=3)
    final = postgres_platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.COMPLETED, final.reason
    assert postgres_platform.connection.registry.champion(tenant, "m") == final.model_version
