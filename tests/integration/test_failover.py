"""UUID events against the real platform: kill, hang, repeated failure, resources, poison, supervisor loss."""

from __future__ import annotations

import os
import signal

import mlflow
import numpy as np
import pandas as pd
import psutil
import pytest

from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest, WorkerClass
from tenantml.ml.algorithms import trainer_for
from tenantml.ml.dataset import prepare
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from tenantml.local.embedded import EmbeddedPlatform
from tenantml.services.supervisor import LEASE
from tests.support.platform import RunningPlatform, classification_frame
from tests.support.waiting import flow_run_pid, wait_for

pytestmark = pytest.mark.integration

LOST = {AttemptEnd.CRASHED, AttemptEnd.HEARTBEAT_LOST}


def _worker_with_checkpoint(platform: RunningPlatform, request_id: str, after_step: int = 0) -> tuple[TrainingRequest, int]:
    """Wait until the current attempt has committed past ``after_step``; return it and its pid."""
    def ready() -> tuple[TrainingRequest, int] | None:
        request = platform.request(request_id)
        attempt = request.current_attempt
        if request.status.is_terminal:
            raise AssertionError(f"request ended before the failure could be injected: {request.status}")
        if not (request.checkpoint and request.checkpoint.step > after_step and attempt and attempt.flow_run_id):
            return None
        if request.checkpoint.uri.find(f"lease-{request.epoch}/") < 0:
            return None
        pid = flow_run_pid(attempt.flow_run_id)
        return (request, pid) if pid else None

    return wait_for(ready, 180, f"a checkpoint past step {after_step} of request {request_id}")


def _reference_predictions(frame: pd.DataFrame, algorithm: str, params: dict[str, object]) -> np.ndarray:
    trainer = trainer_for(algorithm, params, prepare(frame, "label"))
    while trainer.completed_steps < trainer.total_steps:
        trainer.advance()
    return trainer.estimator.predict_proba(frame.drop(columns="label").to_numpy())


def _registered_predictions(platform: RunningPlatform, tenant: str, version: str, frame: pd.DataFrame) -> np.ndarray:
    mlflow.set_tracking_uri(platform.mlflow_uri)
    model = mlflow.sklearn.load_model(f"models:/{tenant}.m/{version}")
    return model.predict_proba(frame.drop(columns="label").to_numpy())


def test_killed_worker_resumes_and_matches_the_uninterrupted_model(platform: RunningPlatform) -> None:
    tenant, frame = platform.new_tenant(), classification_frame()
    params = {"epochs": 20}
    admission = platform.submit(tenant, platform.dataset(tenant, frame), **params)
    request, pid = _worker_with_checkpoint(platform, admission.request_id)
    os.kill(pid, signal.SIGKILL)

    final = platform.wait_done(admission.request_id)

    assert final.status is RequestStatus.COMPLETED, final.reason
    assert len(final.attempts) == 2
    assert final.attempts[0].end in LOST
    assert final.attempts[1].resume_step >= request.checkpoint.step > 0
    assert final.attempts[0].worker_uuid != final.attempts[1].worker_uuid
    np.testing.assert_array_equal(
        _registered_predictions(platform, tenant, final.model_version, frame),
        _reference_predictions(frame, "sgd_classifier", params),
    )


def test_hung_worker_is_fenced_and_its_late_writes_are_refused(platform: RunningPlatform) -> None:
    tenant, frame = platform.new_tenant(), classification_frame()
    admission = platform.submit(tenant, platform.dataset(tenant, frame), epochs=20)
    request, pid = _worker_with_checkpoint(platform, admission.request_id)
    os.kill(pid, signal.SIGSTOP)
    try:
        fenced = wait_for(
            lambda: (r := platform.request(admission.request_id)).epoch > request.epoch and r.heartbeat_at and r,
            60, "the training to run again on a new worker",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             60, "the fenced worker to exit")

    final = platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.COMPLETED, final.reason
    assert final.attempts[0].end is AttemptEnd.HEARTBEAT_LOST
    assert fenced.worker_uuid != request.worker_uuid
    assert f"/lease-{request.epoch}/" not in final.checkpoint.uri
    assert platform.connection.registry.versions_for_request(tenant, "m", final.id) == [final.model_version]
    run = mlflow.MlflowClient(platform.mlflow_uri).get_run(final.mlflow_run_id)
    assert run.data.tags["tenantml.worker_uuid"] != request.worker_uuid


