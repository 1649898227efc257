"""Shared fixtures: real servers on free ports in temporary folders, stopped by pid."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import RunningServer, start_mlflow, start_prefect

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_prefect(tmp_path_factory.mktemp("prefect"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tenant_name() -> str:
    """A random tenant name, so tests sharing servers never see each other's data."""
    return "t-" + uuid.uuid4().hex[:10]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tenantml.db'}"
