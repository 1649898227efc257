"""A whole platform with its storage in S3 (moto's server on a free port): the dataset, the checkpoints
and the registered model's files are objects in the bucket, read back by the training and by a model
load through MLflow.

The platform has its own home and servers (not the shared session platform): `tenantml up`'s S3
settings reach every process it starts, and the workers load the bucket block by name. A killed
worker resuming from its S3 checkpoint is not tested here yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from tenantml.domain.request import RequestStatus
from tenantml.local.servers import Server
from tenantml.settings import load_settings
from tests.support.moto import MOTO_REGION, running_moto
from tests.support.platform import RunningPlatform, classification_frame, start_platform

pytestmark = [pytest.mark.integration, pytest.mark.system]

BUCKET, PREFIX = "tenantml-platform", "team-a"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def bucket(moto: Server) -> Any:
    """The test's own boto3 client on the bucket, to look at what the platform wrote."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto.url, region_name=MOTO_REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def s3_platform(moto: Server, bucket: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    settings = load_settings(
        home=tmp_path_factory.mktemp("s3-home"),
        training={"heartbeat_timeout_s": 3, "checkpoint_interval_s": 1, "attempt_budget": 2,
                  "supervisor_timeout_s": 12},
        prefect={"small_workers": 2, "large_workers": 0},
        fleet={"provisioner": False},
        storage={"backend": "s3", "bucket": BUCKET, "prefix": PREFIX, "endpoint_url": moto.url,
                 "region": MOTO_REGION, "access_key_id": "testing", "secret_access_key": "testing"},
    )
    embedded, running = start_platform(settings)
    try:
        yield running
    finally:
        embedded.stop()


def keys(bucket: Any, prefix: str) -> list[str]:
    found, token = [], None
    while True:
        page = bucket.list_objects_v2(Bucket=BUCKET, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        found += [item["Key"] for item in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return sorted(found)


def upload(platform: RunningPlatform, tenant: str, frame: pd.DataFrame, folder: Path) -> str:
    source = folder / "data.csv"
    frame.to_csv(source, index=False)
    platform.connection.storage.add(tenant, source)
    return "data.csv"


def model_predictions(platform: RunningPlatform, tenant: str, version: str, frame: pd.DataFrame) -> np.ndarray:
    mlflow.set_tracking_uri(platform.mlflow_uri)
    model = mlflow.sklearn.load_model(f"models:/{tenant}.m/{version}")
    return np.asarray(model.predict_proba(frame.drop(columns="label").to_numpy()))


def test_a_training_reads_and_writes_only_s3(s3_platform: RunningPlatform, bucket: Any, tmp_path: Path) -> None:
    platform = s3_platform
    tenant, frame = platform.new_tenant(), classification_frame(rows=5000)
    dataset = upload(platform, tenant, frame, tmp_path)
    assert keys(bucket, f"{PREFIX}/{tenant}/") == [f"{PREFIX}/{tenant}/datasets/data.csv"]

    admission = platform.submit(tenant, dataset, epochs=10)
    final = platform.wait_done(admission.request_id, timeout_s=480)  # finalizing waits on a loaded Prefect
    assert final.status is RequestStatus.COMPLETED, final.reason

    checkpoints = keys(bucket, f"{PREFIX}/{tenant}/checkpoints/{final.id}/")
    assert checkpoints and all("/lease-" in key and key.endswith(".pkl") for key in checkpoints), checkpoints
    assert len(checkpoints) <= platform.settings.training.checkpoint_retention, "pruned after completion"
    assert final.checkpoint is not None and final.checkpoint.uri.startswith(f"s3://{BUCKET}/{PREFIX}/{tenant}/")
    assert final.checkpoint.uri.removeprefix(f"s3://{BUCKET}/") in checkpoints
    model_files = keys(bucket, f"{PREFIX}/mlflow/")
    assert any(key.endswith("model.pkl") or key.endswith("MLmodel") for key in model_files), model_files
    artifacts_on_disk = [p for p in (platform.settings.home / "mlflow" / "artifacts").rglob("*") if p.is_file()]
    assert artifacts_on_disk == [], "MLflow's artifacts went to S3, none to the home"
    predictions = model_predictions(platform, tenant, str(final.model_version), frame)
    assert predictions.shape == (len(frame), 2)
