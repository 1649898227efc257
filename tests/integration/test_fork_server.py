"""The flow-run fork server: the launcher's child is a real prefect.engine, with the launcher's
streams, environment and exit status; without a fork server the launcher runs the engine itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.local import fork_server as forks
from tenantml.local import launch
from tenantml.local.processes import Service, stop_services
from tenantml.local.project import project_dir
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PROJECT = project_dir()
LAUNCHER = [sys.executable, "-m", launch.__name__]


def _launch(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TENANTML_HOME": str(home), "PREFECT__FLOW_RUN_ID": "not-a-uuid"}
    return subprocess.run([*LAUNCHER, *args], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Service]]:
    home = tmp_path_factory.mktemp("fork-server-home")
    service = forks.start({**os.environ, "TENANTML_HOME": str(home)}, home, home, PROJECT)
    try:
        yield home, service
    finally:
        stop_services([service])


def test_forked_engine_reports_through_the_launchers_streams_and_exit_code(fork_server: tuple[Path, Service]) -> None:
    home, service = fork_server
    result = _launch(home)
    assert result.returncode == 1
    assert "Invalid flow run id" in result.stderr  # printed by the forked prefect.engine into our stderr
    assert service.alive()


def test_launcher_runs_the_engine_itself_without_a_fork_server(tmp_path: Path) -> None:
    result = _launch(tmp_path)
    assert result.returncode == 1
    assert "Invalid flow run id" in result.stderr


def test_a_killed_flow_run_kills_its_launcher_with_the_same_signal(fork_server: tuple[Path, Service]) -> None:
    home, _ = fork_server
    flow_run_id = "00000000-0000-4000-8000-000000000001"
    env = {**os.environ, "TENANTML_HOME": str(home), "PREFECT__FLOW_RUN_ID": flow_run_id}
    # `python -c` as the "engine" arguments would not do: the launcher always runs prefect.engine, which
    # looks the run up in the API; point it at a closed port so it blocks retrying, then kill it.
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    launcher = subprocess.Popen(LAUNCHER, env=env, cwd=PROJECT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        record = forks.pid_file(home, flow_run_id)
        wait_for(record.exists, 60, "the fork server to record the flow run's pid")
        os.kill(int(record.read_text()), signal.SIGKILL)
        assert launcher.wait(timeout=60) == -signal.SIGKILL
        wait_for(lambda: not record.exists(), 30, "the pid file to be removed")
    finally:
        if launcher.poll() is None:
            launcher.kill()
