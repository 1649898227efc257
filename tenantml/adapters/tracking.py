"""MLflow tracking: one experiment per tenant, one run per request, checkpoints as run artifacts.

MLflow mirrors the metadata store for the UI; it never decides who may write. Callers write here
only after their fenced write to the store succeeded.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.artifacts import download_artifacts
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, RunStatus, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from tenantml.adapters.mlflow_errors import mlflow_calls
from tenantml.adapters.object_storage import ObjectCheckpoints
from tenantml.domain.request import Checkpoint, TrainingRequest
from tenantml.errors import CorruptCheckpoint

__all__ = ["TAG_PREFIX", "Tracking", "experiment_name"]

TAG_PREFIX = "tenantml."


NOTE_TAG = "mlflow.note.content"
"""The run's description in the MLflow UI."""

EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
"""Opens the experiment in the MLflow UI's model-training mode, not its GenAI mode ("Traces 0")."""


def experiment_name(tenant: str) -> str:
    return f"tenantml-{tenant}"


def _tags(values: Mapping[str, object]) -> dict[str, str]:
    return {TAG_PREFIX + key: str(value) for key, value in values.items()}


class Tracking:
    """``objects``: checkpoints go to the platform's object store (S3) instead of the run's artifacts."""

    def __init__(self, tracking_uri: str, objects: ObjectCheckpoints | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.objects = objects
        self._artifact_uris: dict[str, str] = {}
        self._experiments: dict[str, str] = {}
        self._owners: dict[str, tuple[str, str]] = {}

    def experiment_id(self, tenant: str) -> str:
        name = experiment_name(tenant)
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the kind was set
                self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(
                name, tags={**_tags({"tenant": tenant}), EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}))
        except Exception:  # created concurrently by another master
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def start_run(self, request: TrainingRequest) -> str:
        with mlflow_calls(self.tracking_uri, "opening the request's run"):
            spec = request.spec
            run = self.client.create_run(
                self.experiment_id(spec.tenant),
                run_name=f"{spec.model}-{request.id[:8]}",
                tags=_tags(
                    {
                        "tenant": spec.tenant,
                        "model": spec.model,
                        "request_id": request.id,
                        "status": request.status.value,
                        "algorithm": spec.algorithm,
                        "dataset_fingerprint": spec.dataset_fingerprint,
                    }
                ),
            )
            run_id = run.info.run_id
            params = {"algorithm": spec.algorithm, "target": spec.target, "dataset": Path(spec.dataset).name}
            params.update({f"param.{k}": str(v) for k, v in spec.params.items()})
            for key, value in params.items():
                self.client.log_param(run_id, key, value)
            dataset = Dataset(name=Path(spec.dataset).name, digest=spec.dataset_fingerprint[:36],
                              source_type="tenant_storage", source=Path(spec.dataset).name)  # never a host path
            self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context",
                                                                                      "training")])])
            return run_id

    def mirror(self, run_id: str, **values: object) -> None:
        self.record(run_id, tags=values)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        self.record(run_id, metrics=metrics, step=step)

    def record(
        self, run_id: str, tags: Mapping[str, object] | None = None, metrics: Mapping[str, float] | None = None,
        step: int = 0,
    ) -> None:
        """Tags (under ``tenantml.``) and metrics at ``step`` in one request."""
        with mlflow_calls(self.tracking_uri, "mirroring progress"):
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
                tags=[RunTag(k, v) for k, v in _tags(tags or {}).items()],
            )

    def record_points(self, run_id: str, points: Sequence[tuple[int, int, Mapping[str, float]]]) -> None:
        """Points of the metric curves, each (step, ms since the epoch, metrics), in as few requests as
        MLflow's limit of 1,000 metrics a request allows."""
        metrics = [Metric(k, float(v), at, step) for step, at, values in points for k, v in values.items()]
        with mlflow_calls(self.tracking_uri, "logging the metric curves"):
            for start in range(0, len(metrics), 1000):
                self.client.log_batch(run_id, metrics=metrics[start : start + 1000])

    def describe(self, run_id: str, note: str, tags: Mapping[str, object] | None = None) -> None:
        """The run's description in the MLflow UI (markdown, ``mlflow.note.content``), with tags under ``tenantml.``."""
        with mlflow_calls(self.tracking_uri, "describing the run"):
            self.client.log_batch(run_id, tags=[RunTag(NOTE_TAG, note),
                                                *(RunTag(k, v) for k, v in _tags(tags or {}).items())])

    def experiment_of(self, run_id: str) -> str:
        """The experiment of a run (for links to it)."""
        if run_id not in self._experiments:
            with mlflow_calls(self.tracking_uri, "reading the run"):
                self._experiments[run_id] = str(self.client.get_run(run_id).info.experiment_id)
        return self._experiments[run_id]

    def end_run(self, run_id: str, status: str) -> None:
        with mlflow_calls(self.tracking_uri, "ending the run"):
            mlflow_status = {"completed": "FINISHED", "skipped": "FINISHED", "cancelled": "KILLED"}.get(status, "FAILED")
            self.client.set_terminated(run_id, status=mlflow_status)

    def run_is_terminated(self, run_id: str) -> bool:
        with mlflow_calls(self.tracking_uri, "reading the run"):
            return self.client.get_run(run_id).info.status in {RunStatus.to_string(RunStatus.FINISHED), "FAILED", "KILLED"}

    # -- checkpoints ---------------------------------------------------------------------
    def _artifact_root(self, run_id: str) -> str:
        if run_id not in self._artifact_uris:
            self._artifact_uris[run_id] = str(self.client.get_run(run_id).info.artifact_uri)
        return self._artifact_uris[run_id]

    def _owner(self, run_id: str) -> tuple[str, str]:
        """(tenant, request id) of a run, from the tags :meth:`start_run` set."""
        if run_id not in self._owners:
            with mlflow_calls(self.tracking_uri, "reading the run"):
                tags = self.client.get_run(run_id).data.tags
            self._owners[run_id] = (tags[TAG_PREFIX + "tenant"], tags[TAG_PREFIX + "request_id"])
        return self._owners[run_id]

    def upload_checkpoint(self, run_id: str, blob: bytes, epoch: int, step: int) -> Checkpoint:
        """Upload a checkpoint under a path unique to the epoch; nothing points at it yet."""
        if self.objects is not None:
            return self.objects.upload(*self._owner(run_id), blob, epoch, step)
        with mlflow_calls(self.tracking_uri, "uploading a checkpoint"):
            artifact_path = f"checkpoints/lease-{epoch}"  # the fencing epoch, in words people read
            name = f"step-{step:08d}.pkl"
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / name
                path.write_bytes(blob)
                self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)
            uri = f"{self._artifact_root(run_id)}/{artifact_path}/{name}"
            return Checkpoint(uri=uri, step=step, sha256=hashlib.sha256(blob).hexdigest())

    def download_checkpoint(self, checkpoint: Checkpoint) -> bytes:
        if self.objects is not None and self.objects.owns(checkpoint):
            return self.objects.download(checkpoint)
        with mlflow_calls(self.tracking_uri, "downloading a checkpoint"):
            with tempfile.TemporaryDirectory() as folder:
                local = download_artifacts(artifact_uri=checkpoint.uri, dst_path=folder, tracking_uri=self.tracking_uri)
                blob = Path(local).read_bytes()
            digest = hashlib.sha256(blob).hexdigest()
            if digest != checkpoint.sha256:
                raise CorruptCheckpoint(checkpoint.uri, digest, checkpoint.sha256)
            return blob

    def prune_checkpoints(self, run_id: str, keep: Checkpoint | None, retention: int) -> int:
        """Delete checkpoint artifacts of a finished run, keeping the newest ``retention``."""
        if self.objects is not None:
            return self.objects.prune(*self._owner(run_id), keep, retention)
        with mlflow_calls(self.tracking_uri, "pruning checkpoints"):
            repo = get_artifact_repository(self._artifact_root(run_id), tracking_uri=self.tracking_uri)
            files: list[Any] = []
            folders = [folder.path for folder in repo.list_artifacts("checkpoints") if folder.is_dir]
            for folder in folders:
                files.extend(f for f in repo.list_artifacts(folder) if not f.is_dir)
            files.sort(key=lambda f: f.path.rsplit("step-", 1)[-1], reverse=True)
            kept = {f.path for f in files[:retention]}
            if keep is not None and retention > 0:
                kept.add(keep.uri.split(self._artifact_root(run_id) + "/", 1)[-1])
            removed = 0
            for f in files:
                if f.path not in kept:
                    repo.delete_artifacts(f.path)
                    removed += 1
            for folder in folders:  # no empty lease-N/ folders left behind in the MLflow UI
                if not any(path.startswith(folder + "/") for path in kept):
                    repo.delete_artifacts(folder)
            return removed

