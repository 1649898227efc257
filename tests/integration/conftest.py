"""A whole embedded platform (Prefect, MLflow, process workers) shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.local.embedded import EmbeddedPlatform
from tenantml.settings import load_settings
from tests.support.platform import RunningPlatform, classification_frame, start_platform

__all__ = ["RunningPlatform", "classification_frame"]


@pytest.fixture(scope="session")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedPlatform, RunningPlatform]]:
    home: Path = tmp_path_factory.mktemp("home")
    settings = load_settings(
        home=home,
        training={"heartbeat_timeout_s": 3, "checkpoint_interval_s": 1, "attempt_budget": 2,
                  "small_memory_limit_mb": 700, "supervisor_timeout_s": 12},
        prefect={"small_workers": 2, "large_workers": 1},
        fleet={"provisioner": False},  # a fixed fleet: the failover tests count on a free worker; see test_fleet_*
        limits={"max_checkpoint_bytes": 1_000_000},  # far over an sgd checkpoint (2 kB); see test_user_errors
    )
    embedded, running = start_platform(settings)
    try:
        yield embedded, running
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def platform(started: tuple[EmbeddedPlatform, RunningPlatform]) -> RunningPlatform:
    return started[1]


@pytest.fixture
def embedded(started: tuple[EmbeddedPlatform, RunningPlatform]) -> Iterator[EmbeddedPlatform]:
    """The platform's own processes; a test that stops its supervisor gets it back afterwards."""
    yield started[0]
    started[0].start_supervisor()
