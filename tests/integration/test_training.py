"""Admission, user errors, moves and preemption against the real platform."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime

import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.settings import PREFECT_API_URL, temporary_settings

from tenantml.domain.request import AttemptEnd, RequestStatus
from tenantml.errors import InvalidDataset
from tenantml.services.admission import Decision
from tenantml.services.trainings import cancel_request
from tests.support.platform import RunningPlatform, classification_frame
from tests.support.waiting import flow_run_pid, wait_for

pytestmark = pytest.mark.integration


def _artifacts(platform: RunningPlatform, key: str) -> list:  # type: ignore[type-arg]
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}), get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_completed_training_shows_artifacts_and_prunes_its_checkpoints(platform: RunningPlatform) -> None:
    tenant = platform.new_tenant()
    admission = platform.submit(tenant, platform.dataset(tenant, classification_frame(rows=5000)), epochs=10)
    final = platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.COMPLETED, final.reason

    table = wait_for(lambda: [a for a in _artifacts(platform, f"attempts-{final.id}") if "completed" in str(a.data)],
                     30, "the attempts table of the finished request")
    assert '"outcome"' in str(table[0].data) and '"lease"' in str(table[0].data)
    progress = wait_for(lambda: [a for a in _artifacts(platform, f"progress-{final.id}") if a.data == 100.0], 30,
                        "the worker's progress artifact to reach 100%")
    assert progress
    mlflow = MlflowClient(platform.mlflow_uri)
    folders = mlflow.list_artifacts(final.mlflow_run_id, "checkpoints")
    kept = [f for folder in folders for f in mlflow.list_artifacts(final.mlflow_run_id, folder.path)]
    assert len(kept) == platform.settings.training.checkpoint_retention
    assert all(mlflow.list_artifacts(final.mlflow_run_id, folder.path) for folder in folders)  # none left empty
    assert all("/lease-" in f"/{folder.path}" for folder in folders)
    run = mlflow.get_run(final.mlflow_run_id)  # a model-training experiment, with its dataset as an input
    assert mlflow.get_experiment(run.info.experiment_id).tags.get("mlflow.experimentKind") == "custom_model_development"
    assert [(d.dataset.name, d.dataset.source_type) for d in run.inputs.dataset_inputs] == [
        ("data.csv", "tenant_storage")
    ]
    assert mlflow.get_model_version_by_alias(f"{tenant}.m", "champion").version == final.model_version
    wait_for(lambda: mlflow.get_run(final.mlflow_run_id).data.tags.get("tenantml.model_version")
             == final.model_version, 30, "the worker's last mirror (status and version) in the MLflow run")


def test_a_cancelled_training_prunes_its_checkpoints_like_a_completed_one(platform: RunningPlatform) -> None:
    tenant = platform.new_tenant()
    admission = platform.submit(tenant, platform.dataset(tenant, classification_frame(rows=20_000)), epochs=2_000)
    running = wait_for(lambda: (r := platform.request(admission.request_id)).checkpoint is not None
                       and r.checkpoint.step > 0 and r, 120, "a committed checkpoint")
    wait_for(lambda: (r := platform.request(admission.request_id)).checkpoint is not None
             and r.checkpoint.step > running.checkpoint.step and r, 60, "a second checkpoint")  # type: ignore[union-attr]
    cancel_request(platform.connection.store, admission.request_id, tenant, datetime.now(UTC))

    final = platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.CANCELLED
    mlflow = MlflowClient(platform.mlflow_uri)
    folders = mlflow.list_artifacts(final.mlflow_run_id, "checkpoints")
    kept = [f for folder in folders for f in mlflow.list_artifacts(final.mlflow_run_id, folder.path)]
    assert len(kept) <= platform.settings.training.checkpoint_retention


def test_duplicate_is_answered_with_the_running_request_and_unchanged_data_is_skipped(platform: RunningPlatform) -> None:
    tenant = platform.new_tenant()
    dataset = platform.dataset(tenant, classification_frame(rows=5000))
    first = platform.submit(tenant, dataset, epochs=20)
    duplicate = platform.submit(tenant, dataset, epochs=20)
    assert (duplicate.decision, duplicate.request_id) == (Decision.DUPLICATE, first.request_id)
    assert platform.wait_done(first.request_id).status is RequestStatus.COMPLETED

    skipped = platform.submit(tenant, dataset, epochs=20)
    assert skipped.decision is Decision.UP_TO_DATE
    assert platform.request(skipped.request_id).status is RequestStatus.SKIPPED
    forced = platform.submit(tenant, dataset, epochs=20, force=True)
    assert forced.decision is Decision.ACCEPTED
    assert platform.wait_done(forced.request_id).model_version == "2"


@pytest.mark.parametrize(
    ("frame", "named"),
    [
        (pd.DataFrame({"city": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "label": [0, 1, 0]}), "city"),
        (pd.DataFrame({"x": pd.Series(dtype=float), "label": pd.Series(dtype=int)}), "no rows"),
    ],
)
def test_bad_data_fails_at_once_without_retries(platform: RunningPlatform, frame: pd.DataFrame, named: str) -> None:
    tenant = platform.new_tenant()
    admission = platform.submit(tenant, platform.dataset(tenant, frame))
    final = platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.FAILED
    assert len(final.attempts) == 1 and final.attempts[0].end is AttemptEnd.USER_ERROR
    assert named in (final.reason or "")


def test_missing_target_column_is_refused_at_submission(platform: RunningPlatform) -> None:
    tenant = platform.new_tenant()
    dataset = platform.dataset(tenant, classification_frame(rows=100).rename(columns={"label": "y"}))
    with pytest.raises(InvalidDataset, match="'label'"):
        platform.submit(tenant, dataset)
    assert platform.connection.store.list_requests(tenant=tenant) == []


def test_moved_training_resumes_on_a_new_worker(platform: RunningPlatform) -> None:
    from datetime import UTC, datetime

    tenant = platform.new_tenant()
    admission = platform.submit(tenant, platform.dataset(tenant, classification_frame()), epochs=30)
    wait_for(lambda: (r := platform.request(admission.request_id)).checkpoint and r, 180, "a first checkpoint")
    platform.connection.store.request_move(admission.request_id, datetime.now(UTC))
    final = platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.COMPLETED, final.reason
    assert final.attempts[0].end is AttemptEnd.MOVED
    assert final.attempts[1].resume_step > 0


def test_preempted_worker_commits_and_hands_back_without_losing_work(platform: RunningPlatform) -> None:
    tenant = platform.new_tenant()
    admission = platform.submit(tenant, platform.dataset(tenant, classification_frame()), epochs=30)

    def running_pid() -> int | None:
        request = platform.request(admission.request_id)
        attempt = request.current_attempt
        return flow_run_pid(attempt.flow_run_id) if request.step > 0 and attempt and attempt.flow_run_id else None

    os.kill(wait_for(running_pid, 180, "the worker to be training"), signal.SIGTERM)
    final = platform.wait_done(admission.request_id)
    assert final.status is RequestStatus.COMPLETED, final.reason
    first, second = final.attempts[0], final.attempts[1]
    assert first.end is AttemptEnd.PREEMPTED, first.reason
    assert final.steps_redone(second) == 0
    assert final.failovers == 0  # a preemption does not use the attempt budget
