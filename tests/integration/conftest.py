"""A whole embedded platform (Prefect, MLflow, process workers) shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.settings import load_settings
from tests.support.platform import RunningPlatform, classification_frame, start_platform

__all__ = ["RunningPlatform", "classification_frame"]


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    home: Path = tmp_path_factory.mktemp("home")
    settings = load_settings(
        home=home,
        training={"heartbeat_timeout_s": 3, "checkpoint_interval_s": 1, "attempt_budget": 2,
                  "small_memory_limit_mb": 700, "master_timeout_s": 12},
        prefect={"small_workers": 2, "large_workers": 1},
    )
    embedded, running = start_platform(settings)
    try:
        yield running
    finally:
        embedded.stop()
