"""Deterministic user errors end a request at once, in one attempt, on the real platform (issue #10, item 4).

What can be known from the dataset's header and size and the parameters is refused at submission,
before anything is recorded; what only the loaded data or the training shows (the classes, a
checkpoint's size) fails in the worker as a user error, never retried. Neither kind leaves row
values in the request's reason, the worker's Prefect state messages or the platform's logs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest
from tenantml.errors import InvalidDataset, InvalidParameter
from tests.support.platform import RunningPlatform, classification_frame

pytestmark = pytest.mark.integration

SENTINEL = 0.1257313  # a row value that must not reach any message


@pytest.mark.parametrize(
    ("algorithm", "params", "named"),
    [
        ("sgd_classifier", {"epochs": 10**30}, "'epochs'"),
        ("sgd_classifier", {"eta0": 1e308}, "'eta0'"),
        ("sgd_classifier", {"eta0": "inf"}, "'eta0'"),
        ("sgd_classifier", {"alpha": "nan"}, "'alpha'"),
        ("mlp_classifier", {"hidden_layer_sizes": "100000,100000"}, "'hidden_layer_sizes'"),
        ("mlp_classifier", {"hidden_layer_sizes": "4096,4096,4096,4096,4096,4096,4096,4096"},
         "TENANTML_LIMITS__MAX_MODEL_PARAMETERS"),
        ("sgd_classifier", {"epochs": 100_000, "batch_size": 1}, "TENANTML_LIMITS__MAX_TOTAL_STEPS"),
    ],
)
def test_a_parameter_that_cannot_work_is_refused_at_submission(
    platform: RunningPlatform, algorithm: str, params: dict[str, object], named: str
) -> None:
    tenant = platform.new_tenant()
    dataset = platform.dataset(tenant, classification_frame(rows=200))
    with pytest.raises(InvalidParameter, match=named):
        platform.submit(tenant, dataset, algorithm=algorithm, **params)
    assert platform.connection.store.list_requests(tenant=tenant) == []


def test_a_dataset_too_wide_for_mlflow_is_refused_at_submission_and_no_model_is_left(
    platform: RunningPlatform,
) -> None:
    tenant = platform.new_tenant()
    frame = pd.DataFrame({f"{'feature' * 20}_{i:03d}": [1.0, 2.0] for i in range(900)} | {"label": [0, 1]})
    with pytest.raises(InvalidDataset, match="MLflow's limit"):
        platform.submit(tenant, platform.dataset(tenant, frame))
    assert platform.connection.store.list_requests(tenant=tenant) == []
    assert MlflowClient(platform.mlflow_uri).search_registered_models(f"name = '{tenant}.m'") == []


def _state_messages(platform: RunningPlatform) -> list[str]:
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}), get_client(sync_client=True) as client:
        return [run.state.message or "" for run in client.read_flow_runs(limit=200) if run.state is not None]


def _ended_at_once(platform: RunningPlatform, request_id: str) -> TrainingRequest:
    final = platform.wait_done(request_id)
    assert final.status is RequestStatus.FAILED, final.reason
    assert [a.end for a in final.attempts] == [AttemptEnd.USER_ERROR], final.attempts
    assert final.model_version is None
    return final


def test_a_continuous_target_for_a_classifier_fails_once_naming_the_column_not_its_values(
    platform: RunningPlatform,
) -> None:
    tenant = platform.new_tenant()
    frame = classification_frame(rows=300).astype({"label": float})
    frame.loc[frame.index[::3], "label"] = SENTINEL
    final = _ended_at_once(platform, platform.submit(tenant, platform.dataset(tenant, frame)).request_id)
    assert "target 'label' is continuous" in (final.reason or "")
    shown = f"{SENTINEL:.4f}"
    assert shown not in (final.reason or "")
    assert not [m for m in _state_messages(platform) if shown in m]
    logs = platform.settings.home / "logs"
    assert not [p.name for p in logs.glob("*.log") if shown in p.read_text(errors="replace")]


def test_a_checkpoint_over_the_limit_fails_once_naming_the_limit(platform: RunningPlatform) -> None:
    tenant = platform.new_tenant()
    noisy = classification_frame(rows=5000).assign(label=lambda f: np.random.default_rng(5).integers(0, 2, len(f)))
    admission = platform.submit(tenant, platform.dataset(tenant, noisy), algorithm="random_forest_classifier",
                                n_estimators=40, trees_per_step=40)
    final = _ended_at_once(platform, admission.request_id)
    assert "over the limit of 1000000 (TENANTML_LIMITS__MAX_CHECKPOINT_BYTES)" in (final.reason or "")
    assert MlflowClient(platform.mlflow_uri).search_registered_models(f"name = '{tenant}.m'") == []

