"""Supervised services on a running platform: kill -9 a server, the keeper starts it again on its port,
`tenantml status` counts the restart and shows the kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.local.fork_server import socket_path
from tenantml.local.status import platform_status
from tenantml.settings import load_settings
from tests.support.platform import TENANTML, RunningPlatform, classification_frame, start_platform
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.system]

RESTART_DEADLINE_S = 600  # a kill, the backoff, a cold start of the server on a machine with a load of 40


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedPlatform, RunningPlatform]]:
    settings = load_settings(
        home=tmp_path_factory.mktemp("kept-home"),
        training={"checkpoint_interval_s": 1},  # the default heartbeat timeout (3 s): an outage must not fence
        prefect={"small_workers": 1, "large_workers": 0},
        fleet={"provisioner": False},
    )
    embedded, running = start_platform(settings, serve_inference=True)
    try:
        yield embedded, running
    finally:
        embedded.stop()


def _status(platform: RunningPlatform) -> dict[str, Any]:
    return platform_status(platform.settings)


def _kill(embedded: EmbeddedPlatform, name: str) -> int:
    pid = next(service.pid for service in embedded.services if service.name == name)
    os.kill(pid, signal.SIGKILL)
    return pid


def _restarted(platform: RunningPlatform, name: str, old_pid: int, restarts: int,
               component: str | None) -> dict[str, Any]:
    """Wait until the state file shows ``name`` up again under a new pid, its health check answering."""
    def up() -> dict[str, Any] | None:
        status = _status(platform)
        record = status["services"].get(name)
        if record is None or record["restarts"] < restarts or record["restarting"] or record["pid"] == old_pid:
            return None
        if component is not None and not status["components"][component]:
            return None
        return status

    return wait_for(up, RESTART_DEADLINE_S, f"{name} to be restarted", every_s=0.5)


@pytest.mark.parametrize("name, component", [
    ("tenant-api", "tenant_api"), ("inference", "inference"), ("fork-server", None),
    ("mlflow-server", "mlflow"), ("prefect-server", "prefect"),
])
def test_a_killed_server_is_restarted_on_its_port_and_status_shows_the_restart(
    kept: tuple[EmbeddedPlatform, RunningPlatform], name: str, component: str | None,
) -> None:
    embedded, platform = kept
    before = _status(platform)
    assert before["services"][name]["restarts"] == 0 and before["services"][name]["last_exit"] is None
    url = {"tenant_api": before["tenant_api_url"], "inference": before["inference_url"],
           "mlflow": before["mlflow_tracking_uri"], "prefect": before["prefect_api_url"]}.get(component or "")

    old_pid = _kill(embedded, name)
    status = _restarted(platform, name, old_pid, 1, component)

    record = status["services"][name]
    assert record["restarts"] == 1 and record["alive"]
    assert record["last_exit"]["signal"] == "SIGKILL" and record["last_exit"]["code"] is None
    assert record["up_since"] >= record["last_exit"]["at"]
    assert next(service.pid for service in embedded.services if service.name == name) == record["pid"]
    if url is not None:  # the same address as before the kill
        assert status[{"tenant_api": "tenant_api_url", "inference": "inference_url", "mlflow": "mlflow_tracking_uri",
                       "prefect": "prefect_api_url"}[component or ""]] == url
    if name == "fork-server":
        assert socket_path(platform.settings.home.resolve()).exists()
    assert status["healthy"], status
    others = {other: r["restarts"] for other, r in status["services"].items() if other != name}
    assert all(count <= 1 for count in others.values()), others  # only what earlier cases killed


def test_status_command_shows_each_service_restarts_and_last_exit(kept: tuple[EmbeddedPlatform, RunningPlatform]) -> None:
    _, platform = kept
    env = {**os.environ, "TENANTML_HOME": str(platform.settings.home)}
    as_json = subprocess.run([TENANTML, "status", "--json"], env=env, capture_output=True, text=True, timeout=300,
                             check=False)
    found = json.loads(as_json.stdout)
    assert set(found["services"]) >= {"prefect-server", "mlflow-server", "tenant-api", "inference", "fork-server"}
    for record in found["services"].values():
        assert {"pid", "restarts", "last_exit", "up_since", "alive"} <= set(record)
    human = subprocess.run([TENANTML, "status"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert "restarts" in human.stdout and "last exit" in human.stdout, human.stdout
    for name in found["services"]:
        assert name in human.stdout


def test_the_keeper_stops_with_the_platform(tmp_path: Path) -> None:
    """Stopping is not an exit to recover from: nothing is started again, nothing is left running."""
    settings = load_settings(home=tmp_path / "home", prefect={"small_workers": 0, "large_workers": 0,
                                                              "fork_server": False},
                             fleet={"provisioner": False})
    embedded, _ = start_platform(settings)
    servers = [service.pid for service in embedded.services]
    embedded.stop()
    assert not [pid for pid in servers if _running(pid)]
    assert not [service for service in embedded.services if service.alive()]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_training_rides_out_restarts_of_the_prefect_and_mlflow_servers(
    kept: tuple[EmbeddedPlatform, RunningPlatform],
) -> None:
    """kill -9 of the Prefect server, then of the MLflow server, under a running training: the keeper
    restarts each, the training's calls retry through the outage, and it completes in its first attempt
    (no budget used), with its metrics in MLflow."""
    embedded, platform = kept
    tenant = platform.new_tenant()
    dataset = platform.dataset(tenant, classification_frame(), name="ride-out.csv")
    admission = platform.submit(tenant, dataset, model="ride-out", epochs=1500)  # about 95k steps: minutes
    request_id = admission.request_id

    def training() -> TrainingRequest | None:
        request = platform.request(request_id)
        assert not request.status.is_terminal, f"ended before the outages: {request.status} {request.reason}"
        return request if request.status is RequestStatus.RUNNING and request.checkpoint else None

    wait_for(training, RESTART_DEADLINE_S, f"request {request_id} to be running with a checkpoint", every_s=0.5)
    for name, component in (("prefect-server", "prefect"), ("mlflow-server", "mlflow")):
        restarts = _status(platform)["services"][name]["restarts"]
        _restarted(platform, name, _kill(embedded, name), restarts + 1, component)
        during = platform.request(request_id)
        assert during.status is RequestStatus.RUNNING and len(during.attempts) == 1, (name, during.status, during.reason)

    done = platform.wait_done(request_id, timeout_s=RESTART_DEADLINE_S)
    assert done.status is RequestStatus.COMPLETED, done.reason
    assert len(done.attempts) == 1 and done.attempts[0].end is AttemptEnd.COMPLETED
    assert done.step == done.total_steps
    run = MlflowClient(platform.mlflow_uri).get_run(done.mlflow_run_id or "")
    assert run.info.status == "FINISHED" and "validation_accuracy" in run.data.metrics
