"""What a user sees of one training in MLflow and Prefect, read through their clients on the real platform.

The MLflow run has curves over steps on the training and the validation rows (accuracy and loss),
the dataset as an input with its fingerprint, a description with the request id and links to the
Prefect runs, and a logged model named for the request; the Prefect progress artifact says where
the training is and links back to the run.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.settings import PREFECT_API_URL, temporary_settings

from tenantml.domain.request import RequestStatus
from tests.support.platform import RunningPlatform, classification_frame
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CURVES = ("train_accuracy", "validation_accuracy", "train_loss", "validation_loss")


def _progress_artifacts(platform: RunningPlatform, request_id: str) -> list:  # type: ignore[type-arg]
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}), get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=[f"progress-{request_id}"])
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=key))


def test_a_trainings_mlflow_run_has_validation_curves_its_dataset_and_links_to_prefect(
    platform: RunningPlatform,
) -> None:
    tenant = platform.new_tenant()
    dataset = platform.dataset(tenant, classification_frame(rows=5000))
    admission = platform.submit(tenant, dataset, model="churn", epochs=10)
    final = platform.wait_done(admission.request_id, timeout_s=600)  # a shared machine: dispatch may wait
    assert final.status is RequestStatus.COMPLETED, final.reason
    mlflow = MlflowClient(platform.mlflow_uri)
    run_id = final.mlflow_run_id
    assert run_id is not None

    for key in CURVES:  # curves over steps, the last point at the last step
        steps = sorted({point.step for point in mlflow.get_metric_history(run_id, key)})
        assert len(steps) >= 10 and steps[-1] == final.total_steps, (key, steps)
    run = mlflow.get_run(run_id)
    assert run.data.params["param.validation_fraction"] == "0.2"
    assert run.data.tags["tenantml.loss_metric"] == "log_loss"
    assert 0.5 < run.data.metrics["validation_accuracy"] <= 1 and run.data.metrics["validation_loss"] > 0

    inputs = run.inputs.dataset_inputs  # the dataset with its fingerprint as the digest
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [(dataset, final.spec.dataset_fingerprint[:36])]

    prefect_ui = platform.prefect_api_url.rstrip("/").removesuffix("/api")
    flow_run = final.attempts[-1].flow_run_id
    note = wait_for(lambda: (text := mlflow.get_run(run_id).data.tags.get("mlflow.note.content", ""))
                    and "version" in text and text, 30, "the run's description with the registered version")
    assert final.id in note and f"{tenant}/churn" in note
    assert f"{prefect_ui}/runs/flow-run/{flow_run}" in note and "Attempts: 1" in note
    tags = mlflow.get_run(run_id).data.tags
    assert tags["tenantml.prefect_flow_run_id"] == flow_run and tags["tenantml.attempts"] == "1"

    experiment = run.info.experiment_id
    logged = mlflow.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")
    assert [model.name for model in logged] == [f"churn-{final.id[:8]}"]  # named for the request, as the run is
    version = mlflow.get_model_version(f"{tenant}.churn", final.model_version)
    assert version.source == logged[0].model_uri
    assert "validation_accuracy" in platform.connection.registry.version_metrics(tenant, "churn", final.model_version)

    done = wait_for(lambda: [a for a in _progress_artifacts(platform, final.id) if a.data == 100.0], 30,
                    "the progress artifact at 100%")
    text = done[0].description
    assert f"step {final.total_steps} of {final.total_steps}" in text and "attempt 1 on small" in text
    assert "ETA: done" in text and "validation_accuracy" in text
    assert f"#/experiments/{experiment}/runs/{run_id}" in text
