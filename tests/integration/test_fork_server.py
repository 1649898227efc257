"""The flow-run fork server: the launcher's child is a real prefect.engine, with the launcher's
streams, environment and exit status; without a fork server the launcher runs the engine itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.platform.process import Service, start_service, stop_services
from tenantml.platform.zygote import socket_path
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]


def _launch(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TENANTML_HOME": str(home), "PREFECT__FLOW_RUN_ID": "not-a-uuid"}
    return subprocess.run([sys.executable, "-m", "tenantml.platform.launch", *args], env=env, cwd=PROJECT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Service]]:
    home = tmp_path_factory.mktemp("zygote-home")
    env = {**os.environ, "TENANTML_HOME": str(home)}
    service = start_service("flow-run-zygote", [sys.executable, "-m", "tenantml.platform.zygote"], env, home, PROJECT)
    try:
        wait_for(lambda: socket_path(home).exists() or not service.alive(), 120, "the fork server's socket")
        assert service.alive(), service.log_path.read_text()
        yield home, service
    finally:
        stop_services([service])


def test_forked_engine_reports_through_the_launchers_streams_and_exit_code(zygote: tuple[Path, Service]) -> None:
    home, service = zygote
    result = _launch(home)
    assert result.returncode == 1
    assert "Invalid flow run id" in result.stderr  # printed by the forked prefect.engine into our stderr
    assert service.alive()


def test_launcher_runs_the_engine_itself_without_a_fork_server(tmp_path: Path) -> None:
    result = _launch(tmp_path)
    assert result.returncode == 1
    assert "Invalid flow run id" in result.stderr