def test_third_worker_finishes_when_two_have_failed(platform: RunningPlatform) -> None:
    tenant, frame = platform.new_tenant(), classification_frame()
    admission = platform.submit(tenant, platform.dataset(tenant, frame), epochs=30)
    first, pid = _worker_with_checkpoint(platform, admission.request_id)
    os.kill(pid, signal.SIGKILL)
    second, pid = _worker_with_checkpoint(platform, admission.request_id, after_step=first.checkpoint.step)
    assert second.epoch > first.epoch
    os.kill(pid, signal.SIGKILL)

    final = platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.COMPLETED, final.reason
    assert [a.end in LOST for a in final.attempts] == [True, True, False]
    assert len({a.worker_uuid for a in final.attempts}) == 3
    assert final.attempts[2].resume_step >= second.checkpoint.step


def test_resource_failure_on_the_small_class_resumes_on_the_large_class(platform: RunningPlatform) -> None:
    tenant = platform.new_tenant()
    # 1.2M x 40 floats: ~770 MB while loading, over the small class's 700 MB headroom
    admission = platform.submit(tenant, platform.wide_dataset(tenant, 1_200_000, 40), epochs=1, batch_size=200_000)

    final = platform.wait_done(admission.request_id, timeout_s=300)
    assert final.status is RequestStatus.COMPLETED, final.reason
    assert final.attempts[0].worker_class is WorkerClass.SMALL
    assert final.attempts[0].end is AttemptEnd.RESOURCE_EXHAUSTED, final.attempts[0].reason
    assert final.attempts[1].worker_class is WorkerClass.LARGE


def test_poison_request_fails_after_the_budget_and_spares_the_others(platform: RunningPlatform) -> None:
    tenant = platform.new_tenant()
    dataset = platform.dataset(tenant, classification_frame())
    poison = platform.submit(tenant, dataset, model="poison", epochs=30)
    other_tenant = platform.new_tenant()
    healthy = platform.submit(other_tenant, platform.dataset(other_tenant, classification_frame(rows=3000)))
    killed: set[int] = set()

    def kill_current() -> TrainingRequest | None:
        request = platform.request(poison.request_id)
        if request.status.is_terminal:
            return request
        attempt = request.current_attempt
        pid = flow_run_pid(attempt.flow_run_id) if attempt and attempt.flow_run_id else None
        if pid and pid not in killed and request.heartbeat_at:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        return None

    final = wait_for(kill_current, 240, "the poison request to give up")
    assert final.status is RequestStatus.FAILED
    assert len(final.attempts) == 3  # attempt budget 2 in these tests
    assert "gave up after 3 attempts" in (final.reason or "")
    assert platform.wait_done(healthy.request_id).status is RequestStatus.COMPLETED


def test_a_standby_supervisor_takes_over_from_a_dead_one_and_the_training_completes(
    platform: RunningPlatform, embedded: EmbeddedPlatform
) -> None:
    """The supervisor stops without releasing its lease, as when its process dies; the
    `training-supervisor` deployment (the cloud's way) waits for the lease to go stale and carries on."""
    tenant = platform.new_tenant()
    admission = platform.submit(tenant, platform.dataset(tenant, classification_frame()), epochs=60)
    _worker_with_checkpoint(platform, admission.request_id)
    embedded.stop_supervisor(release_lease=False)
    with temporary_settings(updates={PREFECT_API_URL: platform.prefect_api_url}):
        run = run_deployment("training-supervisor/default", parameters={"run_for_s": 240, "standby_s": 60},
                             timeout=0)
    try:
        final = wait_for(lambda: (r := platform.request(admission.request_id)).finalized_at and r, 300,
                         "the standby supervisor to see the training through")
        assert final.status is RequestStatus.COMPLETED, final.reason
        holder = platform.connection.store.lease_holder(LEASE)
        assert holder is not None and holder[0] == f"flow-run:{run.id}"  # type: ignore[union-attr]
        assert platform.connection.registry.champion(tenant, "m") == final.model_version
    finally:
        with temporary_settings(updates={PREFECT_API_URL: platform.prefect_api_url}), \
                get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(message="test over"), force=True)  # type: ignore[union-attr]
