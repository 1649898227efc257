"""Block standards: every block saves to and loads from a real Prefect server, secrets stay secret."""

from __future__ import annotations

import uuid

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from blocks.platform import TenantmlPlatform
from tests.support.servers import RunningServer

pytestmark = pytest.mark.integration


def test_platform_block_round_trips_and_keeps_the_database_url_secret(prefect_server: RunningServer) -> None:
    name = f"platform-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: prefect_server.url}):
        TenantmlPlatform(database_url=SecretStr("postgresql+psycopg://u:pw@db/tenantml"),
                         mlflow_tracking_uri="http://127.0.0.1:5000").save(name)
        loaded = TenantmlPlatform.load(name)
    assert "pw" not in repr(loaded)
    assert loaded.settings_env()["TENANTML_DATABASE__URL"] == "postgresql+psycopg://u:pw@db/tenantml"
    assert loaded.settings_env() == {  # the block's own fields, whatever this process's environment says
        "TENANTML_DATABASE__URL": "postgresql+psycopg://u:pw@db/tenantml",
        "TENANTML_MLFLOW__TRACKING_URI": "http://127.0.0.1:5000",
        "TENANTML_HOME": ".tenantml",
    }
    for field in TenantmlPlatform.model_fields.values():
        assert field.description, "every block field is described"
